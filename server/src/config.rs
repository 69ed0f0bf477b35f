//! Server configuration: flags, then environment variables
//! (`SCHOOLFLEET_<SECTION>__<KEY>`), then a TOML file, then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerSection,
    pub tls: TlsSection,
    pub agents: AgentsSection,
    pub limits: LimitsSection,
    pub compliance: ComplianceSection,
    pub log: LogSection,
    pub webhooks: WebhooksSection,
    pub sessions: SessionsSection,
    pub audit: AuditSection,
    pub retention: RetentionSection,
    pub portal: PortalSection,
}

/// How long personal data is kept (issue 12; docs/datenschutz.md has the
/// table for the data-protection officer, a test keeps it equal to these
/// defaults). Applied hourly by the retention sweeper; recordings and audit
/// entries keep their settings in `[sessions]` and `[audit]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Session rows (reason, ticket, command line, byte counts) after the
    /// session ended; their recording goes with them at the latest.
    #[serde(with = "humantime_serde")]
    pub sessions: Duration,
    /// Device history (software, hardware, OS changes; identity events).
    #[serde(with = "humantime_serde")]
    pub inventory_history: Duration,
    /// Device classes whose network address history is kept (opt-in);
    /// every other class keeps its current addresses only.
    pub network_history_classes: Vec<String>,
    /// How long that network history is kept.
    #[serde(with = "humantime_serde")]
    pub network_history: Duration,
    /// The report log: when each inventory report came and why.
    #[serde(with = "humantime_serde")]
    pub report_log: Duration,
    /// Tickets with their comments and timeline, after resolution.
    #[serde(with = "humantime_serde")]
    pub tickets: Duration,
    /// Compliance results under a superseded standard revision.
    #[serde(with = "humantime_serde")]
    pub compliance_results: Duration,
    /// Compliance changes (a rule's result of a device changed).
    #[serde(with = "humantime_serde")]
    pub compliance_history: Duration,
    /// Daily compliance figures per school.
    #[serde(with = "humantime_serde")]
    pub compliance_snapshots: Duration,
    /// Webhook events, delivered or not.
    #[serde(with = "humantime_serde")]
    pub webhook_outbox: Duration,
    /// Enrolment tokens after they expired or were revoked.
    #[serde(with = "humantime_serde")]
    pub enrollment_tokens: Duration,
    /// API tokens after they expired or were revoked.
    #[serde(with = "humantime_serde")]
    pub api_tokens: Duration,
}

impl RetentionSection {
    /// Every duration by its key, in the order of the default file.
    pub fn all(&self) -> Vec<(&'static str, Duration)> {
        vec![
            ("sessions", self.sessions),
            ("inventory_history", self.inventory_history),
            ("network_history", self.network_history),
            ("report_log", self.report_log),
            ("tickets", self.tickets),
            ("compliance_results", self.compliance_results),
            ("compliance_history", self.compliance_history),
            ("compliance_snapshots", self.compliance_snapshots),
            ("webhook_outbox", self.webhook_outbox),
            ("enrollment_tokens", self.enrollment_tokens),
            ("api_tokens", self.api_tokens),
        ]
    }
}

impl Default for RetentionSection {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        let days = |n: u64| Duration::from_secs(n * DAY);
        RetentionSection {
            sessions: days(180),
            inventory_history: days(365),
            network_history_classes: Vec::new(),
            network_history: days(30),
            report_log: days(90),
            tickets: days(730),
            compliance_results: days(365),
            compliance_history: days(365),
            compliance_snapshots: days(730),
            webhook_outbox: days(30),
            enrollment_tokens: days(90),
            api_tokens: days(365),
        }
    }
}

/// The web portal (coordinators, school leaders, teachers, technicians):
/// its own HTTPS listener in the server process. Off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalSection {
    /// Address of the portal's HTTPS listener, e.g. 0.0.0.0:8443.
    pub listen: Option<SocketAddr>,
    /// Certificate chain and key (PEM) of the portal, e.g. the county's.
    /// Both empty: a certificate issued by the server's own CA (the demo).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// A web session unused for this long ends (logged out).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A web session ends this long after the login in any case.
    #[serde(with = "humantime_serde")]
    pub max_session: Duration,
}

impl Default for PortalSection {
    fn default() -> Self {
        PortalSection {
            listen: None,
            cert_file: None,
            key_file: None,
            idle_timeout: Duration::from_secs(30 * 60),
            max_session: Duration::from_secs(12 * 3600),
        }
    }
}

