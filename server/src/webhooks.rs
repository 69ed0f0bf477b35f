//! Service-desk notifications as webhooks.
//!
//! Events are written to the `webhook_outbox` table in the transaction of
//! the change they report, so none is lost while the receiver is down or
//! the server restarts. A delivery task POSTs due events, signed with
//! HMAC-SHA256 over the raw body (`X-Schoolfleet-Signature: sha256=<hex>`,
//! plus `X-Schoolfleet-Timestamp` and `X-Schoolfleet-Delivery`), and retries
//! failures with exponential backoff. Delivery is at least once (a crash
//! between send and mark, or two replicas racing past the lease, repeats
//! an event): receivers deduplicate by the delivery id.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WebhooksSection};
use crate::storage::{Millis, OutboxEvent, Store, TicketRecord, now_millis};

/// How often the delivery task looks for due events.
const POLL: Duration = Duration::from_millis(500);
const BATCH: i64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook URL {0:?} is invalid: expected http(s)://host[:port]/path without user info")]
    InvalidUrl(String),
    #[error("webhook TLS setup: {0}")]
    Tls(String),
    #[error("webhooks.secret is required when webhooks.url is set (receivers check the signature)")]
    NoSecret,
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("receiver answered {0}")]
    Status(String),
}

/// True when webhooks are configured (events are only queued then).
pub fn enabled(config: &Config) -> bool {
    !config.webhooks.url.trim().is_empty()
}

/// Checks the configured URL at start-up, so a typo fails loudly.
pub fn validate(config: &WebhooksSection) -> Result<(), WebhookError> {
    if config.url.trim().is_empty() {
        return Ok(());
    }
    if config.secret.0.is_empty() {
        return Err(WebhookError::NoSecret);
    }
    parse_url(&config.url).map(|_| ())
}

/// A ticket event for the outbox, or `None` when webhooks are off.
pub fn ticket_event(
    config: &Config,
    kind: &str,
    ticket: &TicketRecord,
    assignee: Option<&str>,
    at: Millis,
) -> Option<OutboxEvent> {
    enabled(config).then(|| ticket_outbox_event(kind, ticket, assignee, at))
}

/// The `ticket.created` event, made by the store once the new ticket has
/// its number (so the key `SUP-1234` is in the payload), or `None` when
/// webhooks are off.
pub fn ticket_created(config: &Config) -> Option<crate::storage::TicketAnnouncer> {
    fn announce(ticket: &TicketRecord) -> OutboxEvent {
        ticket_outbox_event("ticket.created", ticket, None, ticket.created_at)
    }
    enabled(config).then_some(announce as crate::storage::TicketAnnouncer)
}

fn ticket_outbox_event(
    kind: &str,
    ticket: &TicketRecord,
    assignee: Option<&str>,
    at: Millis,
) -> OutboxEvent {
    let mut event = OutboxEvent::new(kind, String::new(), at);
    event.payload = serde_json::json!({
        "id": event.event_id,
        "event": kind,
        "at": at,
        "ticket": {
            "key": ticket.key(),
            "title": ticket.title,
            "status": ticket.status,
            "priority": ticket.priority,
            "category": ticket.category,
            "county_id": ticket.county_id,
            "school_id": ticket.school_id,
            "assignee": assignee,
        },
    })
    .to_string();
    event
}

/// An article event for the outbox, or `None` when webhooks are off.
pub fn article_event(
    config: &Config,
    kind: &str,
    article: &crate::storage::KbArticle,
    author: &str,
    at: Millis,
) -> Option<OutboxEvent> {
    if !enabled(config) {
        return None;
    }
    let mut event = OutboxEvent::new(kind, String::new(), at);
    event.payload = serde_json::json!({
        "id": event.event_id,
        "event": kind,
        "at": at,
        "article": {
            "id": article.id,
            "title": article.title,
            "version": article.version,
            "county_id": article.county_id,
            "category": article.category,
            "author": author,
        },
    })
    .to_string();
    Some(event)
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delay before attempt `attempts + 1`: initial × 2^attempts, capped.
pub fn backoff(config: &WebhooksSection, attempts: i64) -> Duration {
    let factor = 2u32.saturating_pow(attempts.clamp(0, 30) as u32);
    config
        .retry_initial
        .saturating_mul(factor)
        .min(config.retry_max)
}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, WebhookError> {
    let invalid = || WebhookError::InvalidUrl(url.to_owned());
    let url = url.trim();
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, url.strip_prefix("http://").ok_or_else(invalid)?)
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse().map_err(|_| invalid())?)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    // No user info: the URL is logged, and credentials do not belong there.
    if host.is_empty()
        || authority.contains('@')
        || path.chars().any(|c| c.is_control() || c == ' ')
    {
        return Err(invalid());
    }
    Ok(Target {
        tls,
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// One POST; Ok when the receiver answered 2xx.
pub async fn deliver(config: &WebhooksSection, event: &OutboxEvent) -> Result<(), WebhookError> {
    let target = parse_url(&config.url)?;
    let body = event.payload.as_bytes();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nUser-Agent: schoolfleet-server\r\n\
         X-Schoolfleet-Event: {kind}\r\nX-Schoolfleet-Delivery: {id}\r\n\
         X-Schoolfleet-Timestamp: {ts}\r\nX-Schoolfleet-Signature: {sig}\r\n\
         Connection: close\r\n\r\n",
        path = target.path,
        host = target.host,
        len = body.len(),
        kind = event.kind,
        id = event.event_id,
        ts = now_millis() / 1000,
        sig = signature(&config.secret.0, body),
    );
    let attempt = async {
        let host = target.host.trim_start_matches('[').trim_end_matches(']');
        let stream = tokio::net::TcpStream::connect((host, target.port)).await?;
        if target.tls {
            let connector = tls_connector(config)?;
            let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| WebhookError::Tls(e.to_string()))?;
            let stream = connector.connect(name, stream).await?;
            exchange(stream, request.as_bytes(), body).await
        } else {
            exchange(stream, request.as_bytes(), body).await
        }
    };
    tokio::time::timeout(config.timeout, attempt)
        .await
        .map_err(|_| WebhookError::Timeout)?
}

