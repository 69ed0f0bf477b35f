//! Wiring: storage, CA, TLS and the gRPC services on one listener.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use schoolfleet_proto::v1::agent_service_server::AgentServiceServer;
use schoolfleet_proto::v1::audit_service_server::AuditServiceServer;
use schoolfleet_proto::v1::compliance_service_server::ComplianceServiceServer;
use schoolfleet_proto::v1::device_service_server::DeviceServiceServer;
use schoolfleet_proto::v1::enrollment_service_server::EnrollmentServiceServer;
use schoolfleet_proto::v1::inventory_service_server::InventoryServiceServer;
use schoolfleet_proto::v1::knowledge_service_server::KnowledgeServiceServer;
use schoolfleet_proto::v1::session_service_server::SessionServiceServer;
use schoolfleet_proto::v1::tenant_service_server::TenantServiceServer;
use schoolfleet_proto::v1::ticket_service_server::TicketServiceServer;
use schoolfleet_proto::v1::user_service_server::UserServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use schoolfleet_proto::files::Existing;

use crate::agents::AgentRegistry;
use crate::api::{self, AppState};
use crate::auth::secrets;
use crate::config::Config;
use crate::pki::{self, CertificateAuthority};
use crate::storage::{self, ApiToken, StorageError, Store, User, now_millis};

/// File in the data directory that holds the first admin's API token.
pub const BOOTSTRAP_TOKEN_FILE: &str = "bootstrap-admin.token";
/// File in the data directory with the CA pin, for scripts and the README.
pub const CA_PIN_FILE: &str = "ca.pin";
/// File in the data directory with the key of the audit chain head's MAC.
pub const AUDIT_HEAD_KEY_FILE: &str = "audit-head.key";
/// File in the data directory with the data keys (TOTP secrets, recordings).
pub const DATA_KEY_FILE: &str = "data.keys";

/// Reads the audit head key (64 hex digits), or creates it (mode 0600)
/// when the file does not exist. Returns the key and whether it is new.
pub fn load_or_create_head_key(path: &Path) -> std::io::Result<(Vec<u8>, bool)> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = hex::decode(text.trim()).map_err(|_| invalid("not hex"))?;
            if key.len() < 32 {
                return Err(invalid("shorter than 32 bytes"));
            }
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let text = format!("{}\n", hex::encode(key));
            match schoolfleet_proto::files::write_durably(
                path,
                text.as_bytes(),
                0o600,
                Existing::Keep,
            ) {
                Ok(()) => Ok((key.to_vec(), true)),
                // Another process created it a moment ago: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create_head_key(path)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot prepare data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("webhooks: {0}")]
    Webhooks(#[from] crate::webhooks::WebhookError),
}

/// Opens storage and the CA; creates the bootstrap admin on first start.
pub async fn prepare(config: Config) -> Result<AppState, ServerError> {
    let data_dir = &config.server.data_dir;
    create_private_dir(data_dir)
        .map_err(|e| ServerError::DataDir(data_dir.display().to_string(), e))?;
    crate::webhooks::validate(&config.webhooks)?;
    let store = storage::open(&config.server.database_url).await?;
    let ca = match (&config.tls.ca_cert_file, &config.tls.ca_key_file) {
        (Some(cert), Some(key)) => {
            let read = |p: &Path| {
                std::fs::read_to_string(p)
                    .map_err(|e| ServerError::DataDir(p.display().to_string(), e))
            };
            CertificateAuthority::from_pem(&read(cert)?, &read(key)?)?
        }
        (None, None) => CertificateAuthority::load_or_create(data_dir)?,
        _ => {
            return Err(ServerError::Tls(
                "tls.ca_cert_file and tls.ca_key_file must be given together".into(),
            ));
        }
    };
    let pin = schoolfleet_proto::transport::format_pin(&ca.fingerprint());
    std::fs::write(data_dir.join(CA_PIN_FILE), format!("{pin}\n"))
        .map_err(|e| ServerError::DataDir(data_dir.display().to_string(), e))?;
    tracing::info!(ca_pin = %pin, "server CA ready");
    bootstrap_admin(&store, data_dir, config.server.bootstrap_token_validity).await?;
    let key_file = config
        .audit
        .head_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join(AUDIT_HEAD_KEY_FILE));
    let (key, created) = load_or_create_head_key(&key_file)
        .map_err(|e| ServerError::DataDir(key_file.display().to_string(), e))?;
    store.set_audit_key(key);
    if created && store.audit_chain_head().await?.seq > 0 {
        // An existing chain gets its first MAC from this entry on.
        store
            .append_audit(&storage::AuditEvent {
                at: now_millis(),
                actor: "server".into(),
                action: "audit.head_key_created".into(),
                target: "audit".into(),
                county_id: None,
                outcome: "ok".into(),
                details: format!("file={}", key_file.display()),
                school_id: None,
            })
            .await?;
    }
    // Entries written before the chain existed join it, in their order.
    let chained = store.chain_unsequenced_audit().await?;
    if chained > 0 {
        tracing::info!(
            entries = chained,
            "added earlier audit entries to the hash chain"
        );
    }
    let data_key_file = config
        .sessions
        .data_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join(DATA_KEY_FILE));
    let keys = crate::keyring::Keyring::load_or_create(&data_key_file).map_err(|e| {
        ServerError::DataDir(
            data_key_file.display().to_string(),
            std::io::Error::other(e),
        )
    })?;
    let device_limits = Arc::new(crate::limits::DeviceLimits::new(&config));
    let auth_failures = Arc::new(crate::limits::AuthFailures::new(&config.limits));
    let cluster = Arc::new(crate::cluster::Cluster::new(
        &config.server.advertise_url,
        ca.fingerprint(),
    ));
    Ok(AppState {
        seen: crate::heartbeats::SeenWriter::start(store.clone()),
        cluster,
        device_limits,
        auth_failures,
        keys: Arc::new(keys),
        store,
        ca: Arc::new(ca),
        config: Arc::new(config),
        agents: Arc::new(AgentRegistry::default()),
        compliance: Arc::default(),
        ingest: Arc::default(),
        sessions: Arc::default(),
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
    })
}