/// Remote sessions: consent default, timeouts and size limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsSection {
    /// Consent mode where no policy applies: "none", "notify" or "prompt".
    pub default_consent: String,
    /// How long the local user has to answer a prompt.
    #[serde(with = "humantime_serde")]
    pub consent_timeout: Duration,
    /// A session without data in either direction for this long ends.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// How long the agent has to dial a channel back.
    #[serde(with = "humantime_serde")]
    pub attach_timeout: Duration,
    /// Largest file a copy session may move, in bytes.
    pub max_file_bytes: u64,
    /// Largest recording of one shell session, in bytes.
    pub max_recording_bytes: u64,
    /// Recordings of sessions that ended longer ago are deleted.
    #[serde(with = "humantime_serde")]
    pub recording_retention: Duration,
    /// Four-eyes rule for recordings: playing one needs a second person's
    /// approval (`sessions approve-playback`), valid for
    /// `recording_approval_validity`.
    pub recording_four_eyes: bool,
    #[serde(with = "humantime_serde")]
    pub recording_approval_validity: Duration,
    /// Pending and active sessions one user may hold at once (a fan-out
    /// `exec` runs one per device, `--concurrency` at a time).
    pub max_live_per_user: u32,
    /// Pending and active sessions on one device at once: more would be a
    /// row of consent dialogs pressing the pupil to click through.
    pub max_live_per_device: u32,
    /// Capabilities whose start needs a second factor (step-up, OPS.1.2.5
    /// A17): any of "shell", "exec", "forward", "cp".
    pub require_mfa: Vec<String>,
    /// After a code, more starts of the same kind with the same reason
    /// need none for this long (a fan-out `exec`); "0s": always a code.
    #[serde(with = "humantime_serde")]
    pub mfa_grace: Duration,
    /// Keys that seal TOTP secrets and recordings, outside the database.
    /// Empty: `data.keys` in the data directory, created on first start.
    pub data_key_file: Option<PathBuf>,
    /// Forward targets allowed besides the device itself (loopback), per
    /// school ("kus012"), per school and class ("kus012/verwaltungs-pc")
    /// or everywhere ("*"): "host:port" or "host:*".
    pub forward_allow: std::collections::BTreeMap<String, Vec<String>>,
    /// Programs whose arguments are secrets (all redacted), also when an
    /// argument names them in a shell command line (`sh -c '… | chpasswd'`).
    pub redact_commands: Vec<String>,
    /// Regular expressions for exec arguments that carry a secret; the
    /// part a group named `keep` matched stays, the rest becomes `***`.
    pub redact_args: Vec<String>,
}

