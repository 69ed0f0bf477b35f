//! The saved profile (server, CA pin, API token) and how flags and
//! environment variables override it.
//!
//! Precedence, field by field: command-line flag, then environment variable,
//! then `profile.toml`. So `SCHOOLFLEET_TOKEN=... schoolfleet devices` uses
//! another token against the saved server without touching the file.
//!
//! Nothing here reads the process environment except
//! [`Environment::from_process`]; everything else takes an [`Environment`]
//! value, so tests inject values instead of calling `std::env::set_var`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::args::GlobalArgs;

/// File name of the profile inside the config directory.
pub const PROFILE_FILE: &str = "profile.toml";

/// A secret string (API token). Its `Debug` never shows the value, so a
/// stray `{:?}` or an error report cannot leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// What `schoolfleet login` saves: enough to reach and trust the server and
/// to authenticate. `Debug` hides the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// `https://host:port`.
    pub server: String,
    /// `sha256:<hex>` fingerprint of the server's CA.
    pub ca_pin: String,
    /// API token `sft_...`.
    pub token: Secret,
}

/// The environment variables the CLI reads, captured once in `main`.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `SCHOOLFLEET_SERVER`
    pub server: Option<String>,
    /// `SCHOOLFLEET_CA_PIN`
    pub ca_pin: Option<String>,
    /// `SCHOOLFLEET_TOKEN`
    pub token: Option<Secret>,
    /// `SCHOOLFLEET_CONFIG_DIR`
    pub config_dir: Option<PathBuf>,
    /// `XDG_CONFIG_HOME`
    pub xdg_config_home: Option<PathBuf>,
    /// `HOME`
    pub home: Option<PathBuf>,
    /// `APPDATA` (Windows: the profile lives in `%APPDATA%\schoolfleet`)
    pub appdata: Option<PathBuf>,
}

impl Environment {
    /// Reads the variables of this process. Empty values count as unset.
    pub fn from_process() -> Self {
        fn var(name: &str) -> Option<String> {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        }
        Self {
            server: var("SCHOOLFLEET_SERVER"),
            ca_pin: var("SCHOOLFLEET_CA_PIN"),
            token: var("SCHOOLFLEET_TOKEN").map(Secret::from),
            config_dir: var("SCHOOLFLEET_CONFIG_DIR").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            appdata: var("APPDATA").map(PathBuf::from),
        }
    }
}

/// The directory that holds `profile.toml`: `--config-dir`, else
/// `$SCHOOLFLEET_CONFIG_DIR`, else `$XDG_CONFIG_HOME/schoolfleet`, else
/// `~/.config/schoolfleet`.
pub fn config_dir(flag: Option<&Path>, env: &Environment) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag.or(env.config_dir.as_deref()) {
        return Ok(dir.to_path_buf());
    }
    if cfg!(windows)
        && let Some(appdata) = env.appdata.as_deref().filter(|p| p.is_absolute())
    {
        return Ok(appdata.join("schoolfleet"));
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(xdg) = env.xdg_config_home.as_deref().filter(|p| p.is_absolute()) {
        return Ok(xdg.join("schoolfleet"));
    }
    if let Some(home) = &env.home {
        return Ok(home.join(".config").join("schoolfleet"));
    }
    bail!(
        "cannot find a config directory: set --config-dir, SCHOOLFLEET_CONFIG_DIR, XDG_CONFIG_HOME or HOME"
    )
}

/// Connection settings after applying flags and environment over the saved
/// profile; any of them may still be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub server: Option<String>,
    pub ca_pin: Option<String>,
    pub token: Option<Secret>,
}

impl Settings {
    /// Field by field: flag, then environment, then the saved profile.
    pub fn resolve(flags: &GlobalArgs, env: &Environment, saved: Option<&Profile>) -> Self {
        Self {
            server: flags
                .server
                .clone()
                .or_else(|| env.server.clone())
                .or_else(|| saved.map(|p| p.server.clone())),
            ca_pin: flags
                .ca_pin
                .clone()
                .or_else(|| env.ca_pin.clone())
                .or_else(|| saved.map(|p| p.ca_pin.clone())),
            token: flags
                .token
                .clone()
                .or_else(|| env.token.clone())
                .or_else(|| saved.map(|p| p.token.clone())),
        }
    }

    pub fn is_complete(&self) -> bool {
        self.server.is_some() && self.ca_pin.is_some() && self.token.is_some()
    }

    /// All three settings, or a "not logged in" error that says what is missing.
    pub fn require(self) -> anyhow::Result<Profile> {
        match self {
            Settings {
                server: Some(server),
                ca_pin: Some(ca_pin),
                token: Some(token),
            } => Ok(Profile {
                server,
                ca_pin,
                token,
            }),
            Settings {
                server,
                ca_pin,
                token,
            } => {
                let missing: Vec<&str> = [
                    (server.is_none(), "server (--server / SCHOOLFLEET_SERVER)"),
                    (ca_pin.is_none(), "CA pin (--ca-pin / SCHOOLFLEET_CA_PIN)"),
                    (token.is_none(), "token (--token / SCHOOLFLEET_TOKEN)"),
                ]
                .into_iter()
                .filter_map(|(is_missing, what)| is_missing.then_some(what))
                .collect();
                let hint = "not logged in: run `schoolfleet login --server https://HOST:7443 \
                            --ca-pin sha256:HEX --token sft_...`";
                if missing.len() == 3 {
                    bail!("{hint}")
                }
                bail!("{hint} (missing: {})", missing.join(", "))
            }
        }
    }
}

