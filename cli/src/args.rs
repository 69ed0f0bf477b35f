//! The command-line syntax: every command, flag and help text. Parsing and
//! validation of single values only; the work happens in `commands/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use schoolfleet_proto::scope::{Scope, is_valid_tenant_id};

use crate::output::OutputFormat;
use crate::profile::Secret;

const ABOUT: &str = "Inventory and remote support for the school IT of Donnersbergkreis, \
Landkreis Kusel and Landkreis Kaiserslautern";

const AFTER_HELP: &str = "\
Getting started:
  schoolfleet login --server https://fleet.example.org:7443 --ca-pin sha256:HEX --token sft_...
  schoolfleet devices --school kus012 --offline
  schoolfleet device show kus012-pc07

Connection settings are taken from the flags, then the environment
(SCHOOLFLEET_SERVER, SCHOOLFLEET_CA_PIN, SCHOOLFLEET_TOKEN, SCHOOLFLEET_CONFIG_DIR),
then the profile saved by `schoolfleet login`
($SCHOOLFLEET_CONFIG_DIR, $XDG_CONFIG_HOME/schoolfleet or ~/.config/schoolfleet).

Ids are short and lowercase: counties `don`, `kus`, `kl`; schools `kus012`;
device classes `schueler-pc`. Scopes are `cooperation`, `county:<id>` or `school:<id>`.";

const LOGIN_HELP: &str = "\
Example:
  schoolfleet login --server https://fleet.example.org:7443 --ca-pin sha256:3f5a... --token sft_...

A flag you leave out is taken from the environment or the existing profile,
so `schoolfleet login --token sft_NEW` replaces only the token.";

const ENROLL_TOKEN_CREATE_HELP: &str = "\
Example, for a computer room with 30 PCs:
  schoolfleet enroll-token create --school kus012 --class schueler-pc --expires 7d --uses 30

Then run the printed `schoolfleet-agent enroll ...` command on each PC.

A PC that is still enrolled proves itself with its key when enrolled again and
keeps its device id. After an OS reinstall it has no key any more: make a
token for that one device, so it keeps its id and history:
  schoolfleet enroll-token create --reinstall kus012-pc07 --expires 1d
Otherwise it enrols as a new device; when it looks like an existing one, the
agent prints the `schoolfleet device adopt NEW OLD` that merges them.";

const TOKEN_CREATE_HELP: &str = "\
Example:
  schoolfleet token create --user m.mueller --expires 90d --description \"Laptop MZ\"";

#[derive(Debug, Parser)]
#[command(name = "schoolfleet", version, about = ABOUT, after_help = AFTER_HELP)]
#[command(max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every command.
#[derive(Debug, Default, Args)]
pub struct GlobalArgs {
    /// Server URL, e.g. https://fleet.example.org:7443 [env: SCHOOLFLEET_SERVER]
    #[arg(long, global = true, value_name = "URL", help_heading = "Connection")]
    pub server: Option<String>,

    /// SHA-256 fingerprint of the server's CA, as the server admin hands it out
    /// (sha256:HEX) [env: SCHOOLFLEET_CA_PIN]
    #[arg(long, global = true, value_name = "PIN", help_heading = "Connection")]
    pub ca_pin: Option<String>,

    /// API token (sft_...). Prefer the saved profile or SCHOOLFLEET_TOKEN: other
    /// users on the machine can see command-line flags [env: SCHOOLFLEET_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN", help_heading = "Connection")]
    pub token: Option<Secret>,

    /// Directory that holds profile.toml [env: SCHOOLFLEET_CONFIG_DIR]
    /// [default: $XDG_CONFIG_HOME/schoolfleet or ~/.config/schoolfleet]
    #[arg(long, global = true, value_name = "DIR", help_heading = "Connection")]
    pub config_dir: Option<PathBuf>,

    /// Output format: table (aligned columns), json (array of objects with
    /// snake_case keys) or csv (RFC 4180, UTF-8, header row)
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        default_value_t = OutputFormat::Table,
        help_heading = "Output"
    )]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check server, CA pin and token (by asking the server who you are), then
    /// save them as your profile (mode 0600)
    #[command(after_help = LOGIN_HELP)]
    Login,

    /// Delete the saved profile. The token itself stays valid until it expires
    /// or someone runs `schoolfleet token revoke`
    Logout,

    /// Show the user and roles the current token belongs to
    Whoami,

    /// Counties (Landkreise) of the cooperation: don, kus, kl
    #[command(subcommand)]
    County(CountyCommand),

    /// Schools, each in one county
    #[command(subcommand)]
    School(SchoolCommand),

    /// Device classes, e.g. schueler-pc, lehrer-notebook
    #[command(subcommand)]
    Class(ClassCommand),

    /// Enrolment tokens that let new devices join a school
    #[command(subcommand)]
    EnrollToken(EnrollTokenCommand),

    /// Admin, technician, coordinator and viewer accounts
    #[command(subcommand)]
    User(UserCommand),

    /// API tokens for this CLI
    #[command(subcommand)]
    Token(TokenCommand),

    /// List devices, filtered by place, class and when they were last seen
    Devices(DevicesArgs),

    /// One device: full inventory, history, retire, revoke, refresh
    #[command(subcommand)]
    Device(DeviceCommand),

    /// Find installed software across devices
    #[command(subcommand)]
    Software(SoftwareCommand),

    /// Service-desk tickets: open, list, show the timeline, comment, assign
    #[command(subcommand)]
    Ticket(TicketCommand),

    /// The shared knowledge base: articles, versions, templates, changes
    #[command(subcommand)]
    Kb(KbCommand),

    /// The common IT standard: lint, apply, show and compare versions
    #[command(subcommand)]
    Standard(StandardCommand),

    /// Compliance of devices with the IT standard
    #[command(subcommand)]
    Compliance(ComplianceCommand),

    /// Interactive shell on a device (through its agent; consent and audit apply)
    #[command(after_help = SHELL_HELP)]
    Shell(ShellArgs),

    /// Run a command on one device, or on every device of a school (fan-out)
    #[command(after_help = EXEC_HELP)]
    Exec(ExecArgs),

    /// Forward a local TCP port through a device to a host in its network
    #[command(after_help = FORWARD_HELP)]
    Forward(ForwardArgs),

    /// Copy a file to or from a device (resumable, checked with SHA-256)
    #[command(after_help = CP_HELP)]
    Cp(CpArgs),

    /// Remote sessions: list, show, end, replay recordings
    #[command(subcommand)]
    Sessions(SessionsCommand),

    /// The tamper-evident audit log
    #[command(subcommand)]
    Audit(AuditCommand),

    /// Consent policy for remote sessions, per school and device class
    #[command(subcommand)]
    Consent(ConsentCommand),

    /// Your second factor (TOTP) for remote sessions
    #[command(subcommand)]
    Mfa(MfaCommand),
}