impl Default for SessionsSection {
    fn default() -> Self {
        SessionsSection {
            default_consent: "prompt".into(),
            consent_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(15 * 60),
            max_duration: Duration::from_secs(4 * 3600),
            attach_timeout: Duration::from_secs(15),
            max_file_bytes: 1 << 30,
            max_recording_bytes: 64 << 20,
            recording_retention: Duration::from_secs(90 * 86_400),
            recording_four_eyes: false,
            recording_approval_validity: Duration::from_secs(3600),
            max_live_per_user: 64,
            max_live_per_device: 4,
            require_mfa: ["shell", "exec", "forward", "cp"]
                .map(String::from)
                .to_vec(),
            mfa_grace: Duration::from_secs(300),
            data_key_file: None,
            forward_allow: Default::default(),
            redact_commands: schoolfleet_proto::redact::DEFAULT_COMMANDS
                .map(String::from)
                .to_vec(),
            redact_args: schoolfleet_proto::redact::DEFAULT_ARG_PATTERNS
                .map(String::from)
                .to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Audit entries older than this are pruned (the chain keeps an
    /// anchor); 0 keeps them forever.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Key of the chain head's HMAC, kept outside the database. Empty:
    /// `audit-head.key` in the data directory, created on first start.
    /// Replicas sharing one database need the same file.
    pub head_key_file: Option<PathBuf>,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            retention: Duration::from_secs(730 * 86_400),
            head_key_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceSection {
    /// How often expired waivers are looked for (and the daily snapshot
    /// taken, once per day).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for ComplianceSection {
    fn default() -> Self {
        ComplianceSection {
            sweep_interval: Duration::from_secs(600),
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address of the one TLS port (agents and admins).
    pub listen: SocketAddr,
    /// CA, server certificate, bootstrap token and the SQLite file live here.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; empty = SQLite in `data_dir`.
    pub database_url: String,
    /// How long in-flight calls may take to finish on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The bootstrap admin's token expires this long after it was made.
    #[serde(with = "humantime_serde")]
    pub bootstrap_token_validity: Duration,
    /// The URL other replicas reach this one at (`https://host:port`), so
    /// that a remote session started on any replica is relayed to the one
    /// holding the agent's stream. Empty: a single server, or sessions only
    /// through the replica the agent is connected to.
    pub advertise_url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Extra DNS names or IP addresses for the server certificate, besides
    /// localhost, 127.0.0.1, ::1 and this machine's host name.
    pub subject_alt_names: Vec<String>,
    /// An operator-supplied CA (PEM). Both empty = generate one in data_dir.
    pub ca_cert_file: Option<PathBuf>,
    pub ca_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsSection {
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub inventory_interval: Duration,
    /// A device counts as online if it was seen within this window.
    #[serde(with = "humantime_serde")]
    pub online_window: Duration,
    #[serde(with = "humantime_serde")]
    pub device_cert_validity: Duration,
    /// HTTP/2 pings on every connection after this long without traffic ...
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// ... and the connection is closed when a ping is not answered within
    /// this: a frozen device is noticed after at most the sum of both.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    pub max_software_packages: usize,
    /// Longest accepted value of any one inventory string, in bytes.
    pub max_string_bytes: usize,
    /// Inventory changes stored per report; the rest become one summary
    /// row.
    pub max_changes_per_report: usize,
    /// Per device: inventory reports per hour.
    pub device_reports_per_hour: u32,
    /// Per device: hellos, heartbeats and stream openings per minute (at
    /// least three per heartbeat interval are always allowed).
    pub device_heartbeats_per_minute: u32,
    /// Per device: certificate renewals per day.
    pub device_renewals_per_day: u32,
    /// Per device: problem reports (`schoolfleet-agent report`) per hour.
    pub device_problem_reports_per_hour: u32,
    /// Failed enrolments and API-token authentications per token id ...
    pub auth_failures_per_token_per_minute: u32,
    /// ... and per peer address (IPv6: per /64).
    pub auth_failures_per_peer_per_minute: u32,
    /// Such failures are audited as one entry per token or peer and window.
    #[serde(with = "humantime_serde")]
    pub auth_failure_audit_window: Duration,
    /// Open connections in total ...
    pub max_connections: usize,
    /// ... and per peer address (IPv6: per /64).
    pub max_connections_per_peer: usize,
    /// The TLS handshake, and then the first request, must each come
    /// within this time, or the connection is closed.
    #[serde(with = "humantime_serde")]
    pub first_request_timeout: Duration,
    /// Inventory reports decoded and stored at the same time; the others
    /// wait with their encoded bytes only. 0: twice the number of cores.
    pub ingest_concurrency: usize,
    /// Encoded bytes of inventory reports that may wait for their turn;
    /// beyond it a report is answered "send again later" (the agent keeps
    /// it), so a school morning cannot fill the server's memory.
    pub ingest_queue_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: String,
    /// tracing filter, e.g. `info` or `schoolfleet_server=debug`.
    pub filter: String,
}

/// Service-desk events (ticket created/assigned/resolved, article
/// published) POSTed as JSON, signed with HMAC-SHA256 over the raw body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSection {
    /// `http://` or `https://` URL; empty = no webhooks (no events queued).
    pub url: String,
    /// Shared secret for `X-Schoolfleet-Signature`. Never logged.
    pub secret: Secret,
    /// Time for one delivery attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// First retry delay; doubles per attempt up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// CA bundle (PEM) trusted for `https://` URLs.
    pub ca_file: PathBuf,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        WebhooksSection {
            url: String::new(),
            secret: Secret::default(),
            timeout: Duration::from_secs(10),
            retry_initial: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
            ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        }
    }
}

/// A configured secret: its `Debug` never shows the value.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<empty>"
        } else {
            "<redacted>"
        })
    }
}

impl std::fmt::Debug for ServerSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSection")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("shutdown_grace", &self.shutdown_grace)
            .field("bootstrap_token_validity", &self.bootstrap_token_validity)
            .finish()
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            let slash = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://{user}:***@{host}{slash}{path}")
        }
        _ => url.to_owned(),
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
            data_dir: PathBuf::from("/var/lib/schoolfleet-server"),
            database_url: String::new(),
            shutdown_grace: Duration::from_secs(10),
            bootstrap_token_validity: Duration::from_secs(24 * 3600),
            advertise_url: String::new(),
        }
    }
}

