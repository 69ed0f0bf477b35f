//! Webhooks end to end in one process: a tiny HTTP receiver on loopback
//! gets signed service-desk events (the test checks the HMAC itself); a
//! receiver that is down, then failing, gets retries, and no event is lost.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::server::InProcessServer;
use hmac::{Hmac, Mac};
use schoolfleet_proto::v1::*;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const SECRET: &str = "test-webhook-secret";

#[derive(Debug)]
struct Received {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request (headers and a Content-Length body).
async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut headers = BTreeMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = buf[header_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received { headers, body })
}

/// Serves on `listener`: the first `fail_first` requests get a 500, the
/// rest a 200; every request is reported.
fn receiver(listener: TcpListener, fail_first: usize) -> mpsc::UnboundedReceiver<(u16, Received)> {
    receiver_tls(listener, fail_first, None)
}

/// As [`receiver`], over TLS when `acceptor` is given.
fn receiver_tls(
    listener: TcpListener,
    fail_first: usize,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> mpsc::UnboundedReceiver<(u16, Received)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut served = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut stream: Box<dyn Duplex> = match &acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => Box::new(tls),
                    Err(_) => continue,
                },
                None => Box::new(stream),
            };
            let Some(request) = read_request(&mut stream).await else {
                continue;
            };
            served += 1;
            let code = if served <= fail_first { 500 } else { 200 };
            let reply =
                format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
            let _ = tx.send((code, request));
        }
    });
    rx
}

trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

fn expected_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn start(port: u16) -> InProcessServer {
    InProcessServer::start_with(|c| {
        c.webhooks.url = format!("http://127.0.0.1:{port}/hooks/schoolfleet");
        c.webhooks.secret.0 = SECRET.into();
        c.webhooks.retry_initial = Duration::from_millis(100);
        c.webhooks.retry_max = Duration::from_millis(400);
        c.webhooks.timeout = Duration::from_secs(2);
    })
    .await
}