#[derive(Debug, Subcommand)]
pub enum MfaCommand {
    /// Make a new TOTP secret: shows the otpauth URI and a QR code for the
    /// authenticator app, then asks for the first code to activate it
    #[command(after_help = "Examples:\n  schoolfleet mfa enroll\n  \
        schoolfleet mfa enroll -o json   # scripts: then `schoolfleet mfa confirm CODE`")]
    Enroll {
        /// Replacing an active second factor: a current code from it
        #[arg(long, env = "SCHOOLFLEET_OTP", hide_env_values = true)]
        otp: Option<String>,
    },
    /// Activate the secret from `mfa enroll` with its first code
    Confirm { code: String },
}

const SHELL_HELP: &str = "\
Example:
  schoolfleet shell kus012-pc07 --reason \"Drucker hängt\" --ticket SUP-1042

The session needs a reason; depending on the school's consent policy the user
at the device is asked first. Your terminal is put back as it was on every exit.
Exit status: the remote shell's, or 255 when the session failed.

Idle timeout: the server ends a session after 15 minutes without data in
either direction (its `sessions.idle_timeout`). A command that runs silently
counts as idle too: let long jobs print progress, or ask for a longer timeout.";

const EXEC_HELP: &str = "\
Examples:
  schoolfleet exec kus012-pc07 --reason \"Updates prüfen\" -- apt list --upgradable
  echo 'id' | schoolfleet exec kus012-pc07 --reason Test -- sh
  schoolfleet exec --school kus012 --class schueler-pc --reason \"Neustart\" -- systemctl reboot
  schoolfleet exec kus012-pc07 --reason \"Zugang\" --env-file zugang.env -- sh -c 'echo \"max:$PW\" | chpasswd'

The command runs without a shell (use `sh -c '…'` for one). On one device,
stdin is passed on when it is not a terminal, and the exit status is the
command's (127 when the device has no such program, 255 when the session
failed). With --school, every active device runs it; each line is prefixed
`HOST | ` (stderr `HOST ! `), and a summary follows on stderr (with -o json:
a JSON array on stdout instead). The exit status is 0 when every device
succeeded, else 1.

Secrets: the command line is stored (with known secret arguments masked),
audited and shown to the person at the device. Put passwords into an env
file (`--env-file`, `NAME=value` per line) or send them on stdin instead:
the variables reach the command only; the server keeps their names, never
their values.

Idle timeout: the server ends a session after 15 minutes without data in
either direction (its `sessions.idle_timeout`). A command that runs silently
counts as idle too: let long jobs print progress, or ask for a longer timeout.";

const FORWARD_HELP: &str = "\
Examples:
  schoolfleet forward kus012-pc07 5901:127.0.0.1:5900 --reason \"VNC Hilfe\"
  schoolfleet forward kus012-pc07 8080:drucker-r101.schule.local:80 --reason \"Druckerseite\"
  schoolfleet forward kus012-pc07 0:127.0.0.1:3389 --reason RDP    (any free local port)

Without LOCALPORT, the local port is the remote PORT. The listener is on
127.0.0.1 only unless --bind says otherwise (another address opens the port
to the network, with a warning). Ctrl-C ends the session. A forward without
traffic for 15 minutes ends (the server's `sessions.idle_timeout`).";

const CP_HELP: &str = "\
Examples:
  schoolfleet cp ./setup.sh kus012-pc07:/tmp/setup.sh --reason \"Skript verteilen\"
  schoolfleet cp kus012-pc07:/var/tmp/report.txt ./ --reason \"Logs holen\"

Exactly one side is DEVICE:/absolute/path. The device only allows paths in its
transfer roots (by default /tmp and /var/tmp). Downloads go to DST.sfpart
first and are renamed once size and SHA-256 match; an interrupted copy
resumes where it stopped (also on the next run).";

/// Why a session is opened: stored, audited, and shown to the device's user.
#[derive(Debug, Clone, Args)]
pub struct PurposeArgs {
    /// Why you need the session; shown to the user at the device and audited
    #[arg(long, value_parser = reason_text)]
    pub reason: String,
    /// Service-desk ticket the session belongs to, e.g. SUP-1042
    #[arg(long)]
    pub ticket: Option<String>,
    /// The current code of your authenticator app, where the server wants a
    /// second factor; asked for on the terminal when missing (fan-out exec:
    /// give it here, one code covers the run within the server's grace)
    #[arg(long, env = "SCHOOLFLEET_OTP", hide_env_values = true)]
    pub otp: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Device id or host name
    pub device: String,
    #[command(flatten)]
    pub purpose: PurposeArgs,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Device id or host name (or --school for many devices)
    #[arg(required_unless_present = "school", conflicts_with = "school")]
    pub device: Option<String>,
    /// Run on every active device of this school
    #[arg(long, value_parser = tenant_id, help_heading = "Fan-out")]
    pub school: Option<String>,
    /// Only devices of this class (with --school)
    #[arg(long, value_parser = tenant_id, requires = "school", help_heading = "Fan-out")]
    pub class: Option<String>,
    /// Devices at a time (with --school)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=256),
        help_heading = "Fan-out")]
    pub concurrency: u32,
    /// Time per device, including the wait for consent (with --school)
    #[arg(long, value_parser = positive_duration, default_value = "60s", value_name = "DURATION",
        help_heading = "Fan-out")]
    pub timeout: Duration,
    #[command(flatten)]
    pub purpose: PurposeArgs,
    /// Environment variables for the command, `NAME=value` per line (`#`
    /// comments): the way to pass secrets, which argv is not. Only the
    /// names are stored and audited
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<std::path::PathBuf>,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Device id or host name
    pub device: String,
    /// HOST and PORT as seen from the device; LOCALPORT 0 takes any free port
    #[arg(value_parser = forward_target, value_name = "[LOCALPORT:]HOST:PORT")]
    pub target: ForwardTarget,
    /// Local address to listen on
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: std::net::IpAddr,
    #[command(flatten)]
    pub purpose: PurposeArgs,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: a local file or DEVICE:/path
    #[arg(value_parser = copy_location)]
    pub src: CopyLocation,
    /// Destination: a local file or directory, or DEVICE:/path
    #[arg(value_parser = copy_location)]
    pub dst: CopyLocation,
    /// Why you need the copy; shown to the user at the device and audited
    #[arg(long, value_parser = reason_text, default_value = "file copy")]
    pub reason: String,
    /// Service-desk ticket, e.g. SUP-1042
    #[arg(long)]
    pub ticket: Option<String>,
    /// The current code of your authenticator app, where the server wants one
    #[arg(long, env = "SCHOOLFLEET_OTP", hide_env_values = true)]
    pub otp: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Live and past sessions, newest first
    #[command(after_help = "Examples:\n  schoolfleet sessions list --live\n  \
        schoolfleet sessions list --device kus012-pc07 -o json")]
    List {
        /// Device id or host name
        #[arg(long)]
        device: Option<String>,
        /// Only sessions that are waiting for consent or running
        #[arg(long)]
        live: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One session: who, why, what, how it ended, bytes moved
    Show { id: String },
    /// End a live session; its processes on the device are stopped
    End {
        id: String,
        /// Why, for the audit log
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Replay the recording of a shell session, or save it as an asciicast file
    #[command(
        after_help = "Examples:\n  schoolfleet sessions play 0193… --speed 2 --idle-limit 1s\n  \
        schoolfleet sessions play 0193… --cast sitzung.cast && asciinema play sitzung.cast"
    )]
    Play {
        id: String,
        /// Why you read the recording; required and audited
        #[arg(long, value_parser = reason_text)]
        reason: String,
        /// Playback speed factor, e.g. 2 for twice as fast
        #[arg(long, default_value_t = 1.0, value_parser = speed_factor)]
        speed: f64,
        /// Shorten pauses longer than this, e.g. 2s
        #[arg(long, value_parser = positive_duration, value_name = "DURATION")]
        idle_limit: Option<Duration>,
        /// Write the .cast file here (`-` for stdout) instead of playing it
        #[arg(long, value_name = "FILE|-")]
        cast: Option<PathBuf>,
    },
    /// Approve another user's playback of a recording (four-eyes rule)
    #[command(
        after_help = "Needed when the server has `[sessions] recording_four_eyes = true`: \
        the approval lets USER run `sessions play SESSION` for `recording_approval_validity` \
        (1h by default). You need the right to read recordings of the session's school \
        yourself, and cannot approve your own playback. Audited.\n\n\
        Example:\n  schoolfleet sessions approve-playback 0193… --for m.mueller \
        --reason \"Beschwerde der Schule, Az. 12/2026\""
    )]
    ApprovePlayback {
        id: String,
        /// The user who may then play it (name or id)
        #[arg(long = "for", value_name = "USER")]
        user: String,
        /// Why the playback is approved; required and audited
        #[arg(long, value_parser = reason_text)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Audit entries, newest first
    #[command(
        after_help = "Examples:\n  schoolfleet audit list --action session. --since 7d\n  \
        schoolfleet audit list --target kus012-pc07 --since 2026-11-01 -o csv"
    )]
    List {
        /// Only actions starting with this, e.g. `session.` or `session.denied`
        #[arg(long, value_name = "PREFIX")]
        action: Option<String>,
        /// Only entries about this target (device id, session id, user, …)
        #[arg(long)]
        target: Option<String>,
        /// From this day (2026-11-01), time (RFC 3339) or this long ago (7d)
        #[arg(long, value_parser = since_time, value_name = "DATE")]
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 200)]
        limit: u32,
    },
    /// Recompute the hash chain; exit status 1 when an entry was changed or removed
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Set whether the device's user is asked (prompt), told (notify) or not involved (none)
    #[command(
        after_help = "Examples:\n  schoolfleet consent set --school kus012 --mode prompt\n  \
        schoolfleet consent set --school kus012 --class verwaltungs-pc --mode notify"
    )]
    Set {
        #[arg(long, value_parser = tenant_id)]
        school: String,
        /// Only this device class; without it, every class without its own policy
        #[arg(long, value_parser = tenant_id)]
        class: Option<String>,
        #[arg(long, value_enum)]
        mode: ConsentMode,
    },
    /// The policies you can see, and the server's default
    List {
        #[arg(long, value_parser = tenant_id)]
        school: Option<String>,
    },
}

