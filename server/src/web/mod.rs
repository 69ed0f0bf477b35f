//! The web portal (issue 13): German pages for coordinators, school
//! leaders, teachers and technicians, served by axum in the server process
//! on its own HTTPS listener, sharing `AppState` with gRPC.
//!
//! - `session.rs`: web login (argon2id passwords on existing users, the
//!   `IdentityProvider` seam for OIDC later), server-side sessions,
//!   cookies, CSRF, idle timeout.
//! - `data.rs`: the ONE place where pages read and write data. It calls the
//!   store and the principal's checks exactly as the gRPC handlers do, so it
//!   moves onto the service layer (`service/`) as that lands.
//! - `pages/`: maud templates (compile-time escaping; agent strings are
//!   never `PreEscaped`), `svg.rs` the trend chart, `csv.rs` the export.
//!
//! No JavaScript at all: the CSP forbids scripts, every flow is a form.

mod csv;
mod data;
mod pages;
mod session;
mod svg;

pub use session::{IdentityProvider, LocalPasswords};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// What every handler gets: the server's state and the identity provider.
#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    pub identity: Arc<dyn IdentityProvider>,
}

/// The peer's address, put into each request by the accept loop (for the
/// login's failure limits).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("portal TLS: {0}")]
    Tls(String),
    #[error("portal certificate: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
}

/// The portal's TLS configuration: the operator's certificate and key, or
/// one issued by the server's CA for `names` (the demo). HTTP/1.1 only.
pub fn tls_config(state: &AppState, names: &[String]) -> Result<rustls::ServerConfig, PortalError> {
    use rustls_pki_types::pem::PemObject;
    let portal = &state.config.portal;
    let (chain_pem, key_pem) = match (&portal.cert_file, &portal.key_file) {
        (Some(cert), Some(key)) => (std::fs::read(cert)?, std::fs::read(key)?),
        (None, None) => {
            let issued = state.ca.issue_server_cert(names)?;
            (
                issued.cert_chain_pem.into_bytes(),
                issued.key_pem.into_bytes(),
            )
        }
        _ => {
            return Err(PortalError::Tls(
                "portal.cert_file and portal.key_file must be given together".into(),
            ));
        }
    };
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PortalError::Tls(e.to_string()))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| PortalError::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| PortalError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The portal's routes.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/anmelden", get(pages::login_form).post(pages::login))
        .route("/anmelden/code", post(pages::login_code))
        .route("/abmelden", post(pages::logout))
        .route("/static/portal.css", get(pages::stylesheet))
        // Teachers.
        .route("/melden", get(pages::report_form).post(pages::report))
        .route("/meine-meldungen", get(pages::my_tickets))
        .route("/meine-meldungen/{key}", get(pages::my_ticket))
        .route(
            "/meine-meldungen/{key}/antwort",
            post(pages::my_ticket_answer),
        )
        .route("/wissen", get(pages::articles))
        .route("/wissen/{id}", get(pages::article))
        // Coordinators and school leaders.
        .route("/konformitaet", get(pages::compliance))
        .route("/konformitaet/regel/{rule}", get(pages::compliance_rule))
        .route("/konformitaet/trend.svg", get(pages::trend_svg))
        .route("/bericht", get(pages::quarterly))
        .route("/bericht.csv", get(pages::quarterly_csv))
        .route("/beschaffung", get(pages::procurement))
        .route("/schule/{school}", get(pages::school))
        .route("/schule/{school}/einwilligung", post(pages::school_consent))
        // Technicians.
        .route("/tickets", get(pages::ticket_queue))
        .route("/tickets/{key}", get(pages::ticket))
        .route("/tickets/{key}/kommentar", post(pages::ticket_comment))
        .route("/geraete/{device}", get(pages::device))
        .route("/suche", get(pages::search))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers on every answer: no scripts, no framing, no caching of private
