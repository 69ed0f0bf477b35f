//! The accept loop with real sockets: connections that never send a request
//! are closed, and connections are capped per peer.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::InProcessServer;
use schoolfleet_proto::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(server: &InProcessServer) -> String {
    server.url.trim_start_matches("https://").to_owned()
}

/// A TLS client that trusts the server's CA and offers HTTP/2.
fn tls_connector(server: &InProcessServer) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls_pki_types::CertificateDer::pem_slice_iter(server.state.ca.cert_pem().as_bytes())
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Waits until the server closes the connection; how long that took.
async fn closed_after(mut read: impl tokio::io::AsyncRead + Unpin, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, read.read(&mut buf)).await {
            Err(_) => panic!("the server still holds the connection after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            // The server's SETTINGS and the like.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn connections_without_a_request_are_closed() {
    let server = InProcessServer::start_with(|c| {
        c.limits.first_request_timeout = Duration::from_secs(1);
    })
    .await;
    let limit = Duration::from_secs(5);
    // TCP only, no TLS handshake.
    let tcp = TcpStream::connect(addr(&server)).await.unwrap();
    closed_after(tcp, limit).await;
    // TLS done, then silence.
    let tcp = TcpStream::connect(addr(&server)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tls_connector(&server)
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    let took = closed_after(tls, limit).await;
    assert!(
        took >= Duration::from_millis(500),
        "closed too early: {took:?}"
    );
    // TLS and the HTTP/2 preface with SETTINGS, but no request.
    let tcp = TcpStream::connect(addr(&server)).await.unwrap();
    let mut tls = tls_connector(&server).connect(name, tcp).await.unwrap();
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    closed_after(tls, limit).await;
    // A real client, which sends its request at once, is served.
    let mut admin = server.client(&server.bootstrap_token).await;
    admin
        .tenants
        .list_counties(ListCountiesRequest {})
        .await
        .unwrap();
}

#[tokio::test]
async fn connections_are_capped_per_peer() {
    let server = InProcessServer::start_with(|c| {
        c.limits.max_connections_per_peer = 4;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr(&server)).await.unwrap());
    }
    // Let the server accept them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One more from the same address is closed at once.
    let extra = TcpStream::connect(addr(&server)).await.unwrap();
    let took = closed_after(extra, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    let unreachable = schoolfleet_proto::transport::connect(
        &server.url,
        schoolfleet_proto::transport::ServerTrust::Pinned(server.pin),
        None,
        schoolfleet_proto::transport::ChannelOptions {
            connect_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await;
    assert!(unreachable.is_err(), "a fifth connection was served");
    // Places come back when connections close.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    admin
        .tenants
        .list_counties(ListCountiesRequest {})
        .await
        .unwrap();
}

/// A connection that sent its first request lives on past the timeout: a
/// long admin stream (here: the live session list's first call, then a
/// second call on the same connection much later) is not cut.
#[tokio::test]
async fn a_connection_with_a_request_outlives_the_timeout() {
    let server = InProcessServer::start_with(|c| {
        c.limits.first_request_timeout = Duration::from_secs(1);
    })
    .await;
    let tcp = TcpStream::connect(addr(&server)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tls_connector(&server).connect(name, tcp).await.unwrap();
    // A real HTTP/2 client on this one connection.
    let (mut send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = || {
        http::Request::builder()
            .method("POST")
            .uri(format!("{}/grpc.health.v1.Health/Check", server.url))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap()
    };
    for round in 0..2 {
        send = send.ready().await.unwrap();
        let (response, mut body) = send.send_request(request(), false).unwrap();
        // An empty HealthCheckRequest: flag 0, length 0.
        body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
            .unwrap();
        let response = response
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(response.status(), 200);
        // Longer than the timeout before the next request.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
}
