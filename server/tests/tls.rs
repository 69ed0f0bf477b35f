//! Real TLS between `schoolfleet_proto::transport::connect` and a tonic
//! server configured by `pki::server_tls_config`, on 127.0.0.1:0.
//!
//! These are the trust decisions everything else rests on: the pin selects
//! exactly our CA, the leaf must chain to it, a device certificate from our
//! CA reaches the service, and one from anybody else's does not.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schoolfleet_proto::transport::{
    self, ChannelOptions, ClientIdentity, ServerTrust, TransportError,
};
use schoolfleet_server::pki::{
    self, CertificateAuthority, IssuedCert, ServerCert, cert_fingerprint, device_id_from_cert,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use uuid::Uuid;

/// Bounds every network step so that a regression hangs no CI job.
const STEP: Duration = Duration::from_secs(10);

/// What the server side saw of one call's TLS peer.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    fingerprint: Option<[u8; 32]>,
    device: Option<Uuid>,
}

/// A tonic health server with our TLS config; every call it lets through
/// is recorded by an interceptor, the way the agent service will look at
/// `peer_certs()`.
struct TestServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start(ca: &CertificateAuthority, cert: &ServerCert) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let interceptor = move |request: tonic::Request<()>| {
            let leaf = request
                .peer_certs()
                .and_then(|certs| certs.first().cloned());
            record.lock().unwrap().push(Seen {
                fingerprint: leaf.as_ref().map(|der| cert_fingerprint(der)),
                device: leaf.as_ref().and_then(|der| device_id_from_cert(der).ok()),
            });
            Ok(request)
        };
        let (_reporter, health) = tonic_health::server::health_reporter();
        let router = Server::builder()
            .tls_config(pki::server_tls_config(ca, cert))
            .unwrap()
            .add_service(InterceptedService::new(health, interceptor));
        let task = tokio::spawn(async move {
            router
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        Self { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn new_ca() -> (tempfile::TempDir, CertificateAuthority) {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
    (dir, ca)
}

fn server_cert(ca: &CertificateAuthority) -> ServerCert {
    ca.issue_server_cert(&["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
}

/// A device identity as an agent would make it: own key, CSR, signed by `ca`.
fn device_identity(ca: &CertificateAuthority, device: Uuid) -> (IssuedCert, ClientIdentity) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let issued = ca
        .sign_device_csr(&csr, device, Duration::from_secs(86_400))
        .unwrap();
    let identity = ClientIdentity {
        cert_chain_pem: issued.cert_pem.clone(),
        key_pem: key.serialize_pem(),
    };
    (issued, identity)
}

fn options() -> ChannelOptions {
    ChannelOptions {
        connect_timeout: STEP,
        request_timeout: Some(STEP),
        ..ChannelOptions::default()
    }
}

async fn connect(
    url: &str,
    trust: ServerTrust,
    identity: Option<ClientIdentity>,
) -> Result<Channel, TransportError> {
    tokio::time::timeout(STEP, transport::connect(url, trust, identity, options()))
        .await
        .expect("connect hung")
}

async fn health_check(channel: Channel) -> Result<ServingStatus, tonic::Status> {
    let response = tokio::time::timeout(
        STEP,
        HealthClient::new(channel).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("health check hung")?;
    Ok(response.into_inner().status())
}

/// The whole text of an error and its causes, as a person would read it.
fn full_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        text.push_str(" | ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[tokio::test]
async fn pinned_ca_reaches_the_service() {
    let (_dir, ca) = new_ca();
    let server = TestServer::start(&ca, &server_cert(&ca)).await;

    let channel = connect(&server.url(), ServerTrust::Pinned(ca.fingerprint()), None)
        .await
        .unwrap();
    assert_eq!(health_check(channel).await.unwrap(), ServingStatus::Serving);

    // By DNS name as well (SNI, name check against the DNS SAN).
    let url = format!("https://localhost:{}", server.addr.port());
    let channel = connect(&url, ServerTrust::Pinned(ca.fingerprint()), None)
        .await
        .unwrap();
    assert_eq!(health_check(channel).await.unwrap(), ServingStatus::Serving);

    // And with the CA given as PEM instead of the pin.
    let trust = ServerTrust::CaPem(ca.cert_pem().to_owned());
    let channel = connect(&server.url(), trust, None).await.unwrap();
    assert_eq!(health_check(channel).await.unwrap(), ServingStatus::Serving);

    // No client certificate: the call gets through, without a peer cert.
    let none = Seen {
        fingerprint: None,
        device: None,
    };
    assert_eq!(server.seen(), vec![none.clone(), none.clone(), none]);
}

#[tokio::test]
async fn wrong_pin_is_refused_with_a_readable_error() {
    let (_dir, ca) = new_ca();
    let server = TestServer::start(&ca, &server_cert(&ca)).await;

    let wrong = [0x42; 32];
    let err = connect(&server.url(), ServerTrust::Pinned(wrong), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    // Display alone must carry the reason: log lines usually print only it.
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "server CA fingerprint does not match the pinned {}",
            transport::format_pin(&wrong)
        )),
        "{text}"
    );
    // It names what the server presented, so the admin can compare.
    assert!(
        text.contains(&transport::format_pin(&ca.fingerprint())),
        "{text}"
    );
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn server_from_another_ca_is_refused() {
    let (_dir, ours) = new_ca();
    let (_dir2, theirs) = new_ca();

    // A server entirely from another CA.
    let foreign = TestServer::start(&theirs, &server_cert(&theirs)).await;
    let err = connect(
        &foreign.url(),
        ServerTrust::Pinned(ours.fingerprint()),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        full_text(&err).contains("server CA fingerprint does not match"),
        "{err}"
    );

    // A foreign leaf with our CA appended to the chain: the pin finds our
    // CA, but the leaf does not chain to it.
    let their_leaf = server_cert(&theirs);
    let leaf_only = their_leaf
        .cert_chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    let spliced = ServerCert {
        cert_chain_pem: format!("{leaf_only}{}", ours.cert_pem()),
        key_pem: their_leaf.key_pem.clone(),
    };
    let spliced_server = TestServer::start(&theirs, &spliced).await;
    let err = connect(
        &spliced_server.url(),
        ServerTrust::Pinned(ours.fingerprint()),
        None,
    )
    .await
    .unwrap_err();
    let text = full_text(&err);
    assert!(!text.contains("fingerprint does not match"), "{text}");
    assert!(text.contains("invalid peer certificate"), "{text}");

    // Our CA's certificate for another name: chain fine, name wrong.
    let misnamed = ours
        .issue_server_cert(&["sf.school.example".to_owned()])
        .unwrap();
    let misnamed_server = TestServer::start(&ours, &misnamed).await;
    let err = connect(
        &misnamed_server.url(),
        ServerTrust::Pinned(ours.fingerprint()),
        None,
    )
    .await
    .unwrap_err();
    assert!(full_text(&err).contains("not valid for name"), "{err}");

    // Same with trust by CA PEM.
    let err = connect(
        &foreign.url(),
        ServerTrust::CaPem(ours.cert_pem().to_owned()),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        full_text(&err).contains("invalid peer certificate"),
        "{err}"
    );

    assert!(foreign.seen().is_empty());
    assert!(spliced_server.seen().is_empty());
    assert!(misnamed_server.seen().is_empty());
}

#[tokio::test]
async fn device_certificate_reaches_the_service() {
    let (_dir, ca) = new_ca();
    let server = TestServer::start(&ca, &server_cert(&ca)).await;
    let device = Uuid::now_v7();
    let (issued, identity) = device_identity(&ca, device);

    let channel = connect(
        &server.url(),
        ServerTrust::Pinned(ca.fingerprint()),
        Some(identity),
    )
    .await
    .unwrap();
    assert_eq!(health_check(channel).await.unwrap(), ServingStatus::Serving);

    assert_eq!(
        server.seen(),
        vec![Seen {
            fingerprint: Some(issued.fingerprint),
            device: Some(device),
        }]
    );
}

#[tokio::test]
async fn device_certificate_from_another_ca_is_refused() {
    let (_dir, ca) = new_ca();
    let (_dir2, rogue) = new_ca();
    let server = TestServer::start(&ca, &server_cert(&ca)).await;
    let (_issued, identity) = device_identity(&rogue, Uuid::now_v7());

    // With TLS 1.3 the client finishes its side of the handshake before the
    // server has judged the client certificate, so the refusal (an alert)
    // may only surface at the first call. Either way nothing gets through.
    let result = match connect(
        &server.url(),
        ServerTrust::Pinned(ca.fingerprint()),
        Some(identity),
    )
    .await
    {
        Err(err) => Err(full_text(&err)),
        Ok(channel) => health_check(channel)
            .await
            .map_err(|status| full_text(&status)),
    };
    let text = result.unwrap_err();
    assert!(
        text.to_lowercase().contains("alert") || text.contains("UnknownCA"),
        "{text}"
    );
    assert!(server.seen().is_empty(), "{:?}", server.seen());

    // The refused handshake did not take the server down.
    let channel = connect(&server.url(), ServerTrust::Pinned(ca.fingerprint()), None)
        .await
        .unwrap();
    assert_eq!(health_check(channel).await.unwrap(), ServingStatus::Serving);
}

#[tokio::test]
async fn unreachable_server_is_reported_as_such() {
    // Bind and drop, so that the port is (almost certainly) closed.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = connect(
        &format!("https://{addr}"),
        ServerTrust::Pinned([0; 32]),
        None,
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot connect to https://{addr}: cannot reach {addr}"
        )),
        "{text}"
    );
}