impl Default for AgentsSection {
    fn default() -> Self {
        AgentsSection {
            heartbeat_interval: Duration::from_secs(60),
            inventory_interval: Duration::from_secs(3600),
            online_window: Duration::from_secs(180),
            device_cert_validity: Duration::from_secs(365 * 24 * 3600),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_message_bytes: schoolfleet_proto::MAX_MESSAGE_BYTES,
            max_software_packages: 20_000,
            max_string_bytes: 1024,
            max_changes_per_report: 1000,
            device_reports_per_hour: 12,
            device_heartbeats_per_minute: 12,
            device_renewals_per_day: 6,
            device_problem_reports_per_hour: 10,
            auth_failures_per_token_per_minute: 10,
            auth_failures_per_peer_per_minute: 30,
            auth_failure_audit_window: Duration::from_secs(60),
            max_connections: 20_000,
            max_connections_per_peer: 2_000,
            first_request_timeout: Duration::from_secs(10),
            ingest_concurrency: 0,
            ingest_queue_bytes: 64 << 20,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: "text".into(),
            filter: "info".into(),
        }
    }
}

/// Settings given as command-line flags; they win over everything else.
#[derive(Clone, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl std::fmt::Debug for FlagOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagOverrides")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .finish()
    }
}

impl Config {
    /// Loads the configuration. `env` is the process environment as pairs,
    /// injected so that tests never mutate the real one.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &FlagOverrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only `SCHOOLFLEET_<SECTION>__<KEY>`: plain `SCHOOLFLEET_SERVER` is
        // the CLI's server URL and must not be read as a section.
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("SCHOOLFLEET_")?;
                key.contains("__")
                    .then(|| (key.to_lowercase().replace("__", "."), v))
            })
            .collect();
        for (key, value) in env {
            figment = figment.merge(Serialized::default(&key, parse_env_value(&value)));
        }
        figment = figment.merge(Serialized::defaults(flags).key("server"));
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        config.validate()?;
        if config.server.database_url.is_empty() {
            config.server.database_url = format!(
                "sqlite://{}",
                config.server.data_dir.join("schoolfleet.db").display()
            );
        }
        Ok(config)
    }
}