/// Creates county, school and three tickets; assigns one and resolves one.
/// Returns the number of events that must arrive.
async fn make_events(server: &InProcessServer) -> usize {
    let mut admin = server.client(&server.bootstrap_token).await;
    admin
        .tenants
        .create_county(CreateCountyRequest {
            id: "kus".into(),
            name: "Landkreis Kusel".into(),
        })
        .await
        .unwrap();
    let mut keys = Vec::new();
    for title in ["Beamer zeigt kein Bild", "Drucker", "WLAN im Raum 12"] {
        keys.push(
            admin
                .tickets
                .create_ticket(CreateTicketRequest {
                    title: title.into(),
                    county_id: "kus".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .key,
        );
    }
    admin
        .tickets
        .assign_ticket(AssignTicketRequest {
            ticket: keys[0].clone(),
            assignee: "admin".into(),
        })
        .await
        .unwrap();
    admin
        .tickets
        .set_ticket_status(SetTicketStatusRequest {
            ticket: keys[1].clone(),
            status: "resolved".into(),
            note: String::new(),
        })
        .await
        .unwrap();
    admin
        .kb
        .create_article(CreateArticleRequest {
            county_id: "kus".into(),
            template: "howto".into(),
            publish: true,
            ..Default::default()
        })
        .await
        .unwrap();
    // A comment, or an unpublished draft, is no event.
    admin
        .kb
        .create_article(CreateArticleRequest {
            county_id: "kus".into(),
            template: "checkliste".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .tickets
        .comment_ticket(CommentTicketRequest {
            ticket: keys[2].clone(),
            body: "kein Ereignis".into(),
        })
        .await
        .unwrap();
    6
}

/// Collects distinct deliveries (by delivery id) until `count` succeeded.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<(u16, Received)>,
    count: usize,
) -> (BTreeMap<String, Received>, usize) {
    let mut delivered = BTreeMap::new();
    let mut failed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while delivered.len() < count {
        let (code, request) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("events did not all arrive in time")
            .unwrap();
        if code == 200 {
            let id = request.headers["x-schoolfleet-delivery"].clone();
            delivered.insert(id, request);
        } else {
            failed += 1;
        }
    }
    (delivered, failed)
}

#[tokio::test]
async fn receiver_gets_signed_events() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut rx = receiver(listener, 0);
    let server = start(port).await;
    let expected = make_events(&server).await;
    let (delivered, _) = collect(&mut rx, expected).await;
    let mut kinds: Vec<String> = Vec::new();
    for request in delivered.values() {
        let signature = &request.headers["x-schoolfleet-signature"];
        assert_eq!(*signature, expected_signature(SECRET, &request.body));
        assert_ne!(
            *signature,
            expected_signature("wrong secret", &request.body)
        );
        let ts: i64 = request.headers["x-schoolfleet-timestamp"].parse().unwrap();
        assert!((ts - chrono::Utc::now().timestamp()).abs() < 120);
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body["event"],
            request.headers["x-schoolfleet-event"].as_str()
        );
        assert_eq!(
            body["id"],
            request.headers["x-schoolfleet-delivery"].as_str()
        );
        kinds.push(body["event"].as_str().unwrap().to_owned());
        if body["event"] == "ticket.assigned" {
            assert_eq!(body["ticket"]["assignee"], "admin");
        }
        // Every event names its ticket by the key the store gave it
        // (`ticket.created` once carried SUP-0: built before numbering).
        if let Some(key) = body["ticket"]["key"].as_str() {
            let number: i64 = key.strip_prefix("SUP-").unwrap().parse().unwrap();
            let stored = server.store().get_ticket(number).await.unwrap();
            let stored = stored.unwrap_or_else(|| panic!("no ticket {key}: {body}"));
            assert_eq!(body["ticket"]["title"], stored.title.as_str(), "{body}");
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "kb.article_published",
            "ticket.assigned",
            "ticket.created",
            "ticket.created",
            "ticket.created",
            "ticket.resolved"
        ]
    );
    // Nothing is left to deliver: a delivery is removed from the outbox
    // once the receiver's answer reached the delivery task.
    common::eventually(Duration::from_secs(10), "an empty outbox", || async {
        server
            .store()
            .due_outbox(i64::MAX, 100)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_retries_and_loses_nothing() {
    // Take a free port, then close it: connections are refused.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let server = start(port).await;
    let expected = make_events(&server).await;
    // Several attempts fail while nobody listens.
    let store = server.store().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pending = store.due_outbox(i64::MAX, 100).await.unwrap();
        assert_eq!(pending.len(), expected, "events are kept while undelivered");
        if pending.iter().all(|e| e.attempts >= 2) {
            assert!(pending.iter().all(|e| !e.last_error.is_empty()));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retries: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The receiver comes up, but fails its first two requests.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let mut rx = receiver(listener, 2);
    let (delivered, failed) = collect(&mut rx, expected).await;
    assert_eq!(failed, 2);
    assert_eq!(delivered.len(), expected);
    for request in delivered.values() {
        assert_eq!(
            request.headers["x-schoolfleet-signature"],
            expected_signature(SECRET, &request.body)
        );
    }
    common::eventually(Duration::from_secs(10), "an empty outbox", || async {
        store.due_outbox(i64::MAX, 100).await.unwrap().is_empty()
    })
    .await;
}

#[tokio::test]
async fn https_receivers_are_verified_against_the_configured_ca() {
    use schoolfleet_server::pki::CertificateAuthority;
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&dir.path().join("receiver-ca")).unwrap();
    let cert = ca.issue_server_cert(&["127.0.0.1".to_string()]).unwrap();
    let chain = schoolfleet_proto::transport::pem_certs_to_der(&cert.cert_chain_pem).unwrap();
    use rustls_pki_types::pem::PemObject;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let ca_file = dir.path().join("receiver-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut rx = receiver_tls(listener, 0, Some(acceptor));
    let server = InProcessServer::start_with(|c| {
        c.webhooks.url = format!("https://127.0.0.1:{port}/hook");
        c.webhooks.secret.0 = SECRET.into();
        c.webhooks.ca_file = ca_file.clone();
        c.webhooks.retry_initial = Duration::from_millis(100);
        c.webhooks.retry_max = Duration::from_millis(400);
    })
    .await;
    let expected = make_events(&server).await;
    let (delivered, _) = collect(&mut rx, expected).await;
    assert_eq!(delivered.len(), expected);
}

#[tokio::test]
async fn https_receiver_with_an_untrusted_certificate_gets_nothing() {
    use schoolfleet_server::pki::CertificateAuthority;
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&dir.path().join("receiver-ca")).unwrap();
    let other = CertificateAuthority::load_or_create(&dir.path().join("other-ca")).unwrap();
    let cert = ca.issue_server_cert(&["127.0.0.1".to_string()]).unwrap();
    let chain = schoolfleet_proto::transport::pem_certs_to_der(&cert.cert_chain_pem).unwrap();
    use rustls_pki_types::pem::PemObject;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    // The server trusts a different CA.
    let ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&ca_file, other.cert_pem()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut rx = receiver_tls(listener, 0, Some(acceptor));
    let server = InProcessServer::start_with(|c| {
        c.webhooks.url = format!("https://127.0.0.1:{port}/hook");
        c.webhooks.secret.0 = SECRET.into();
        c.webhooks.ca_file = ca_file.clone();
        c.webhooks.retry_initial = Duration::from_millis(100);
        c.webhooks.retry_max = Duration::from_millis(400);
    })
    .await;
    let expected = make_events(&server).await;
    let store = server.store().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pending = store.due_outbox(i64::MAX, 100).await.unwrap();
        assert_eq!(pending.len(), expected);
        if pending.iter().all(|e| e.attempts >= 2) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{pending:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rx.try_recv().is_err(),
        "a request reached an untrusted receiver"
    );
}

#[tokio::test]
async fn events_queued_before_a_restart_are_delivered_after_it() {
    let db_dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", db_dir.path().join("shared.db").display());
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let configure = |c: &mut schoolfleet_server::config::Config| {
        c.server.database_url = database_url.clone();
        c.webhooks.url = format!("http://127.0.0.1:{port}/hook");
        c.webhooks.secret.0 = SECRET.into();
        c.webhooks.retry_initial = Duration::from_millis(100);
        c.webhooks.retry_max = Duration::from_millis(300);
    };
    // First run: the receiver is down; events wait in the database.
    let first = InProcessServer::start_with(configure).await;
    let expected = make_events(&first).await;
    let pending = first.store().due_outbox(i64::MAX, 100).await.unwrap();
    assert_eq!(pending.len(), expected);
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Second run on the same database, receiver up: all of them arrive.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let mut rx = receiver(listener, 0);
    let second = InProcessServer::start_with(configure).await;
    let (delivered, _) = collect(&mut rx, expected).await;
    assert_eq!(delivered.len(), expected);
    drop(second);
}