/// On an empty database, creates user `admin` (admin of the cooperation)
/// and writes its API token to a file readable by the owner only. The
/// token itself is never logged.
async fn bootstrap_admin(
    store: &Arc<dyn Store>,
    data_dir: &Path,
    validity: Duration,
) -> Result<(), ServerError> {
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let now = now_millis();
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        name: "admin".into(),
        county_id: None,
        created_at: now,
        bindings: vec![storage::RoleBindingRecord::new("admin", "cooperation")],
    };
    let (id, secret) = secrets::generate();
    let token = ApiToken {
        id: id.clone(),
        user_id: user.id.clone(),
        secret_hash: secrets::hash_secret(&secret),
        description: "bootstrap admin".into(),
        created_at: now,
        // Only to create personal users with: it expires (issue 12).
        expires_at: Some(now.saturating_add(validity.as_millis() as i64)),
        revoked_at: None,
    };
    // The file first: if the database write then fails, the next start
    // simply bootstraps again and overwrites it.
    let path = data_dir.join(BOOTSTRAP_TOKEN_FILE);
    let contents = format!(
        "{}\n",
        schoolfleet_proto::tokens::format_api_token(&id, &secret)
    );
    schoolfleet_proto::files::write_durably(&path, contents.as_bytes(), 0o600, Existing::Replace)
        .map_err(|e| ServerError::DataDir(path.display().to_string(), e))?;
    match store.create_user_with_token(&user, Some(&token)).await {
        Ok(()) => {}
        // Another replica bootstrapped at the same moment; its token is
        // the one that works, so drop ours.
        Err(StorageError::Conflict(_)) => {
            let _ = std::fs::remove_file(&path);
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    tracing::warn!(
        path = %path.display(),
        expires_in = %humantime::format_duration(validity),
        "created bootstrap admin `admin`; its API token is in this file and expires. Create \
         personal users, then revoke it and delete the file"
    );
    Ok(())
}

/// Names the server certificate (and the demo portal's) is valid for.
pub fn subject_alt_names(config: &Config) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    names.extend(config.tls.subject_alt_names.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// Serves all services on `listener` until `shutdown` is cancelled, then
/// drains for at most the configured grace period.
/// Starts the web portal on `listener` (its own TLS port) beside the gRPC
/// server: the operator's certificate, or one issued by the server's CA.
pub fn spawn_portal(
    state: &AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let tls = crate::web::tls_config(state, &subject_alt_names(&state.config))
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    state
        .tasks
        .spawn(crate::web::serve(state.clone(), listener, tls, shutdown));
    Ok(())
}

pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let config = state.config.clone();
    let server_cert = state.ca.issue_server_cert(&subject_alt_names(&config))?;
    let tls = Arc::new(pki::server_rustls_config(&state.ca, &server_cert)?);
    let limit = config.limits.max_message_bytes;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AgentServiceServer<api::AgentApi>>()
        .await;
    // v1 and, for the many tools that still speak only it (grpcurl,
    // Python's descriptor database), v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(schoolfleet_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let reflection = reflection().build_v1()?;

    macro_rules! limited {
        ($server:ident, $api:expr) => {
            $server::new($api)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit)
        };
    }

    // TLS is done by our own accept loop (`listener.rs`), which bounds the
    // handshake, the time to the first request and the connections.
    let router = tonic::transport::Server::builder()
        // Pings find a frozen device (or a dead NAT path) within
        // interval + timeout, instead of after the agent's idle limit.
        .http2_keepalive_interval(Some(config.agents.keepalive_interval))
        .http2_keepalive_timeout(Some(config.agents.keepalive_timeout))
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(8 * 1024 * 1024))
        // Each session channel is its own stream: room for a forward
        // session's 256 connections and more, but not unbounded.
        .max_concurrent_streams(1024)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(limited!(AgentServiceServer, api::AgentApi(state.clone())))
        .add_service(limited!(TenantServiceServer, api::TenantApi(state.clone())))
        .add_service(limited!(
            EnrollmentServiceServer,
            api::EnrollmentApi(state.clone())
        ))
        .add_service(limited!(UserServiceServer, api::UserApi(state.clone())))
        .add_service(limited!(DeviceServiceServer, api::DeviceApi(state.clone())))
        .add_service(limited!(
            InventoryServiceServer,
            api::InventoryApi(state.clone())
        ))
        .add_service(limited!(
            ComplianceServiceServer,
            api::ComplianceApi(state.clone())
        ))
        .add_service(limited!(TicketServiceServer, api::TicketApi(state.clone())))
        .add_service(limited!(
            KnowledgeServiceServer,
            api::KnowledgeApi(state.clone())
        ))
        .add_service(limited!(
            SessionServiceServer,
            api::SessionApi(state.clone())
        ))
        .add_service(limited!(AuditServiceServer, api::AuditApi(state.clone())));

    state.tasks.spawn(compliance_sweeper(state.clone()));
    state.tasks.spawn(retention_sweeper(state.clone()));
    state.tasks.spawn(auth_failure_auditor(state.clone()));
    state.tasks.spawn(
        state
            .cluster
            .clone()
            .announce(state.store.clone(), state.shutdown.clone()),
    );
    if crate::webhooks::enabled(&config) {
        state.tasks.spawn(crate::webhooks::run_delivery(
            state.store.clone(),
            config.webhooks.clone(),
            state.shutdown.clone(),
        ));
    }

    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    tracing::info!(%addr, "listening");
    let counter = crate::listener::ConnectionCounter::new(crate::listener::ConnectionLimits {
        max_total: config.limits.max_connections,
        max_per_peer: config.limits.max_connections_per_peer,
        first_request_timeout: config.limits.first_request_timeout,
    });
    let incoming = crate::listener::incoming(listener, tls, counter, shutdown.clone());
    let drain = {
        let shutdown = shutdown.clone();
        let app_shutdown = state.shutdown.clone();
        async move {
            shutdown.cancelled().await;
            // Ends the agent streams, so that the drain below can finish.
            app_shutdown.cancel();
        }
    };
    let serve = router.serve_with_incoming_shutdown(incoming, drain);
    tokio::pin!(serve);
    tokio::select! {
        result = &mut serve => result?,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(config.server.shutdown_grace).await;
        } => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
    state.tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), state.tasks.wait()).await;
    tracing::info!("server stopped");
    Ok(())
}