impl Config {
    /// Values that parse but make no sense, caught at start rather than as
    /// odd behaviour later (a zero heartbeat would drop every agent).
    fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.agents;
        let second = Duration::from_secs(1);
        let checks = [
            (
                a.heartbeat_interval >= second,
                "agents.heartbeat_interval must be at least 1s",
            ),
            (
                a.inventory_interval >= second,
                "agents.inventory_interval must be at least 1s",
            ),
            (
                a.online_window >= a.heartbeat_interval,
                "agents.online_window must be at least agents.heartbeat_interval",
            ),
            (
                a.device_cert_validity >= Duration::from_secs(86_400),
                "agents.device_cert_validity must be at least 1 day",
            ),
            (
                a.keepalive_interval >= second && a.keepalive_timeout >= second,
                "agents.keepalive_interval and agents.keepalive_timeout must be at least 1s",
            ),
            (
                self.compliance.sweep_interval >= second,
                "compliance.sweep_interval must be at least 1s",
            ),
            (
                self.limits.max_message_bytes >= 64 * 1024,
                "limits.max_message_bytes must be at least 65536",
            ),
            (
                self.limits.max_changes_per_report >= 10,
                "limits.max_changes_per_report must be at least 10",
            ),
            (
                self.limits.device_reports_per_hour >= 1
                    && self.limits.device_heartbeats_per_minute >= 1
                    && self.limits.device_renewals_per_day >= 1
                    && self.limits.device_problem_reports_per_hour >= 1
                    && self.limits.auth_failures_per_token_per_minute >= 1
                    && self.limits.auth_failures_per_peer_per_minute >= 1,
                "limits.device_* and limits.auth_failures_* rates must be at least 1",
            ),
            (
                self.limits.auth_failure_audit_window >= second,
                "limits.auth_failure_audit_window must be at least 1s",
            ),
            (
                self.limits.max_connections >= 1 && self.limits.max_connections_per_peer >= 1,
                "limits.max_connections and limits.max_connections_per_peer must be at least 1",
            ),
            (
                self.limits.first_request_timeout >= second,
                "limits.first_request_timeout must be at least 1s",
            ),
            (
                matches!(self.log.format.as_str(), "text" | "json"),
                "log.format must be \"text\" or \"json\"",
            ),
            (
                matches!(
                    self.sessions.default_consent.as_str(),
                    "none" | "notify" | "prompt"
                ),
                "sessions.default_consent must be \"none\", \"notify\" or \"prompt\"",
            ),
            (
                self.sessions.consent_timeout >= second
                    && self.sessions.consent_timeout <= Duration::from_secs(3600),
                "sessions.consent_timeout must be between 1s and 1h",
            ),
            (
                self.sessions.idle_timeout >= second,
                "sessions.idle_timeout must be at least 1s",
            ),
            (
                self.sessions.max_duration >= second,
                "sessions.max_duration must be at least 1s",
            ),
            (
                self.sessions.attach_timeout >= second,
                "sessions.attach_timeout must be at least 1s",
            ),
            (
                self.sessions.max_file_bytes >= 1,
                "sessions.max_file_bytes must be at least 1",
            ),
            (
                self.sessions.max_recording_bytes >= 4096,
                "sessions.max_recording_bytes must be at least 4096",
            ),
            (
                self.sessions.recording_retention >= second,
                "sessions.recording_retention must be at least 1s",
            ),
            (
                self.sessions.recording_approval_validity >= second
                    && self.sessions.recording_approval_validity <= Duration::from_secs(7 * 86_400),
                "sessions.recording_approval_validity must be between 1s and 7days",
            ),
            (
                self.sessions.max_live_per_user >= 1 && self.sessions.max_live_per_device >= 1,
                "sessions.max_live_per_user and max_live_per_device must be at least 1",
            ),
            (
                self.sessions
                    .require_mfa
                    .iter()
                    .all(|k| ["shell", "exec", "forward", "cp"].contains(&k.as_str())),
                "sessions.require_mfa may name only \"shell\", \"exec\", \"forward\" and \"cp\"",
            ),
            (
                self.sessions
                    .redact_args
                    .iter()
                    .all(|r| regex::Regex::new(r).is_ok()),
                "sessions.redact_args must be valid regular expressions",
            ),
            (
                self.server.bootstrap_token_validity >= second
                    && self.server.bootstrap_token_validity <= Duration::from_secs(30 * 86_400),
                "server.bootstrap_token_validity must be between 1s and 30days",
            ),
            (
                self.retention.all().iter().all(|(_, d)| *d >= second),
                "every [retention] setting must be at least 1s (nothing is kept forever)",
            ),
            (
                self.server.advertise_url.is_empty()
                    || self.server.advertise_url.starts_with("https://"),
                "server.advertise_url must be empty or an https:// URL",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(ConfigError::Invalid((*message).to_owned())),
            None => Ok(()),
        }
    }
}

/// Environment values are typed like TOML values (numbers, booleans,
/// arrays), or taken as strings.
fn parse_env_value(value: &str) -> figment::value::Value {
    value
        .parse::<figment::value::Value>()
        .unwrap_or_else(|_| value.into())
}

/// The default configuration with comments, printed by `default-config`.
pub const DEFAULT_CONFIG_TOML: &str = r#"# schoolfleet-server configuration.
# Precedence: command-line flags, then environment variables
# (SCHOOLFLEET_<SECTION>__<KEY>, e.g. SCHOOLFLEET_SERVER__LISTEN), then this
# file, then the defaults shown here.

[server]
# The one TLS port for agents (mutual TLS) and admins (API tokens).
listen = "0.0.0.0:7443"
# CA, server certificate, the bootstrap admin token and the SQLite file.
data_dir = "/var/lib/schoolfleet-server"
# Empty: embedded SQLite in data_dir. For larger deployments and several
# replicas: "postgres://user@host:5432/schoolfleet".
database_url = ""
# Time that in-flight calls get to finish on SIGTERM/SIGINT.
shutdown_grace = "10s"
# The bootstrap admin's token (written to data_dir on the first start)
# expires after this: create a personal admin with it, then it is useless.
bootstrap_token_validity = "24h"
# Several replicas on one PostgreSQL: the URL the other replicas reach this
# one at, e.g. "https://replica-a.schoolfleet.example:7443" (its host must be
# in [tls] subject_alt_names). A remote session started on any replica is
# then relayed to the replica holding the agent's stream. Empty: off.
advertise_url = ""