/// Consent at the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsentMode {
    None,
    Notify,
    Prompt,
}

impl ConsentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentMode::None => "none",
            ConsentMode::Notify => "notify",
            ConsentMode::Prompt => "prompt",
        }
    }
}

/// `forward`'s `[LOCALPORT:]HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    /// 0: any free port.
    pub local_port: u16,
    pub host: String,
    pub port: u16,
}

/// Parses `[LOCALPORT:]HOST:PORT`; an IPv6 HOST goes in brackets
/// (`8080:[fd00::20]:80`). Without LOCALPORT the local port is PORT.
pub fn forward_target(text: &str) -> Result<ForwardTarget, String> {
    let usage =
        || format!("expected [LOCALPORT:]HOST:PORT, e.g. 5901:127.0.0.1:5900, got {text:?}");
    let (rest, port) = text.rsplit_once(':').ok_or_else(usage)?;
    let port = parse_port(port, "PORT")?;
    if port == 0 {
        return Err("PORT must be 1-65535".into());
    }
    let (local, host) = if let Some(inner) = rest.strip_suffix(']') {
        let open = inner.rfind('[').ok_or_else(usage)?;
        let local = match &inner[..open] {
            "" => None,
            prefix => Some(prefix.strip_suffix(':').ok_or_else(usage)?),
        };
        let host = &inner[open + 1..];
        // Brackets are for IPv6 addresses only, as in URLs.
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address [{host}]"));
        }
        (local, host)
    } else {
        match rest.split_once(':') {
            Some((local, host)) => (Some(local), host),
            None => (None, rest),
        }
    };
    if host.is_empty() || host.contains([':', '[', ']']) && !rest.ends_with(']') {
        return Err(usage());
    }
    if host.len() > 255 || host.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("invalid HOST {host:?}"));
    }
    let local_port = match local {
        Some(local) => parse_port(local, "LOCALPORT")?,
        None => port,
    };
    Ok(ForwardTarget {
        local_port,
        host: host.to_owned(),
        port,
    })
}

fn parse_port(text: &str, what: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("{what} must be a number 0-65535, got {text:?}"))
}

/// One side of `cp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyLocation {
    Local(PathBuf),
    Remote { device: String, path: String },
}

/// `DEVICE:/abs/path` (or `DEVICE:C:\path` for a Windows device) is
/// remote; anything else is a local path. Like scp, a colon before the
/// first slash makes it remote, so `./a:b` stays local, and a local Windows
/// path with a drive letter (`C:\Users\…`, and `C:/…` on Windows) stays
/// local too.
pub fn copy_location(text: &str) -> Result<CopyLocation, String> {
    if is_local_drive_path(text) {
        return Ok(CopyLocation::Local(PathBuf::from(text)));
    }
    match text.split_once(':') {
        Some((device, path))
            if !device.is_empty() && !device.contains('/') && !device.contains('\\') =>
        {
            if !path.starts_with('/') && !is_drive_path(path) {
                return Err(format!(
                    "the path on {device} must be absolute, e.g. {device}:/tmp/datei.txt or {device}:C:\\Temp\\datei.txt"
                ));
            }
            if path.len() > 4096 || path.contains('\0') {
                return Err("the remote path is too long or contains NUL".into());
            }
            Ok(CopyLocation::Remote {
                device: device.to_owned(),
                path: path.to_owned(),
            })
        }
        _ if text.is_empty() => Err("empty path".into()),
        _ => Ok(CopyLocation::Local(PathBuf::from(text))),
    }
}

