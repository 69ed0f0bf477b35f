//! Device certificates are renewed before they expire, with a new key made
//! on the device; the old certificate stops working once the new one is in
//! use.

use std::time::Duration;

use schoolfleet_agent::identity::AgentIdentity;
use schoolfleet_e2e::*;
use schoolfleet_proto::transport::{self, ChannelOptions};
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::{AgentMessage, Hello, agent_message::Body};

/// Opens the agent stream with an identity; returns the gRPC error, if any.
async fn open_stream(url: &str, identity: &AgentIdentity) -> Result<(), tonic::Status> {
    let channel = transport::connect(
        url,
        identity.server_trust(),
        Some(identity.client_identity()),
        ChannelOptions::default(),
    )
    .await
    .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let hello = AgentMessage {
        body: Some(Body::Hello(Hello::default())),
    };
    let mut inbound = AgentServiceClient::new(channel)
        .open_stream(tokio_stream::iter(vec![hello]))
        .await?
        .into_inner();
    inbound.message().await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_renews_a_certificate_close_to_expiry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("server")).unwrap();
    // Certificates valid for 20 days: inside the agent's 30-day renewal window.
    let server = ServerProcess::start_with_env(
        &dir.path().join("server"),
        &[("SCHOOLFLEET_AGENTS__DEVICE_CERT_VALIDITY", "20days")],
    );
    let cli = server.admin_cli(&dir.path().join("cli"));
    cli.ok(&["county", "add", "kus", "--name", "Landkreis Kusel"]);
    cli.ok(&[
        "school", "add", "kus012", "--county", "kus", "--name", "IGS",
    ]);
    let token = cli.enrollment_token("kus012", "1h", 1);
    let mut agent = AgentProcess::new(&dir.path().join("agent"));
    assert!(agent.enroll(&server.url(), &token).status.success());
    let original = AgentIdentity::load(&agent.state_dir).unwrap();

    agent.start();
    // Read the file, not the identity: loading may finish a swap itself.
    let cert_file = agent.state_dir.join("device.crt");
    wait_until(Duration::from_secs(30), "the certificate renewal", || {
        std::fs::read_to_string(&cert_file).is_ok_and(|pem| pem != original.cert_pem)
    });
    // The key is written before the certificate, so the pair is whole now.
    let renewed = AgentIdentity::load(&agent.state_dir).unwrap();
    assert_ne!(
        renewed.key_pem, original.key_pem,
        "renewal must use a new key"
    );
    assert_eq!(renewed.device_id, original.device_id);

    // Until the new certificate is used, the old one still works (a crash
    // during renewal cannot lock the device out)...
    open_stream(&server.url(), &original)
        .await
        .expect("old certificate before first use of the new one");
    // ...and once the agent reconnects with the new one, the old one is refused.
    agent.stop();
    agent.start();
    wait_until(Duration::from_secs(30), "the agent to reconnect", || {
        agent.status()["connected"] == true
    });
    let err = open_stream(&server.url(), &original).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    open_stream(&server.url(), &renewed)
        .await
        .expect("the renewed certificate works");
    let devices = cli.json(&["devices"]);
    assert_eq!(
        devices.as_array().unwrap().len(),
        1,
        "renewal created a duplicate: {devices}"
    );
}