/// Expires waivers and takes the daily snapshot, until shutdown. Several
/// replicas may run it at once: both steps are idempotent.
async fn compliance_sweeper(state: AppState) {
    let mut interval = tokio::time::interval(state.config.compliance.sweep_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = chrono::Utc::now();
        match state.compliance.expire_waivers(&state.store, now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(devices = n, "re-evaluated devices with expired waivers"),
            Err(err) => tracing::error!(error = %err, "waiver expiry sweep failed"),
        }
        if let Err(err) = state.compliance.daily_snapshot(&state.store, now).await {
            tracing::error!(error = %err, "daily compliance snapshot failed");
        }
    }
}

/// Writes the aggregated audit entries of failed authentications once per
/// window, and the last ones at shutdown.
async fn auth_failure_auditor(state: AppState) {
    let mut interval = tokio::time::interval(state.config.limits.auth_failure_audit_window);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        state.flush_auth_failures().await;
    }
    state.flush_auth_failures().await;
}

/// How often recordings and audit entries past their retention go.
const RETENTION_SWEEP: Duration = Duration::from_secs(3600);
/// The first sweep waits this long after the start: a restarted server
/// first takes back its agents (a reconnect storm) before it deletes and
/// vacuums. (It also kept a first sweep from racing tests that write
/// expired rows into a server that has just started.)
const FIRST_RETENTION_SWEEP: Duration = Duration::from_secs(120);

