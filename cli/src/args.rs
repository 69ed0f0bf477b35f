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

Then run the printed `schoolfleet-agent enroll ...` command on each PC.";

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
        #[arg(long, value_parser = tenant_id)]
        school: String,
        /// Device class, e.g. schueler-pc
        #[arg(long, value_parser = tenant_id)]
        class: String,
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
    #[command(after_help = "Roles: admin, technician, coordinator, viewer.\n\
        Each --role is ROLE@SCOPE, where SCOPE is `cooperation`, `county:<id>` or `school:<id>`.\n\n\
        Example:\n  \
        schoolfleet user add m.mueller --county kus --role technician@county:kus --role viewer@county:kl")]
    Add {
        /// Login name, e.g. m.mueller
        name: String,
        /// Role binding ROLE@SCOPE, e.g. technician@county:kus (repeatable)
        #[arg(long = "role", value_name = "ROLE@SCOPE", value_parser = role_binding, required = true)]
        roles: Vec<RoleBindingArg>,
        /// Home county of the person (who employs them); omit for the cooperation
        #[arg(long, value_parser = tenant_id)]
        county: Option<String>,
    },
    /// List users
    List,
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
    /// Take a device out of service (a re-enrolment reactivates it)
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
    /// Ask a connected device to send its inventory now
    Refresh {
        /// Device id or host name
        device: String,
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
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Coordinator => "coordinator",
            Role::Viewer => "viewer",
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
        format!("unknown role {role:?}: expected admin, technician, coordinator or viewer")
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
                assert_eq!(school, "kus012");
                assert_eq!(class, "schueler-pc");
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
    fn output_defaults_to_table() {
        assert_eq!(
            parse(&["county", "list"]).unwrap().global.output,
            OutputFormat::Table
        );
    }
}