/// `C:\…` or `C:/…`: an absolute Windows path with a drive letter.
pub fn is_drive_path(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes[2], b'\\' | b'/')
}

/// A local path with a drive letter. `C:\…` is never a remote location
/// (remote paths start with `/` or a drive); `C:/…` is local on Windows
/// only, where it is an ordinary path, and stays `DEVICE:/path` elsewhere.
fn is_local_drive_path(text: &str) -> bool {
    is_drive_path(text) && (cfg!(windows) || text.as_bytes()[2] == b'\\')
}

/// A session reason: required, at most 500 bytes, no control characters
/// (the server checks the same; this only says it earlier).
pub fn reason_text(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the reason must not be empty".into());
    }
    if text.len() > 500 {
        return Err("the reason is longer than 500 bytes".into());
    }
    if text.chars().any(schoolfleet_proto::text::is_dangerous_char) {
        return Err("the reason must not contain control characters".into());
    }
    Ok(text.to_owned())
}

/// `--speed`: a positive factor.
pub fn speed_factor(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 => Ok(speed),
        _ => Err(format!(
            "invalid speed {text:?}: use a positive number, e.g. 2"
        )),
    }
}

/// `--since`: a day, an RFC 3339 time, or a duration back from now.
pub fn since_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago = chrono::Duration::from_std(ago).map_err(|e| e.to_string())?;
        return Ok(chrono::Utc::now() - ago);
    }
    Err(format!(
        "invalid time {text:?}: use a day (2026-11-01), an RFC 3339 time or a duration (7d)"
    ))
}

/// `--remote`: the capabilities a role binding keeps.
pub fn remote_capabilities(text: &str) -> Result<String, String> {
    const KNOWN: [&str; 4] = ["shell", "exec", "forward", "cp"];
    let text = text.trim();
    if text == "none" {
        return Ok(text.to_owned());
    }
    let mut kept = Vec::new();
    for name in text.split(',').map(str::trim) {
        if !KNOWN.contains(&name) {
            return Err(format!(
                "unknown capability {name:?}: use a comma list of shell, exec, forward, cp, or none"
            ));
        }
        if !kept.contains(&name) {
            kept.push(name);
        }
    }
    Ok(kept.join(","))
}

#[derive(Debug, Subcommand)]
pub enum StandardCommand {
    /// Check a standard file; every problem is shown with its line number.
    /// Works offline; with a profile, also checks counties, schools and
    /// device classes against the server.
    Lint {
        /// The TOML file, e.g. schul-it-client.toml
        file: PathBuf,
        /// Only the offline checks, even when logged in
        #[arg(long)]
        offline: bool,
    },
    /// Store a new version and re-evaluate every device against it
    Apply { file: PathBuf },
    /// Print a version of the standard (the current one by default)
    Show {
        /// Revision number, as shown by `standard versions`
        #[arg(long, default_value_t = 0)]
        revision: u64,
    },
    /// List the applied versions
    Versions,
    /// Show what changed between two revisions (a line diff of the files)
    Diff { from: u64, to: u64 },
}