/// Deletes recordings and audit entries past their retention, hourly.
/// Replicas may run it at once: deletes are idempotent and the audit
/// pruning takes the chain's lock.
async fn retention_sweeper(state: AppState) {
    let mut interval = tokio::time::interval_at(
        tokio::time::Instant::now() + FIRST_RETENTION_SWEEP,
        RETENTION_SWEEP,
    );
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        sweep_retention(&state).await;
    }
}

/// One retention pass (public for tests).
pub async fn sweep_retention(state: &AppState) {
    let now = now_millis();
    // Web sessions idle past the portal's timeout are dead already (the
    // portal refuses them); their rows go too.
    let idle_before = now.saturating_sub(state.config.portal.idle_timeout.as_millis() as i64);
    match state.store.delete_idle_web_sessions(idle_before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(sessions = n, "deleted idle web sessions"),
        Err(err) => tracing::error!(error = %err, "web session sweep failed"),
    }
    let sessions = &state.config.sessions;
    let cutoff = now.saturating_sub(sessions.recording_retention.as_millis() as i64);
    match state.store.delete_recordings_before(cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(sessions = n, "deleted recordings past their retention"),
        Err(err) => tracing::error!(error = %err, "recording retention sweep failed"),
    }
    // Sessions of a replica that died cannot outlive the maximum duration.
    let stale_before =
        now.saturating_sub((sessions.max_duration + Duration::from_secs(300)).as_millis() as i64);
    match state
        .store
        .end_stale_sessions(stale_before, now, "server stopped during the session")
        .await
    {
        Ok(ids) => {
            for id in ids {
                // In the session's county, like every other entry about it:
                // without one, the county's auditors never see this end.
                let county = match state.store.get_session(&id).await {
                    Ok(session) => session.map(|s| s.county_id),
                    Err(err) => {
                        tracing::warn!(session = %id, error = %err, "cannot read the stale session");
                        None
                    }
                };
                state
                    .audit(
                        "server",
                        "session.end",
                        &format!("session:{id}"),
                        county.as_deref(),
                        "error",
                        "reason=\"server stopped during the session\"".into(),
                    )
                    .await;
            }
        }
        Err(err) => tracing::error!(error = %err, "stale session sweep failed"),
    }
    // The signed head, for an external log (journald, a SIEM): whoever
    // keeps it can later tell a rewritten chain from the one they saw.
    match state.store.audit_chain_head().await {
        Ok(head) => tracing::info!(
            seq = head.seq,
            head_hash = %head.head_hash,
            mac = %head.head_mac,
            "audit chain head"
        ),
        Err(err) => tracing::warn!(error = %err, "cannot read the audit chain head"),
    }
    crate::retention::sweep(state, now).await;
    prune_audit(state, now).await;
    // Deleted means gone from the file, the WAL included.
    crate::retention::compact(state).await;
}