/// TLS to the receiver, trusting the CA bundle of `ca_file`.
fn tls_connector(config: &WebhooksSection) -> Result<tokio_rustls::TlsConnector, WebhookError> {
    let pem = std::fs::read_to_string(&config.ca_file)
        .map_err(|e| WebhookError::Tls(format!("cannot read {}: {e}", config.ca_file.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in schoolfleet_proto::transport::pem_certs_to_der(&pem)
        .map_err(|e| WebhookError::Tls(e.to_string()))?
    {
        // A bundle may hold a certificate rustls cannot use; skip it.
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(tls)))
}

/// Writes the request, reads the status line; Ok on 2xx.
async fn exchange<S>(mut stream: S, head: &[u8], body: &[u8]) -> Result<(), WebhookError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(head).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    // The status line is all we need; read a bounded prefix.
    let mut buf = vec![0u8; 1024];
    let mut read = 0;
    while read < buf.len() {
        let n = stream.read(&mut buf[read..]).await?;
        read += n;
        if n == 0 || buf[..read].contains(&b'\n') {
            break;
        }
    }
    let line = String::from_utf8_lossy(&buf[..read]);
    let line = line.lines().next().unwrap_or_default().to_owned();
    let code = line.split_whitespace().nth(1).unwrap_or_default();
    if code.len() == 3 && code.starts_with('2') {
        Ok(())
    } else {
        let shown = schoolfleet_proto::text::clean(&line, 100).value;
        Err(WebhookError::Status(if shown.is_empty() {
            "nothing".into()
        } else {
            shown
        }))
    }
}

/// Delivers due events until `shutdown`. Every failure is recorded on the
/// event and retried later; nothing is dropped.
pub async fn run_delivery(
    store: Arc<dyn Store>,
    config: WebhooksSection,
    shutdown: CancellationToken,
) {
    tracing::info!(url = %config.url, "webhook delivery started");
    loop {
        let now = now_millis();
        match store.due_outbox(now, BATCH).await {
            Ok(events) => {
                for event in events {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    // A lease, so that another replica does not send the
                    // same event at the same time.
                    let lease = now_millis() + (config.timeout.as_millis() as i64) * 2;
                    match store
                        .claim_outbox(event.id, event.next_attempt_at, lease)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot claim webhook event");
                            continue;
                        }
                    }
                    let outcome = tokio::select! {
                        outcome = deliver(&config, &event) => outcome,
                        _ = shutdown.cancelled() => return,
                    };
                    let stored = match outcome {
                        Ok(()) => {
                            tracing::debug!(event = %event.event_id, kind = %event.kind, "webhook delivered");
                            store.mark_outbox_delivered(event.id, now_millis()).await
                        }
                        Err(err) => {
                            let delay = backoff(&config, event.attempts);
                            tracing::warn!(
                                event = %event.event_id,
                                kind = %event.kind,
                                attempts = event.attempts + 1,
                                retry_in = ?delay,
                                error = %err,
                                "webhook delivery failed"
                            );
                            store
                                .mark_outbox_failed(
                                    event.id,
                                    now_millis() + delay.as_millis() as i64,
                                    &err.to_string(),
                                )
                                .await
                        }
                    };
                    if let Err(err) = stored {
                        tracing::error!(error = %err, "cannot record webhook outcome");
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot read webhook outbox"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = WebhooksSection::default();
        assert_eq!(backoff(&config, 0), Duration::from_secs(2));
        assert_eq!(backoff(&config, 3), Duration::from_secs(16));
        assert_eq!(backoff(&config, 40), Duration::from_secs(600));
    }

    #[test]
    fn a_url_needs_a_secret() {
        let mut config = WebhooksSection {
            url: "http://127.0.0.1:9/hook".into(),
            ..Default::default()
        };
        assert!(matches!(validate(&config), Err(WebhookError::NoSecret)));
        config.secret.0 = "s".into();
        assert!(validate(&config).is_ok());
        assert!(validate(&WebhooksSection::default()).is_ok());
    }

    #[test]
    fn urls_are_checked() {
        let t = parse_url("http://127.0.0.1:9000/hook?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 9000, "/hook?x=1")
        );
        assert_eq!(parse_url("http://example.org").unwrap().port, 80);
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("https://x/").unwrap().tls);
        assert_eq!(parse_url("https://x/").unwrap().port, 443);
        assert!(parse_url("https://user:pw@x/").is_err());
        assert!(parse_url("http://x/a b").is_err());
        assert!(parse_url("http://x/a\r\nX-Evil: 1").is_err());
    }
}