#[derive(Debug, Subcommand)]
pub enum ComplianceCommand {
    /// Share of compliant devices per county and school, pass rate per
    /// rule, waivers expiring within 30 days, and the trend against last week
    Summary {
        #[arg(long, value_parser = tenant_id)]
        county: Option<String>,
        #[arg(long, value_parser = tenant_id)]
        school: Option<String>,
        /// An earlier revision, to reproduce a past report
        #[arg(long, default_value_t = 0)]
        revision: u64,
    },
    /// Every rule with its result and the reason, for one device
    Device {
        /// Device id or host name
        device: String,
        #[arg(long, default_value_t = 0)]
        revision: u64,
    },
    /// The devices that fail a rule, with their actual values
    Failing {
        /// Rule id, e.g. OS-02
        #[arg(long)]
        rule: String,
        #[arg(long, value_parser = tenant_id)]
        county: Option<String>,
        #[arg(long, value_parser = tenant_id)]
        school: Option<String>,
        #[arg(long, default_value_t = 0)]
        revision: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Open a ticket; its county and school follow from the devices
    #[command(
        after_help = "Examples:\n  schoolfleet ticket new \"Beamer zeigt kein Bild\" --device kus012-pc07\n  \
        schoolfleet ticket new \"WLAN im Altbau\" --school kus012 --priority high"
    )]
    New {
        /// Short title
        title: String,
        /// Longer description
        #[arg(long, short = 'd', default_value = "")]
        description: String,
        /// Device id or host name (repeat for several; all in one county)
        #[arg(long = "device", value_name = "DEVICE")]
        devices: Vec<String>,
        /// County, when no device is given
        #[arg(long, value_parser = tenant_id)]
        county: Option<String>,
        /// School, when no device is given
        #[arg(long, value_parser = tenant_id)]
        school: Option<String>,
        /// low, normal, high or urgent
        #[arg(long, default_value = "normal")]
        priority: String,
        /// e.g. hardware, netzwerk, software
        #[arg(long, value_parser = tenant_id)]
        category: Option<String>,
    },
    /// List tickets, newest first
    List {
        /// new, open, waiting, resolved or closed (repeat for several)
        #[arg(long = "status", value_name = "STATUS")]
        statuses: Vec<String>,
        #[arg(long, value_parser = tenant_id)]
        county: Option<String>,
        #[arg(long, value_parser = tenant_id)]
        school: Option<String>,
        /// Device id or host name
        #[arg(long)]
        device: Option<String>,
        /// User name of the assignee
        #[arg(long, conflicts_with = "mine")]
        assignee: Option<String>,
        /// Only tickets assigned to me
        #[arg(long)]
        mine: bool,
        #[arg(long, default_value_t = 500)]
        limit: u32,
    },
    /// A ticket with its timeline (comments, changes, device inventory)
    Show {
        /// e.g. SUP-1042
        ticket: String,
    },
    /// Add a comment
    Comment { ticket: String, text: String },
    /// Assign to a user who can work on the ticket's county
    Assign {
        ticket: String,
        /// User name; leave out with --none to unassign
        #[arg(required_unless_present = "none")]
        user: Option<String>,
        #[arg(long, conflicts_with = "user")]
        none: bool,
    },
    /// Change the status: new, open, waiting, resolved, closed
    Status {
        ticket: String,
        status: String,
        /// A note for the timeline
        #[arg(long)]
        note: Option<String>,
    },
    /// Link another device of the ticket's school or county
    LinkDevice {
        ticket: String,
        /// Device id or host name
        device: String,
    },
    /// Full-text search over tickets (and articles with --articles)
    Search {
        query: String,
        #[arg(long)]
        articles: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Write a new article, from a template or a Markdown file
    #[command(
        after_help = "Examples:\n  schoolfleet kb new --template howto --county don --title \"Anleitung: WLAN\" --file wlan.md --publish\n  \
        schoolfleet kb templates"
    )]
    New {
        /// Owning county
        #[arg(long, value_parser = tenant_id)]
        county: String,
        #[arg(long)]
        title: Option<String>,
        /// howto, stoerung or checkliste
        #[arg(long)]
        template: Option<String>,
        /// Markdown file with the body (default: the template's text)
        #[arg(long)]
        file: Option<PathBuf>,
        /// Repeat for several
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        #[arg(long, value_parser = tenant_id)]
        category: Option<String>,
        /// team or teachers
        #[arg(long, default_value = "team")]
        visibility: String,
        /// Publish now (notifies the team)
        #[arg(long)]
        publish: bool,
    },
    /// Save a new version of an article
    Edit {
        id: String,
        /// The version you edited (from `kb show`): protects against lost updates
        #[arg(long)]
        base_version: i64,
        /// Markdown file with the new body
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        title: Option<String>,
        /// Replaces all tags; repeat for several
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        #[arg(long)]
        publish: bool,
    },
    /// Show an article (or an older version) with its history
    Show {
        id: String,
        #[arg(long, default_value_t = 0)]
        version: i64,
    },
    /// Line diff between two versions (default: the last change)
    Diff {
        id: String,
        #[arg(long, default_value_t = 0)]
        from: i64,
        #[arg(long, default_value_t = 0)]
        to: i64,
    },
    /// Articles new or changed recently
    Changes {
        /// e.g. 7d, 24h
        #[arg(long, value_parser = positive_duration, default_value = "7d")]
        since: Duration,
    },
    /// Link an article to a ticket
    Link { id: String, ticket: String },
    /// The templates the server ships
    Templates,
    /// Full-text search over articles (and tickets)
    Search {
        query: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum CountyCommand {
    /// Create a county
    #[command(after_help = "Example:\n  schoolfleet county add kus --name \"Landkreis Kusel\"")]
    Add {
        /// Short id, e.g. kus
        #[arg(value_parser = tenant_id)]
        id: String,
        /// Full name, e.g. "Landkreis Kusel"
        #[arg(long)]
        name: String,
    },
    /// List the counties you can see
    List,
}

#[derive(Debug, Subcommand)]
pub enum SchoolCommand {
    /// Create a school in a county
    #[command(
        after_help = "Example:\n  schoolfleet school add kus012 --county kus --name \"Grundschule Schönenberg-Kübelberg\""
    )]
    Add {
        /// Short id, e.g. kus012
        #[arg(value_parser = tenant_id)]
        id: String,
        /// County id, e.g. kus
        #[arg(long, value_parser = tenant_id)]
        county: String,
        /// Full name of the school
        #[arg(long)]
        name: String,
    },
    /// List the schools you can see
    List {
        /// Only schools of this county
        #[arg(long, value_parser = tenant_id)]
        county: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClassCommand {
    /// Create a device class
    #[command(after_help = "Example:\n  schoolfleet class add schueler-pc --label \"Schüler-PC\"")]
    Add {
        /// Short id, e.g. schueler-pc
        #[arg(value_parser = tenant_id)]
        id: String,
        /// Human label, e.g. "Schüler-PC"
        #[arg(long)]
        label: String,
    },
    /// List the device classes
    List,
}

#[derive(Debug, Subcommand)]
pub enum EnrollTokenCommand {
    /// Create a token for enrolling devices into a school and class; it is
    /// shown once
    #[command(after_help = ENROLL_TOKEN_CREATE_HELP)]
    Create {
        /// School the devices join, e.g. kus012
        #[arg(long, value_parser = tenant_id, required_unless_present = "reinstall")]
        school: Option<String>,
        /// Device class, e.g. schueler-pc
        #[arg(long, value_parser = tenant_id, required_unless_present = "reinstall")]
        class: Option<String>,
        /// A token for the reinstall of this one device (id or host name):
        /// it keeps its id, history, school and class; one use
        #[arg(long, value_name = "DEVICE", conflicts_with_all = ["school", "class", "uses"])]
        reinstall: Option<String>,
        /// How long the token is valid, e.g. 2h, 7d, 4weeks
        #[arg(long, value_parser = positive_duration, default_value = "7d", value_name = "DURATION")]
        expires: Duration,
        /// How many devices may enrol with it, e.g. the size of a computer room
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        uses: u32,
        /// Free text, e.g. "Computerraum 1"
        #[arg(long)]
        description: Option<String>,
    },
    /// List enrolment tokens (active ones unless --all)
    List {
        /// Only tokens of this school
        #[arg(long, value_parser = tenant_id)]
        school: Option<String>,
        /// Only tokens of schools in this county
        #[arg(long, value_parser = tenant_id)]
        county: Option<String>,
        /// Include expired, used-up and revoked tokens
        #[arg(long)]
        all: bool,
    },
    /// Revoke an enrolment token so no further device can use it
    Revoke {
        /// Token id, as shown by `enroll-token list`
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with one or more role bindings
    #[command(
        after_help = "Roles: admin, technician, coordinator, viewer, teacher.\n\
        Each --role is ROLE@SCOPE, where SCOPE is `cooperation`, `county:<id>` or `school:<id>`.\n\n\
        Examples:\n  \
        schoolfleet user add m.mueller --county kus --role technician@county:kus --role viewer@county:kl\n  \
        schoolfleet user add praktikant --county kus --role technician@school:kus012 --remote exec,cp"
    )]
    Add {
        /// Login name, e.g. m.mueller
        name: String,
        /// Role binding ROLE@SCOPE, e.g. technician@county:kus (repeatable)
        #[arg(long = "role", value_name = "ROLE@SCOPE", value_parser = role_binding, required = true)]
        roles: Vec<RoleBindingArg>,
        /// Home county of the person (who employs them); omit for the cooperation
        #[arg(long, value_parser = tenant_id)]
        county: Option<String>,
        /// Remote-session capabilities each --role keeps: a comma list of
        /// shell, exec, forward, cp, or none [default: all the role grants]
        #[arg(long, value_parser = remote_capabilities, value_name = "CAPS")]
        remote: Option<String>,
    },
    /// List users
    List,
    /// Set the web portal password of a user (yourself when omitted)
    #[command(
        after_help = "The password is read from standard input (one line), so it never \
        appears in the shell history or the process list. At least 12 characters; the server \
        stores it as an argon2id hash and ends the user's web sessions.\n\n\
        Example:\n  printf '%s\\n' \"$PASSWORT\" | schoolfleet user set-password l.lehrerin"
    )]
    SetPassword {
        /// User name or id; yourself when omitted
        name: Option<String>,
    },
    /// Disable a user: their API tokens and web logins are refused at once
    Disable {
        /// User name or id
        name: String,
    },
    /// Enable a disabled user again
    Enable {
        /// User name or id
        name: String,
    },
    /// Delete a user with roles, tokens, web login and second factor
    #[command(
        after_help = "Sessions keep the user's id as a pseudonym (`user:deleted-<id>`), which also \
        replaces the name in ticket events, article versions and consent settings; tickets lose \
        the assignee. Audit entries written before stay until `audit.retention` \
        (docs/datenschutz.md, section 5)."
    )]
    Delete {
        /// User name or id
        name: String,
        /// Do not ask for confirmation (needed without a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Add or remove a role binding
    #[command(subcommand)]
    Role(UserRoleCommand),
    /// List a user's API tokens (never their secrets)
    Tokens {
        /// User name or id; yourself when omitted
        name: Option<String>,
    },
    /// Create or revoke API tokens (the same as `schoolfleet token`)
    #[command(subcommand)]
    Token(TokenCommand),
    /// The second factor (TOTP) of a user
    #[command(subcommand)]
    Mfa(UserMfaCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserRoleCommand {
    /// Add a role binding, e.g. `user role add m.mueller viewer@county:kl`
    Add {
        /// User name or id
        name: String,
        /// ROLE@SCOPE, e.g. technician@school:kus012
        #[arg(value_parser = role_binding, value_name = "ROLE@SCOPE")]
        binding: RoleBindingArg,
        /// Remote-session capabilities the binding keeps: a comma list of
        /// shell, exec, forward, cp, or none [default: all the role grants]
        #[arg(long, value_parser = remote_capabilities, value_name = "CAPS")]
        remote: Option<String>,
    },
    /// Remove a role binding (a user keeps at least one)
    Remove {
        /// User name or id
        name: String,
        /// ROLE@SCOPE as shown by `user list`
        #[arg(value_parser = role_binding, value_name = "ROLE@SCOPE")]
        binding: RoleBindingArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserMfaCommand {
    /// Remove a user's second factor (e.g. a lost phone); they enrol again
    /// with `schoolfleet mfa enroll` before their next session
    Reset {
        /// User name or id
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; the secret is shown once
    #[command(after_help = TOKEN_CREATE_HELP)]
    Create {
        /// User name or id; yourself when omitted
        #[arg(long)]
        user: Option<String>,
        /// How long the token is valid, e.g. 30d, 90d
        #[arg(long, value_parser = positive_duration, default_value = "90d", value_name = "DURATION")]
        expires: Duration,
        /// Free text, e.g. where the token is used
        #[arg(long)]
        description: Option<String>,
    },
    /// Revoke an API token
    Revoke {
        /// Token id (the part after `sft_` and before the next `_`)
        id: String,
    },
}

/// `devices`: filters combine with AND; all pages are fetched.
#[derive(Debug, Default, Args)]
#[command(
    after_help = "Examples:\n  schoolfleet devices --school kus012 --class schueler-pc\n  \
    schoolfleet devices --county kus --not-seen-for 30d -o csv > alte-geraete.csv"
)]
pub struct DevicesArgs {
    /// Only devices in this county
    #[arg(long, value_parser = tenant_id)]
    pub county: Option<String>,
    /// Only devices of this school
    #[arg(long, value_parser = tenant_id)]
    pub school: Option<String>,
    /// Only devices of this class
    #[arg(long, value_parser = tenant_id)]
    pub class: Option<String>,
    /// Only devices connected right now
    #[arg(long, conflicts_with = "offline")]
    pub online: bool,
    /// Only devices not connected right now
    #[arg(long)]
    pub offline: bool,
    /// Only devices seen within this time, e.g. 1h
    #[arg(long, value_parser = positive_duration, value_name = "DURATION")]
    pub seen_within: Option<Duration>,
    /// Only devices not seen for at least this long, e.g. 7d
    #[arg(long, value_parser = positive_duration, value_name = "DURATION")]
    pub not_seen_for: Option<Duration>,
    /// Include retired devices
    #[arg(long)]
    pub all: bool,
    /// Only devices whose host name contains this text
    #[arg(long, value_name = "SUBSTR")]
    pub host: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Show a device with its full inventory
    Show {
        /// Device id or host name
        device: String,
        /// List all installed software, not only the first 20 packages
        #[arg(long)]
        software: bool,
    },
    /// Inventory changes: software installed/removed/updated, hardware, OS
    History {
        /// Device id or host name
        device: String,
        /// At most this many changes, newest first
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Inventory reports received from the device
    Reports {
        /// Device id or host name
        device: String,
        /// At most this many reports, newest first
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Take a device out of service (enrolling its agent again, or a reinstall token, reactivates it)
    Retire {
        /// Device id or host name
        device: String,
    },
    /// Revoke a device's certificate, e.g. for a stolen laptop. The device is
    /// refused until an admin deletes it
    Revoke {
        /// Device id or host name
        device: String,
        /// Do not ask for confirmation (needed without a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Delete a retired or revoked device with its inventory, software,
    /// history, reports and compliance results
    #[command(
        after_help = "Sessions and audit entries keep the device id, which then names nothing any \
        more; the deletion's own audit entry carries no host name (docs/datenschutz.md, section 5)."
    )]
    Delete {
        /// Device id or host name
        device: String,
        /// Do not ask for confirmation (needed without a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Ask a connected device to send its inventory now
    Refresh {
        /// Device id or host name
        device: String,
    },
    /// Confirm that a newly enrolled device is an existing PC (reinstalled,
    /// renamed): the old device keeps its id and history and takes over the
    /// new enrolment; the new record is retired
    #[command(
        after_help = "Example:\n  schoolfleet device adopt 0193f2c1-… kus012-pc07\n\n\
        Enrolling a PC whose hardware looks like an existing device prints this \
        command;\nthe match is only a hint, so the old device is untouched until \
        you confirm."
    )]
    Adopt {
        /// The newly enrolled device (id or host name)
        device: String,
        /// The existing device it replaces (id or host name)
        replaces: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SoftwareCommand {
    /// Find devices with a package installed, optionally below a version
    #[command(
        after_help = "Examples:\n  schoolfleet software search firefox --version-below 128.0\n  \
        schoolfleet software search openssl --county kus --by-version"
    )]
    Search {
        /// Part of the package name (case-insensitive)
        name: String,
        /// Only versions below this one (compared segment by segment)
        #[arg(long, value_name = "VERSION")]
        version_below: Option<String>,
        /// Only devices in this county
        #[arg(long, value_parser = tenant_id)]
        county: Option<String>,
        /// Only devices of this school
        #[arg(long, value_parser = tenant_id)]
        school: Option<String>,
        /// At most this many hits
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Print the number of devices per version instead of the hits
        #[arg(long)]
        by_version: bool,
    },
}

/// The roles the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Admin,
    Technician,
    Coordinator,
    Viewer,
    /// The school's lead or data-protection contact, at school scope only.
    #[value(name = "schulleitung")]
    Schulleitung,
    /// Reports problems in the web portal, nothing else.
    Teacher,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Coordinator => "coordinator",
            Role::Viewer => "viewer",
            Role::Schulleitung => "schulleitung",
            Role::Teacher => "teacher",
        }
    }
}