/// Deletes audit entries past `[audit] retention` (0: kept forever).
async fn prune_audit(state: &AppState, now: i64) {
    let retention = state.config.audit.retention;
    if retention.is_zero() {
        return;
    }
    let before = now.saturating_sub(retention.as_millis() as i64);
    let event = storage::AuditEvent {
        at: now,
        actor: "server".into(),
        action: crate::audit::PRUNE_ACTION.into(),
        target: "audit".into(),
        county_id: None,
        outcome: "ok".into(),
        details: format!("retention={}", humantime::format_duration(retention)),
        school_id: None,
    };
    match state.store.prune_audit(before, &event).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(entries = n, "deleted audit entries past their retention"),
        Err(err) => tracing::error!(error = %err, "audit retention sweep failed"),
    }
}

/// Raises the soft limit of open descriptors to the hard limit (systemd
/// gives services 1,024 soft by default: about 1,000 connections then made
/// the server unreachable). Returns the soft limit before and after.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    let (now, _) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    Ok((soft, now))
}

/// The data directory holds the CA key, the database and the bootstrap
/// token: created owner-only, and a warning if an existing one is not.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "data directory is readable by other users; chmod 700 it");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{AuditQuery, SESSION_ACTIVE, SessionRecord};

    #[tokio::test]
    async fn the_audit_head_key_is_a_private_file_and_signs_the_head() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_owned();
        config.server.database_url =
            format!("sqlite://{}", dir.path().join("schoolfleet.db").display());
        let state = prepare(config.clone()).await.unwrap();
        let file = dir.path().join(AUDIT_HEAD_KEY_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let key = state.store.audit_key().unwrap();
        assert_eq!(key.len(), 32);
        state
            .audit(
                "user:admin",
                "county.create",
                "county:kus",
                None,
                "ok",
                String::new(),
            )
            .await;
        let head = state.store.audit_chain_head().await.unwrap();
        assert_eq!(head.head_mac, head.expected_mac(&key));
        // The same key on the next start.
        drop(state);
        let again = prepare(config).await.unwrap();
        assert_eq!(again.store.audit_key().unwrap(), key);
    }

    #[tokio::test]
    async fn a_stale_session_end_is_audited_in_its_county() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_owned();
        config.server.database_url =
            format!("sqlite://{}", dir.path().join("schoolfleet.db").display());
        let state = prepare(config).await.unwrap();
        let session = SessionRecord {
            id: "s1".into(),
            kind: "shell".into(),
            state: SESSION_ACTIVE.into(),
            device_id: "d1".into(),
            county_id: "kus".into(),
            school_id: "kus012".into(),
            user_id: "u1".into(),
            actor: "user:anna".into(),
            reason: "Drucker".into(),
            ticket: String::new(),
            summary: "shell".into(),
            spec: "{}".into(),
            consent: "none".into(),
            // Long before any maximum duration.
            started_at: 1_000,
            ended_at: None,
            end_reason: String::new(),
            bytes_to_device: 0,
            bytes_from_device: 0,
            exit_code: None,
            has_recording: false,
            channels: 0,
            end_requested_at: None,
            end_requested_reason: String::new(),
            step_up: String::new(),
        };
        state.store.insert_session(&session).await.unwrap();
        sweep_retention(&state).await;
        let seen_by_county = state
            .store
            .list_audit_entries(&AuditQuery {
                counties: Some(vec!["kus".into()]),
                schools: Vec::new(),
                action_prefix: Some("session.end".into()),
                targets: vec!["session:s1".into()],
                since: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(seen_by_county.len(), 1, "{seen_by_county:?}");
        assert_eq!(seen_by_county[0].event.county_id.as_deref(), Some("kus"));
    }
}