[tls]
# Extra DNS names or IP addresses that agents use to reach this server.
# localhost, 127.0.0.1, ::1 and the host name are always included.
subject_alt_names = []
# An operator-supplied CA instead of the one generated in data_dir
# (needed when several replicas share one PostgreSQL).
# ca_cert_file = "/etc/schoolfleet/ca.pem"
# ca_key_file = "/etc/schoolfleet/ca.key"

[agents]
heartbeat_interval = "1m"
inventory_interval = "1h"
# A device counts as online if it was seen within this window.
online_window = "3m"
device_cert_validity = "365days"
# HTTP/2 pings after this long without traffic on a connection, and how long
# an answer may take: a frozen device is noticed within the sum of both, and
# its sessions end with "not responding".
keepalive_interval = "10s"
keepalive_timeout = "10s"

[limits]
# Largest gRPC message accepted, in bytes.
max_message_bytes = 8388608
max_software_packages = 20000
# Longest accepted value of any one inventory string, in bytes.
max_string_bytes = 1024
# Inventory changes stored per report; beyond it one summary row says how
# many more there were.
max_changes_per_report = 1000
# Per device (its certificate), as events per period with bursts up to the
# same number. Beyond them the device is answered RESOURCE_EXHAUSTED with
# the time to wait (reports: an acknowledgement asking to retry later).
device_reports_per_hour = 12
# Hellos, heartbeats and stream openings; at least three per
# agents.heartbeat_interval are always allowed.
device_heartbeats_per_minute = 12
device_renewals_per_day = 6
device_problem_reports_per_hour = 10
# Failed enrolments and failed API-token authentications, per token id and
# per peer address (IPv6: per /64); beyond them RESOURCE_EXHAUSTED, before
# any work. They are logged (never the secret) and audited in aggregate:
# one entry per token or peer and window, with the count.
auth_failures_per_token_per_minute = 10
auth_failures_per_peer_per_minute = 30
auth_failure_audit_window = "1m"
# Open connections in total and per peer address (IPv6: per /64); one more
# is closed at once. A school behind one NAT address counts as one peer:
# raise max_connections_per_peer above its number of PCs if needed. The
# server raises its soft descriptor limit to the hard one at start (the
# systemd unit sets LimitNOFILE=65536).
max_connections = 20000
max_connections_per_peer = 2000
# The TLS handshake, and then the first request, must each come within
# this time, or the connection is closed.
first_request_timeout = "10s"
# Inventory reports decoded and stored at the same time; the others wait
# with their encoded bytes only. 0: twice the number of cores.
ingest_concurrency = 0
# Encoded bytes of inventory reports that may wait for their turn (64 MiB);
# beyond it a report is answered "send again in N s", spread over the time
# the backlog needs (within a minute unless more than 200 offers a second
# would come back), and the agent keeps it in its spool.
ingest_queue_bytes = 67108864

[compliance]
# How often expired waivers are looked for; the daily snapshot for the
# trend is taken at the first sweep of each day (UTC).
sweep_interval = "10m"

[log]
# "text" or "json".
format = "text"
filter = "info"

[webhooks]
# Service-desk events (ticket.created, ticket.assigned, ticket.resolved,
# kb.article_published) are POSTed here as JSON. Empty: off.
url = ""
# HMAC-SHA256 key (required when url is set): X-Schoolfleet-Signature: sha256=<hex of the raw body's
# HMAC>, X-Schoolfleet-Timestamp: Unix seconds. Better set by environment
# (SCHOOLFLEET_WEBHOOKS__SECRET) than in this file.
secret = ""
timeout = "10s"
# Retries back off from retry_initial, doubling, up to retry_max; events
# wait in the database until delivered.
retry_initial = "2s"
retry_max = "10m"
# CA bundle (PEM) trusted for https:// URLs.
ca_file = "/etc/ssl/certs/ca-certificates.crt"