/// Reads the profile; `None` when there is none yet.
pub fn load(path: &Path) -> anyhow::Result<Option<Profile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    warn_if_readable_by_others(path);
    let profile =
        toml::from_str(&text).with_context(|| format!("invalid profile {}", path.display()))?;
    Ok(Some(profile))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: {} holds an API token but has mode {mode:04o}; run `chmod 600` on it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Writes the profile atomically (temp file in the same directory, fsync,
/// rename) with mode 0600, creating the directory with mode 0700 if needed.
/// A crash leaves either the old or the new profile, never half of one.
pub fn save(path: &Path, profile: &Profile) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir(dir)?;

    let body = toml::to_string(profile).context("cannot encode profile")?;
    let text = format!(
        "# schoolfleet CLI profile, written by `schoolfleet login`.\n\
         # Holds an API token: keep this file private (mode 0600).\n{body}"
    );

    // tempfile creates the file with mode 0600 already; set it anyway so the
    // guarantee does not hang on a library default.
    let mut tmp = tempfile::Builder::new()
        .prefix(".profile.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    set_private_mode(tmp.as_file())?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Deletes the profile; `false` when there was none.
pub fn remove(path: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Windows: the directory's DACL is replaced with one entry for the current
/// user (inherited by the profile inside), so neither other users nor the
/// default ACL of the parent can read the token.
#[cfg(windows)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let user = match (std::env::var("USERDOMAIN"), std::env::var("USERNAME")) {
        (Ok(domain), Ok(user)) if !domain.is_empty() => format!("{domain}\\{user}"),
        (_, Ok(user)) => user,
        _ => bail!("cannot make {} private: USERNAME is not set", dir.display()),
    };
    let root = std::env::var_os("SystemRoot").unwrap_or_else(|| "C:\\Windows".into());
    let icacls = PathBuf::from(root).join("System32").join("icacls.exe");
    let status = std::process::Command::new(icacls)
        .arg(dir)
        .args(["/inheritance:r", "/grant:r"])
        .arg(format!("{user}:(OI)(CI)F"))
        .arg("/q")
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run icacls on {}", dir.display()))?;
    if !status.success() {
        bail!("icacls could not make {} private ({status})", dir.display());
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(unix)]
fn set_private_mode(file: &std::fs::File) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .context("cannot restrict the profile to mode 0600")
}

#[cfg(not(unix))]
fn set_private_mode(_file: &std::fs::File) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            server: "https://fleet.kus.example:7443".into(),
            ca_pin: format!("sha256:{}", "ab".repeat(32)),
            token: Secret::new("sft_abc_s3cr3t"),
        }
    }

    #[test]
    fn save_and_load_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join(PROFILE_FILE);
        assert_eq!(load(&path).unwrap(), None);

        save(&path, &profile()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(profile()));

        // Overwriting keeps exactly one file and no temp files behind.
        let mut other = profile();
        other.token = Secret::new("sft_def_other");
        save(&path, &other).unwrap();
        assert_eq!(load(&path).unwrap(), Some(other));
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(PROFILE_FILE)]);

        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
        assert_eq!(load(&path).unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn saved_profile_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("schoolfleet");
        let path = conf.join(PROFILE_FILE);
        save(&path, &profile()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
    }

    #[test]
    fn debug_hides_the_token() {
        let text = format!("{:?}", profile());
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("<redacted>"));
        let settings = Settings {
            token: Some(Secret::new("sft_x_s3cr3t")),
            ..Default::default()
        };
        assert!(!format!("{settings:?}").contains("s3cr3t"));
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let saved = profile();
        let env = Environment {
            server: Some("https://env.example:7443".into()),
            token: Some(Secret::new("sft_env")),
            ..Default::default()
        };
        let flags = GlobalArgs {
            token: Some(Secret::new("sft_flag")),
            ..Default::default()
        };

        let s = Settings::resolve(&flags, &env, Some(&saved));
        assert_eq!(s.server.as_deref(), Some("https://env.example:7443"));
        assert_eq!(s.ca_pin.as_deref(), Some(saved.ca_pin.as_str()));
        assert_eq!(s.token, Some(Secret::new("sft_flag")));

        let s = Settings::resolve(&GlobalArgs::default(), &env, Some(&saved));
        assert_eq!(s.token, Some(Secret::new("sft_env")));

        let s = Settings::resolve(
            &GlobalArgs::default(),
            &Environment::default(),
            Some(&saved),
        );
        assert_eq!(s.require().unwrap(), saved);
    }

    #[test]
    fn missing_settings_say_not_logged_in() {
        let env = Environment {
            server: Some("https://x:7443".into()),
            ..Default::default()
        };
        let err = Settings::resolve(&GlobalArgs::default(), &env, None)
            .require()
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("not logged in: run `schoolfleet login"),
            "{msg}"
        );
        assert!(msg.contains("CA pin") && msg.contains("token") && !msg.contains("server ("));
    }

    #[test]
    fn config_dir_precedence() {
        let env = Environment {
            config_dir: Some("/env/conf".into()),
            xdg_config_home: Some("/xdg".into()),
            home: Some("/home/lehrer".into()),
            ..Default::default()
        };
        let flag = Path::new("/flag/conf");
        assert_eq!(
            config_dir(Some(flag), &env).unwrap(),
            PathBuf::from("/flag/conf")
        );
        assert_eq!(config_dir(None, &env).unwrap(), PathBuf::from("/env/conf"));

        let env = Environment {
            config_dir: None,
            ..env
        };
        assert_eq!(
            config_dir(None, &env).unwrap(),
            PathBuf::from("/xdg/schoolfleet")
        );

        let relative_xdg = Environment {
            xdg_config_home: Some("rel".into()),
            ..env.clone()
        };
        assert_eq!(
            config_dir(None, &relative_xdg).unwrap(),
            PathBuf::from("/home/lehrer/.config/schoolfleet")
        );

        assert!(config_dir(None, &Environment::default()).is_err());
    }
}