/// pages (all but the stylesheet), no referrer leaving the portal.
async fn security_headers(request: Request, next: Next) -> Response {
    let cacheable = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(
        headers,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000",
    );
    if cacheable {
        set(headers, header::CACHE_CONTROL, "public, max-age=3600");
    } else {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// How long a client has for the TLS handshake and then for the request
/// head: a slow client cannot hold a connection open for free.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many portal connections at once (the portal serves people,
/// not devices), and per peer address.
const MAX_CONNECTIONS: usize = 2_000;
const MAX_CONNECTIONS_PER_PEER: usize = 200;

/// Serves the portal on `listener` until `shutdown`.
pub async fn serve(
    app: AppState,
    listener: TcpListener,
    tls: rustls::ServerConfig,
    shutdown: CancellationToken,
) {
    let state = WebState {
        app,
        identity: Arc::new(LocalPasswords),
    };
    let router = router(state);
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let counter = crate::listener::ConnectionCounter::new(crate::listener::ConnectionLimits {
        max_total: MAX_CONNECTIONS,
        max_per_peer: MAX_CONNECTIONS_PER_PEER,
        first_request_timeout: HEADER_TIMEOUT,
    });
    let tasks = tokio_util::task::TaskTracker::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "portal listening");
    }
    loop {
        let (tcp, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "portal: cannot accept; pausing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = counter.try_acquire(&crate::limits::peer_key(Some(addr))) else {
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _slot = slot;
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let service =
                hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(Peer(addr));
                    tower::ServiceExt::oneshot(router.clone(), request)
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                }
            }
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
}

/// A page that failed: the status and a German sentence.
#[derive(Debug)]
pub enum PageError {
    /// Not there, or not visible to the caller (the same answer).
    NotFound,
    /// Visible, but the caller may not do this.
    Denied,
    Invalid(String),
    /// Too many failed logins; retry after this many seconds.
    TooMany(u64),
    /// No valid session: go to the login.
    Login,
    /// A form without the right CSRF token.
    Csrf,
    Unavailable,
    /// A refusal of the service layer: its kind (for the status and the
    /// title) and its German text.
    Service {
        kind: crate::service::ErrorKind,
        text: String,
    },
}

/// The service layer's error, shown as a page. Its kinds map to HTTP
/// statuses through the one table (`ErrorKind::codes`); the page shows
/// the error's German text (`AppError::german`), never the English one
/// that gRPC sends.
impl From<crate::service::AppError> for PageError {
    fn from(err: crate::service::AppError) -> Self {
        use crate::service::ErrorKind;
        match err.kind() {
            ErrorKind::Unauthenticated => PageError::Login,
            ErrorKind::ResourceExhausted => {
                PageError::TooMany(err.retry_after().map_or(60, |d| d.as_secs().max(1)))
            }
            ErrorKind::Unavailable | ErrorKind::Internal => PageError::Unavailable,
            kind @ (ErrorKind::NotFound
            | ErrorKind::Denied
            | ErrorKind::Invalid
            | ErrorKind::FailedPrecondition
            | ErrorKind::Conflict
            | ErrorKind::Aborted) => PageError::Service {
                kind,
                text: err.german().to_owned(),
            },
        }
    }
}

impl From<crate::storage::StorageError> for PageError {
    fn from(err: crate::storage::StorageError) -> Self {
        crate::service::AppError::from(err).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            PageError::Login => {
                return axum::response::Redirect::to("/anmelden").into_response();
            }
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "Nicht gefunden",
                "Diese Seite gibt es nicht, oder Sie dürfen sie nicht sehen.".to_owned(),
            ),
            PageError::Denied => (
                StatusCode::FORBIDDEN,
                "Keine Berechtigung",
                "Dafür fehlt Ihnen die Berechtigung.".to_owned(),
            ),
            PageError::Invalid(why) => (
                StatusCode::BAD_REQUEST,
                "Eingabe nicht möglich",
                why.clone(),
            ),
            PageError::TooMany(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Zu viele Versuche",
                "Zu viele fehlgeschlagene Anmeldungen. Bitte warten Sie eine Minute.".to_owned(),
            ),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "Formular abgelaufen",
                "Das Formular ist ungültig oder abgelaufen. Bitte laden Sie die Seite neu."
                    .to_owned(),
            ),
            PageError::Service { kind, text } => {
                (kind.http_status(), kind.german_title(), text.clone())
            }
            PageError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Vorübergehend nicht verfügbar",
                "Der Dienst ist gerade nicht erreichbar. Bitte versuchen Sie es später.".to_owned(),
            ),
        };
        let mut response = (status, pages::error_page(title, &text)).into_response();
        if let PageError::TooMany(seconds) = self
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