[sessions]
# Remote sessions (shell, exec, forward, cp). Consent where no policy of the
# school or device class applies: "none", "notify" or "prompt".
default_consent = "prompt"
# How long the local user has to answer a prompt.
consent_timeout = "60s"
# A session ends after this long without data in either direction ...
idle_timeout = "15m"
# ... and after this long in any case.
max_duration = "4h"
# How long the agent has to dial a new channel back.
attach_timeout = "15s"
# Largest file a copy session may move (1 GiB).
max_file_bytes = 1073741824
# Largest recording of one shell session (64 MiB); the rest is cut.
max_recording_bytes = 67108864
# Recordings are deleted this long after their session ended.
recording_retention = "90days"
# Four-eyes rule: playing a recording needs a second person's approval
# (`schoolfleet sessions approve-playback SESSION --for USER --reason ...` by
# another user who may read recordings there), valid this long for that user.
recording_four_eyes = false
recording_approval_validity = "1h"
# Pending and active sessions one user may hold at once (fan-out exec runs
# one per device, --concurrency at a time), and one device may have.
max_live_per_user = 64
max_live_per_device = 4
# Capabilities whose start needs a second factor (TOTP; users enrol with
# `schoolfleet mfa enroll`). [] turns the step-up off.
require_mfa = ["shell", "exec", "forward", "cp"]
# After a code, more starts of the same kind with the same reason need no new
# code for this long (fan-out exec over a school). "0s": a code every time.
mfa_grace = "5m"
# Keys that seal TOTP secrets and shell recordings (XChaCha20-Poly1305), one
# `<id> <hex>` per line, 0600, outside the database; the last line seals new
# data, earlier lines still open old data (rotation: append a line). Default:
# data.keys in data_dir, created on first start. Replicas need the same file;
# a backup of the database is unreadable without it, so back it up apart.
# data_key_file = "/etc/schoolfleet/data.keys"
# Programs whose arguments are secrets: every argument of theirs is stored
# and shown as ***, also an argument that names them (sh -c '... | chpasswd').
redact_commands = ["chpasswd", "passwd", "htpasswd", "smbpasswd", "chntpw"]
# Regular expressions for arguments that carry a secret (--password=...,
# user:secret@host); what the group `keep` matched stays, the rest is ***.
# Applied to the session row, the audit entry and the logs; the device still
# gets the real command line. Better still: send secrets on stdin.
redact_args = [
  '(?i)^(?P<keep>--?[a-z0-9_-]*(password|passwd|passphrase|pass|pwd|secret|token|apikey|api-key)[a-z0-9_-]*[=:]).+$',
  '(?i)^(?P<keep>[a-z0-9._-]+:)[^/\s]+@',
]

[sessions.forward_allow]
# Forward targets besides the device itself (127.0.0.0/8, ::1, localhost,
# always allowed): per school, per school and class, or "*" for all schools;
# "host:port" or "host:*". Everything else is refused and audited.
# "*" = ["drucker-zentral.kreis.local:631"]
# kus012 = ["192.168.10.20:*"]
# "kus012/verwaltungs-pc" = ["kasse.schule.local:443"]

[audit]
# Audit entries older than this are deleted; the hash chain stays
# verifiable from the first kept entry. "0s" keeps them forever. Each prune
# is a chained entry that `audit verify` checks against this setting.
retention = "730days"
# Key of the HMAC over the chain's head, kept outside the database (0600),
# so that rewriting the database alone cannot hide a change. Default:
# audit-head.key in data_dir, created on first start. Replicas that share
# one database need the same file.
# head_key_file = "/etc/schoolfleet/audit-head.key"

[retention]
# How long personal data is kept; the sweeper deletes older rows hourly and
# then compacts the database (SQLite: secure_delete, incremental vacuum,
# WAL truncated). Nothing may be kept forever (at least "1s" each).
# Recordings: [sessions] recording_retention; audit: [audit] retention.
# docs/datenschutz.md lists these for the data-protection officer.
#
# Session rows (who, which device, reason, ticket, command line, bytes)
# after the session ended; their recording goes with them at the latest.
sessions = "180days"
# Device history: software, hardware and OS changes, identity events.
inventory_history = "365days"
# Network address history is kept only for these device classes (opt-in,
# e.g. ["verwaltungs-pc"]); all others keep their current addresses only.
network_history_classes = []
# ... and for that long.
network_history = "30days"
# The report log: when each inventory report came and why.
report_log = "90days"
# Tickets with comments and timeline, counted from their resolution.
tickets = "730days"
# Compliance results under a superseded standard revision (the current
# revision's results stay while the device exists).
compliance_results = "365days"
# Compliance changes of devices (a rule's result changed).
compliance_history = "365days"
# Daily compliance figures per school (the trend).
compliance_snapshots = "730days"
# Webhook events, delivered or not (undelivered ones are given up).
webhook_outbox = "30days"
# Enrolment and API tokens, counted from their expiry or revocation.
enrollment_tokens = "90days"
api_tokens = "365days"