/// `--role technician@county:kus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleBindingArg {
    pub role: Role,
    pub scope: Scope,
}

/// Parses ROLE@SCOPE.
pub fn role_binding(text: &str) -> Result<RoleBindingArg, String> {
    let (role, scope) = text
        .split_once('@')
        .ok_or_else(|| format!("expected ROLE@SCOPE, e.g. technician@county:kus, got {text:?}"))?;
    let role = Role::from_str(role, false).map_err(|_| {
        format!(
            "unknown role {role:?}: expected admin, technician, coordinator, viewer, schulleitung \
             or teacher"
        )
    })?;
    let scope = scope.parse::<Scope>().map_err(|e| e.to_string())?;
    Ok(RoleBindingArg { role, scope })
}

/// County, school and class ids: lowercase letters, digits, '-' and '_'.
pub fn tenant_id(text: &str) -> Result<String, String> {
    if is_valid_tenant_id(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid id {text:?}: use 1-32 lowercase letters, digits, '-' or '_', e.g. kus012"
        ))
    }
}

/// A humantime duration ("90d", "2h 30min") that is not zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?} ({e}): use e.g. 30min, 12h, 7d"))?;
    if duration.as_secs() == 0 {
        return Err("the duration must be at least one second".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("schoolfleet").chain(args.iter().copied()))
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn enroll_token_create_parses_durations() {
        let cli = parse(&[
            "enroll-token",
            "create",
            "--school",
            "kus012",
            "--class",
            "schueler-pc",
            "--expires",
            "7d",
            "--uses",
            "30",
        ])
        .unwrap();
        match cli.command {
            Command::EnrollToken(EnrollTokenCommand::Create {
                school,
                class,
                expires,
                uses,
                ..
            }) => {
                assert_eq!(school.as_deref(), Some("kus012"));
                assert_eq!(class.as_deref(), Some("schueler-pc"));
                assert_eq!(expires, Duration::from_secs(7 * 86400));
                assert_eq!(uses, 30);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &[
                "enroll-token",
                "create",
                "--school",
                "kus012",
                "--class",
                "x",
                "--expires",
                "7",
            ][..],
            &[
                "enroll-token",
                "create",
                "--school",
                "kus012",
                "--class",
                "x",
                "--expires",
                "0s",
            ],
            &[
                "enroll-token",
                "create",
                "--school",
                "KUS012",
                "--class",
                "x",
            ],
            &[
                "enroll-token",
                "create",
                "--school",
                "kus012",
                "--class",
                "x",
                "--uses",
                "0",
            ],
            &["devices", "--online", "--offline"],
            &["user", "add", "anna"],
            &["user", "add", "anna", "--role", "technician"],
            &["user", "add", "anna", "--role", "janitor@county:kus"],
            &["user", "add", "anna", "--role", "viewer@planet:mars"],
            &["county", "add", "k us", "--name", "x"],
        ] {
            let err = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn user_add_takes_repeated_role_bindings() {
        let cli = parse(&[
            "user",
            "add",
            "m.mueller",
            "--role",
            "technician@county:kus",
            "--role",
            "viewer@cooperation",
            "--county",
            "kus",
        ])
        .unwrap();
        let Command::User(UserCommand::Add {
            name,
            roles,
            county,
            ..
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(name, "m.mueller");
        assert_eq!(county.as_deref(), Some("kus"));
        assert_eq!(
            roles,
            vec![
                RoleBindingArg {
                    role: Role::Technician,
                    scope: Scope::County("kus".into())
                },
                RoleBindingArg {
                    role: Role::Viewer,
                    scope: Scope::Cooperation
                },
            ]
        );
        assert_eq!(
            role_binding("coordinator@school:kus012").unwrap().scope,
            Scope::School("kus012".into())
        );
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = parse(&[
            "devices",
            "--school",
            "kus012",
            "--not-seen-for",
            "7d",
            "-o",
            "csv",
            "--server",
            "https://fleet:7443",
            "--token",
            "sft_a_b",
        ])
        .unwrap();
        assert_eq!(cli.global.output, OutputFormat::Csv);
        assert_eq!(cli.global.server.as_deref(), Some("https://fleet:7443"));
        assert_eq!(
            cli.global.token.as_ref().map(Secret::expose),
            Some("sft_a_b")
        );
        assert!(
            !format!("{cli:?}").contains("sft_a_b"),
            "Debug leaks the token"
        );
        let Command::Devices(d) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(d.not_seen_for, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(d.school.as_deref(), Some("kus012"));
    }

    #[test]
    fn forward_targets() {
        let t = |local, host: &str, port| ForwardTarget {
            local_port: local,
            host: host.into(),
            port,
        };
        assert_eq!(
            forward_target("5901:127.0.0.1:5900"),
            Ok(t(5901, "127.0.0.1", 5900))
        );
        assert_eq!(
            forward_target("drucker-r101.schule.local:80"),
            Ok(t(80, "drucker-r101.schule.local", 80))
        );
        assert_eq!(
            forward_target("0:10.0.0.5:3389"),
            Ok(t(0, "10.0.0.5", 3389))
        );
        assert_eq!(
            forward_target("8080:[fd00::20]:80"),
            Ok(t(8080, "fd00::20", 80))
        );
        assert_eq!(forward_target("[::1]:22"), Ok(t(22, "::1", 22)));
        for bad in [
            "5900",
            "host:0",
            "host:70000",
            "x:host:80",
            "1:2:3:4",
            ":80",
            "8080:fd00::20:80",
            "8080:[fd00::20:80",
            "80:ho st:80",
            "80:[a]b]:80",
            "80:[drucker]:80",
        ] {
            assert!(forward_target(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn copy_locations() {
        assert_eq!(
            copy_location("kus012-pc07:/tmp/a.txt"),
            Ok(CopyLocation::Remote {
                device: "kus012-pc07".into(),
                path: "/tmp/a.txt".into()
            })
        );
        assert_eq!(
            copy_location("./a:b"),
            Ok(CopyLocation::Local(PathBuf::from("./a:b")))
        );
        assert_eq!(
            copy_location("/abs/file"),
            Ok(CopyLocation::Local(PathBuf::from("/abs/file")))
        );
        assert!(
            copy_location("pc07:tmp/a")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(copy_location("pc07:/tmp/a\0b").is_err());
        assert!(copy_location("").is_err());
    }

    #[test]
    fn copy_locations_with_drive_letters() {
        // A local Windows path is not device "C".
        assert_eq!(
            copy_location(r"C:\Users\anna\treiber.msi"),
            Ok(CopyLocation::Local(PathBuf::from(
                r"C:\Users\anna\treiber.msi"
            )))
        );
        // A Windows device's path.
        assert_eq!(
            copy_location(r"kus012-pc07:C:\Temp\log.txt"),
            Ok(CopyLocation::Remote {
                device: "kus012-pc07".into(),
                path: r"C:\Temp\log.txt".into()
            })
        );
        assert_eq!(
            copy_location("pc07:D:/Daten/a.txt"),
            Ok(CopyLocation::Remote {
                device: "pc07".into(),
                path: "D:/Daten/a.txt".into()
            })
        );
        assert!(copy_location("pc07:C:relative").is_err());
        // `C:/x` is a local path on Windows, device C elsewhere (as before).
        let forward = copy_location("C:/x/a.txt").unwrap();
        if cfg!(windows) {
            assert_eq!(forward, CopyLocation::Local(PathBuf::from("C:/x/a.txt")));
        } else {
            assert!(
                matches!(forward, CopyLocation::Remote { .. }),
                "{forward:?}"
            );
        }
    }

    #[test]
    fn offboarding_commands_parse() {
        let cli = parse(&[
            "user",
            "role",
            "add",
            "anna",
            "viewer@county:kl",
            "--remote",
            "exec",
        ])
        .unwrap();
        let Command::User(UserCommand::Role(UserRoleCommand::Add {
            name,
            binding,
            remote,
        })) = cli.command
        else {
            panic!("wrong command")
        };
        assert_eq!(name, "anna");
        assert_eq!(binding.scope.to_string(), "county:kl");
        assert_eq!(remote.as_deref(), Some("exec"));
        assert!(parse(&["user", "role", "remove", "anna", "viewer"]).is_err());
        assert!(matches!(
            parse(&["user", "mfa", "reset", "anna"]).unwrap().command,
            Command::User(UserCommand::Mfa(UserMfaCommand::Reset { .. }))
        ));
        assert!(matches!(
            parse(&["user", "token", "revoke", "abc"]).unwrap().command,
            Command::User(UserCommand::Token(TokenCommand::Revoke { .. }))
        ));
        assert!(matches!(
            parse(&["user", "delete", "anna", "--yes"]).unwrap().command,
            Command::User(UserCommand::Delete { yes: true, .. })
        ));
        assert!(matches!(
            parse(&["device", "delete", "kus012-pc01", "-y"])
                .unwrap()
                .command,
            Command::Device(DeviceCommand::Delete { yes: true, .. })
        ));
        let cli = parse(&[
            "sessions",
            "approve-playback",
            "s1",
            "--for",
            "anna",
            "--reason",
            "Beschwerde",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Sessions(SessionsCommand::ApprovePlayback { .. })
        ));
        // The reason is required.
        assert!(parse(&["sessions", "approve-playback", "s1", "--for", "anna"]).is_err());
    }

    #[test]
    fn session_commands_parse() {
        let cli = parse(&[
            "exec",
            "kus012-pc07",
            "--reason",
            "Updates",
            "--",
            "apt",
            "list",
            "--upgradable",
        ])
        .unwrap();
        let Command::Exec(exec) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(exec.device.as_deref(), Some("kus012-pc07"));
        assert_eq!(exec.command, ["apt", "list", "--upgradable"]);
        assert_eq!(exec.timeout, Duration::from_secs(60));
        assert_eq!(exec.concurrency, 10);

        let cli = parse(&[
            "exec",
            "--school",
            "kus012",
            "--class",
            "schueler-pc",
            "--concurrency",
            "3",
            "--timeout",
            "30s",
            "--reason",
            "Neustart",
            "--",
            "true",
        ])
        .unwrap();
        let Command::Exec(exec) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(exec.device, None);
        assert_eq!(exec.school.as_deref(), Some("kus012"));
        assert_eq!(exec.concurrency, 3);

        let cli = parse(&["cp", "./a.txt", "pc07:/tmp/"]).unwrap();
        let Command::Cp(cp) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(cp.reason, "file copy");

        for args in [
            &["exec", "pc07", "--", "true"][..],
            &["exec", "pc07", "--reason", "x"],
            &[
                "exec", "pc07", "--school", "kus012", "--reason", "x", "--", "true",
            ],
            &[
                "exec",
                "--class",
                "schueler-pc",
                "--reason",
                "x",
                "--",
                "true",
            ],
            &["exec", "pc07", "--reason", "", "--", "true"],
            &["exec", "pc07", "--reason", "a\u{1b}b", "--", "true"],
            &["shell", "pc07"],
            &["forward", "pc07", "5900", "--reason", "x"],
            &["sessions", "play", "s1", "--reason", "r", "--speed", "0"],
            &["consent", "set", "--school", "kus012", "--mode", "ask"],
            &[
                "user",
                "add",
                "a",
                "--role",
                "technician@county:kus",
                "--remote",
                "ssh",
            ],
            &["audit", "list", "--since", "yesterday-ish"],
        ] {
            let err = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn remote_capability_lists() {
        assert_eq!(
            remote_capabilities("shell,exec,cp").as_deref(),
            Ok("shell,exec,cp")
        );
        assert_eq!(remote_capabilities(" exec , exec ").as_deref(), Ok("exec"));
        assert_eq!(remote_capabilities("none").as_deref(), Ok("none"));
        assert!(remote_capabilities("none,exec").is_err());
        assert!(remote_capabilities("").is_err());
        let cli = parse(&[
            "user",
            "add",
            "a",
            "--role",
            "technician@county:kus",
            "--remote",
            "exec,forward",
        ])
        .unwrap();
        let Command::User(UserCommand::Add { remote, .. }) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(remote.as_deref(), Some("exec,forward"));
    }

    #[test]
    fn since_accepts_days_times_and_durations() {
        assert_eq!(
            since_time("2026-11-01").unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert_eq!(
            since_time("2026-11-01T10:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-01T09:00:00+00:00"
        );
        let week = since_time("7d").unwrap();
        let age = chrono::Utc::now() - week;
        assert!((age.num_hours() - 168).abs() <= 1, "{age}");
    }

    #[test]
    fn output_defaults_to_table() {
        assert_eq!(
            parse(&["county", "list"]).unwrap().global.output,
            OutputFormat::Table
        );
    }
}