[portal]
# The web portal: German pages for coordinators, school leaders, teachers
# and technicians, on its own HTTPS port. Off unless listen is set.
# listen = "0.0.0.0:8443"
# The county's certificate chain and key (PEM). Both unset: a certificate
# issued by the server's own CA (fine for the demo, not for browsers at
# schools, which do not trust that CA).
# cert_file = "/etc/schoolfleet/portal.crt"
# key_file = "/etc/schoolfleet/portal.key"
# A web session unused this long ends ...
idle_timeout = "30m"
# ... and every session ends this long after its login.
max_session = "12h"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn default_config_text_matches_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn precedence_is_flags_then_env_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:1000\"\ndata_dir = \"/from/file\"\n\
             [agents]\nheartbeat_interval = \"5s\"\n",
        )
        .unwrap();
        let env = vec![
            (
                "SCHOOLFLEET_SERVER__DATA_DIR".to_string(),
                "/from/env".to_string(),
            ),
            (
                "SCHOOLFLEET_SERVER__LISTEN".to_string(),
                "127.0.0.1:2000".to_string(),
            ),
            // The CLI's variable must not disturb the server.
            ("SCHOOLFLEET_SERVER".to_string(), "https://x:1".to_string()),
        ];
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:3000".parse().unwrap()),
            ..Default::default()
        };
        let config = Config::load(Some(&file), env, &flags).unwrap();
        assert_eq!(config.server.listen.port(), 3000);
        assert_eq!(config.server.data_dir, PathBuf::from("/from/env"));
        assert_eq!(config.agents.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(
            config.server.database_url,
            "sqlite:///from/env/schoolfleet.db"
        );
    }

    #[test]
    fn webhook_secret_is_never_in_debug_output() {
        let env = vec![(
            "SCHOOLFLEET_WEBHOOKS__SECRET".to_string(),
            "hunter2-very-secret".to_string(),
        )];
        let config = Config::load(None, env, &FlagOverrides::default()).unwrap();
        assert_eq!(config.webhooks.secret.0, "hunter2-very-secret");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn debug_never_shows_a_database_password() {
        let mut config = Config::default();
        config.server.database_url = "postgres://sf:geheim@db.kreis.example/schoolfleet".into();
        let text = format!("{config:?}");
        assert!(!text.contains("geheim"), "{text}");
        assert!(
            text.contains("postgres://sf:***@db.kreis.example/schoolfleet"),
            "{text}"
        );
        assert_eq!(
            redact_url("sqlite:///var/lib/x.db"),
            "sqlite:///var/lib/x.db"
        );
    }

    #[test]
    fn session_settings_come_from_the_environment() {
        let env = vec![
            (
                "SCHOOLFLEET_SESSIONS__CONSENT_TIMEOUT".to_string(),
                "2s".to_string(),
            ),
            (
                "SCHOOLFLEET_SESSIONS__DEFAULT_CONSENT".to_string(),
                "none".to_string(),
            ),
            ("SCHOOLFLEET_AUDIT__RETENTION".to_string(), "0s".to_string()),
        ];
        let config = Config::load(None, env, &FlagOverrides::default()).unwrap();
        assert_eq!(config.sessions.consent_timeout, Duration::from_secs(2));
        assert_eq!(config.sessions.default_consent, "none");
        assert_eq!(config.audit.retention, Duration::ZERO);
        let env = vec![(
            "SCHOOLFLEET_SESSIONS__DEFAULT_CONSENT".to_string(),
            "ask".to_string(),
        )];
        let err = Config::load(None, env, &FlagOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("default_consent"), "{err}");
    }

    #[test]
    fn nonsense_values_are_refused_at_start() {
        let env = vec![("SCHOOLFLEET_AGENTS__HEARTBEAT_INTERVAL".into(), "0s".into())];
        let err = Config::load(None, env, &FlagOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("heartbeat_interval"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[server]\nlisen = \"x\"\n").unwrap();
        let err = Config::load(Some(&file), no_env(), &FlagOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");

        let env = vec![(
            "SCHOOLFLEET_AGENTS__HEARTBEAT_INTERVAL".into(),
            "soon".into(),
        )];
        let err = Config::load(None, env, &FlagOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("heartbeat_interval"), "{err}");
    }
}
