//! The desktop of whoever sits at the device: an active, local graphical
//! login session (loginctl), asked with zenity or kdialog and told with
//! notify-send, run as that user. The user's name stays on the device.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    BoxFuture, ConsentAnswer, ConsentProvider, ConsentRequest, kind_german, plain, run_bounded,
};

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Where helper programs are looked for. Never PATH: the agent's
/// environment is not proof of anything, and a directory early in PATH
/// that someone else can write to would run their `loginctl` as root.
pub const SYSTEM_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"];
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphicalSession {
    pub user: String,
    pub uid: u32,
    /// X11 display (":0"), empty when unknown.
    pub display: String,
    /// "x11" or "wayland".
    pub kind: String,
}

#[derive(Debug, Clone, Copy)]
pub struct DesktopProvider;

/// The active local graphical session, if any.
pub async fn find_session() -> Option<GraphicalSession> {
    let list = command_output("loginctl", &["list-sessions", "--no-legend", "--no-pager"]).await?;
    for id in list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let props = command_output(
            "loginctl",
            &[
                "show-session",
                id,
                "--no-pager",
                "-p",
                "Active",
                "-p",
                "Type",
                "-p",
                "Name",
                "-p",
                "User",
                "-p",
                "Display",
                "-p",
                "Remote",
                "-p",
                "Class",
            ],
        )
        .await?;
        if let Some(session) = parse_show_session(&props) {
            return Some(session);
        }
    }
    None
}

async fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let Some(path) = system_tool(program) else {
        tracing::debug!(program, "not installed in a system directory");
        return None;
    };
    let run = tokio::process::Command::new(path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(LOOKUP_TIMEOUT, run).await.ok()?.ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One `loginctl show-session` answer: a session counts when it is active,
/// local, a user session and graphical.
pub fn parse_show_session(text: &str) -> Option<GraphicalSession> {
    let get = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
    };
    let kind = get("Type");
    if get("Active") != "yes"
        || get("Remote") == "yes"
        || get("Class") != "user"
        || !matches!(kind, "x11" | "wayland")
    {
        return None;
    }
    let user = get("Name");
    let uid = get("User").parse().ok()?;
    // The name goes on a command line: only plain login names.
    if user.is_empty()
        || !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        || user.starts_with('-')
    {
        return None;
    }
    Some(GraphicalSession {
        user: user.to_owned(),
        uid,
        display: get("Display").to_owned(),
        kind: kind.to_owned(),
    })
}

/// The helper programs of the desktop provider, by absolute path.
#[derive(Debug, Clone)]
struct UserTools {
    runuser: PathBuf,
    env: PathBuf,
}

impl UserTools {
    fn find() -> Option<UserTools> {
        Some(UserTools {
            runuser: system_tool("runuser")?,
            env: system_tool("env")?,
        })
    }
}

/// `runuser -u USER -- env DISPLAY=… PROGRAM ARGS`: the tool runs as the
/// logged-in user with their display and session bus. Every program is
/// given by absolute path.
fn as_user(
    tools: &UserTools,
    session: &GraphicalSession,
    program: &Path,
    args: &[String],
) -> tokio::process::Command {
    let runtime_dir = format!("/run/user/{}", session.uid);
    let display = if session.display.is_empty() {
        ":0".to_owned()
    } else {
        session.display.clone()
    };
    let mut command = tokio::process::Command::new(&tools.runuser);
    command
        .args(["-u", &session.user, "--"])
        .arg(&tools.env)
        .arg(format!("DISPLAY={display}"))
        .arg(format!("XDG_RUNTIME_DIR={runtime_dir}"))
        .arg(format!(
            "DBUS_SESSION_BUS_ADDRESS=unix:path={runtime_dir}/bus"
        ));
    if Path::new(&format!("{runtime_dir}/wayland-0")).exists() {
        command.arg("WAYLAND_DISPLAY=wayland-0");
    }
    command.arg(program).args(args);
    command
}

/// `name` in the system directories, as an absolute path.
pub fn system_tool(name: &str) -> Option<PathBuf> {
    tool_in(SYSTEM_DIRS.iter().map(Path::new), name)
}

/// The first regular, executable `dir/name`.
fn tool_in<'a>(dirs: impl IntoIterator<Item = &'a Path>, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return None;
    }
    dirs.into_iter().map(|dir| dir.join(name)).find(|path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The question, in German. Pango/Qt markup characters are escaped because
/// the dialogs interpret markup and the text comes from the server.
pub fn question_text(request: &ConsentRequest) -> String {
    let mut text = format!(
        "Fernwartung: {} möchte {}.\n\n{}\nGrund: {}",
        plain(&request.admin, 200),
        kind_german(&request.kind),
        plain(&request.summary, 300),
        plain(&request.reason, 500),
    );
    if !request.ticket.is_empty() {
        text.push_str(&format!("\nTicket: {}", plain(&request.ticket, 100)));
    }
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The notice for consent "notify", in German, markup escaped.
pub fn notice_text(request: &ConsentRequest) -> String {
    let text = format!(
        "Fernwartung gestartet: {} wird {}.\n{}\nGrund: {}",
        plain(&request.admin, 200),
        kind_german(&request.kind),
        plain(&request.summary, 300),
        plain(&request.reason, 500),
    );
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// zenity (`--text`) and notify-send (the body) pass the text through
/// GLib's `g_strcompress`, which turns `\074` into `<` and drops lone
/// backslashes: after markup escaping, every backslash must be doubled,
/// or a reason like `\074b\076` brings markup back into the dialog.
pub fn glib_escaped(text: &str) -> String {
    text.replace('\\', "\\\\")
}

impl ConsentProvider for DesktopProvider {
    fn name(&self) -> &'static str {
        "desktop"
    }

    fn ask<'a>(
        &'a self,
        request: &'a ConsentRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, ConsentAnswer> {
        Box::pin(async move {
            let Some(session) = find_session().await else {
                return ConsentAnswer::NoProvider(
                    "nobody is logged in at the device to ask".into(),
                );
            };
            let Some(tools) = UserTools::find() else {
                return ConsentAnswer::NoProvider("runuser is not installed on the device".into());
            };
            let text = question_text(request);
            let command = if let Some(zenity) = system_tool("zenity") {
                as_user(
                    &tools,
                    &session,
                    &zenity,
                    &[
                        "--question".into(),
                        "--title=Fernwartung".into(),
                        format!("--text={}", glib_escaped(&text)),
                        "--ok-label=Erlauben".into(),
                        "--cancel-label=Ablehnen".into(),
                        format!("--timeout={}", timeout.as_secs().max(1)),
                    ],
                )
            } else if let Some(kdialog) = system_tool("kdialog") {
                as_user(
                    &tools,
                    &session,
                    &kdialog,
                    &[
                        "--title".into(),
                        "Fernwartung".into(),
                        "--yesno".into(),
                        text,
                    ],
                )
            } else {
                return ConsentAnswer::NoProvider(
                    "no dialog tool (zenity, kdialog) on the device".into(),
                );
            };
            // A little extra so zenity's own timeout (exit 5) comes first.
            match run_bounded(command, timeout + Duration::from_secs(2)).await {
                Ok(Some(status)) if status.success() => ConsentAnswer::Accepted,
                Ok(Some(status)) if status.code() == Some(5) => ConsentAnswer::NoAnswer,
                // zenity/kdialog: 1 = "Ablehnen" or closed window.
                Ok(Some(status)) if status.code() == Some(1) => ConsentAnswer::Declined,
                Ok(Some(status)) => {
                    tracing::warn!(%status, "consent dialog failed");
                    ConsentAnswer::NoProvider("the consent dialog could not be shown".into())
                }
                Ok(None) => ConsentAnswer::NoAnswer,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot start the consent dialog");
                    ConsentAnswer::NoProvider("the consent dialog could not be shown".into())
                }
            }
        })
    }

    fn notify<'a>(&'a self, request: &'a ConsentRequest) -> BoxFuture<'a, ()> {
        Box::pin(show_notice(request, notice_text(request)))
    }

    fn notify_end<'a>(&'a self, request: &'a ConsentRequest, why: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(show_notice(request, end_notice_text(request, why)))
    }
}

/// One desktop notification in the logged-in user's session (notify-send
/// by absolute path); best effort, logged when impossible.
async fn show_notice(request: &ConsentRequest, text: String) {
    let Some(session) = find_session().await else {
        tracing::info!(session = %request.session_id, "nobody logged in to notify");
        return;
    };
    let (Some(tools), Some(notify_send)) = (UserTools::find(), system_tool("notify-send")) else {
        tracing::info!(session = %request.session_id, "notify-send or runuser missing: session only logged");
        return;
    };
    let command = as_user(
        &tools,
        &session,
        &notify_send,
        &[
            "--app-name=schoolfleet".into(),
            "Fernwartung".into(),
            glib_escaped(&text),
        ],
    );
    if let Err(err) = run_bounded(command, NOTIFY_TIMEOUT).await {
        tracing::warn!(error = %err, "cannot show the session notice");
    }
}

/// The notice when a session ended (markup-escaped like [`notice_text`]).
pub fn end_notice_text(request: &ConsentRequest, why: &str) -> String {
    let text = format!(
        "Fernwartung beendet: {} ({}).\n{}",
        plain(&request.admin, 200),
        kind_german(&request.kind),
        plain(why, 300),
    );
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_programs_are_run_by_absolute_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = |name: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let runuser = fake("runuser", 0o755);
        fake("not-executable", 0o644);
        assert_eq!(tool_in([dir.path()], "runuser"), Some(runuser.clone()));
        assert_eq!(tool_in([dir.path()], "not-executable"), None);
        assert_eq!(tool_in([dir.path()], "../runuser"), None);
        // The real lookup never consults PATH: only the fixed directories.
        assert!(SYSTEM_DIRS.iter().all(|d| Path::new(d).is_absolute()));
        if let Some(sh) = system_tool("sh") {
            assert!(SYSTEM_DIRS.iter().any(|d| sh.starts_with(d)), "{sh:?}");
        }

        let tools = UserTools {
            runuser,
            env: PathBuf::from("/usr/bin/env"),
        };
        let session = GraphicalSession {
            user: "schueler".into(),
            uid: 1000,
            display: ":0".into(),
            kind: "x11".into(),
        };
        let command = as_user(
            &tools,
            &session,
            Path::new("/usr/bin/zenity"),
            &["--question".into()],
        );
        let command = command.as_std();
        assert!(Path::new(command.get_program()).is_absolute());
        let args: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&args[..4], ["-u", "schueler", "--", "/usr/bin/env"]);
        assert!(args.contains(&"/usr/bin/zenity".to_owned()), "{args:?}");
    }

    #[test]
    fn an_active_local_graphical_session_is_found() {
        let text =
            "Name=schueler\nUser=1000\nDisplay=:0\nType=x11\nClass=user\nActive=yes\nRemote=no\n";
        assert_eq!(
            parse_show_session(text),
            Some(GraphicalSession {
                user: "schueler".into(),
                uid: 1000,
                display: ":0".into(),
                kind: "x11".into(),
            })
        );
    }

    #[test]
    fn other_sessions_do_not_count() {
        let base = "Name=lehrer\nUser=1001\nDisplay=\nClass=user\nRemote=no\n";
        assert!(parse_show_session(&format!("{base}Type=tty\nActive=yes\n")).is_none());
        assert!(parse_show_session(&format!("{base}Type=wayland\nActive=no\n")).is_none());
        assert!(parse_show_session(&format!("{base}Type=wayland\nActive=yes\n")).is_some());
        let remote = "Name=x\nUser=1\nType=x11\nClass=user\nActive=yes\nRemote=yes\n";
        assert!(parse_show_session(remote).is_none());
        let greeter = "Name=gdm\nUser=120\nType=wayland\nClass=greeter\nActive=yes\nRemote=no\n";
        assert!(parse_show_session(greeter).is_none());
        let odd_name = "Name=-rf\nUser=1\nType=x11\nClass=user\nActive=yes\nRemote=no\n";
        assert!(parse_show_session(odd_name).is_none());
    }

    /// What GLib's g_strcompress makes of a string (octal, `\\`, and
    /// the single-letter escapes; any other escaped char stands for itself).
    fn g_strcompress(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some(d @ '0'..='7') => {
                    let mut value = d.to_digit(8).unwrap();
                    for _ in 0..2 {
                        match chars.peek().and_then(|c| c.to_digit(8)) {
                            Some(v) => {
                                value = value * 8 + v;
                                chars.next();
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(value).unwrap());
                }
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            }
        }
        out
    }

    #[test]
    fn backslash_escapes_cannot_bring_markup_back() {
        let request = ConsentRequest {
            kind: "exec".into(),
            admin: "user:anna".into(),
            reason: "\\074span size=\"1\"\\076 C:\\Temp\\".into(),
            ..Default::default()
        };
        for text in [question_text(&request), notice_text(&request)] {
            let shown = g_strcompress(&glib_escaped(&text));
            assert!(!shown.contains('<'), "{shown}");
            assert!(shown.contains("\\074span"), "{shown}");
            assert!(shown.contains("C:\\Temp\\"), "{shown}");
        }
    }

    #[test]
    fn the_end_notice_names_who_and_why_without_markup() {
        let request = ConsentRequest {
            kind: "shell".into(),
            admin: "user:<b>anna</b>".into(),
            ..Default::default()
        };
        let text = end_notice_text(&request, "exit 0 <i>");
        assert!(
            text.starts_with("Fernwartung beendet: user:&lt;b&gt;anna"),
            "{text}"
        );
        assert!(text.ends_with("exit 0 &lt;i&gt;"), "{text}");
        let shown = g_strcompress(&glib_escaped(&text));
        assert!(!shown.contains('<'), "{shown}");
    }

    #[test]
    fn the_question_escapes_markup_from_the_server() {
        let request = ConsentRequest {
            kind: "shell".into(),
            admin: "user:<b>anna</b>".into(),
            reason: "Drucker & Beamer\u{1b}[2J".into(),
            ..Default::default()
        };
        let text = question_text(&request);
        assert!(text.contains("&lt;b&gt;anna"), "{text}");
        assert!(text.contains("Drucker &amp; Beamer[2J"), "{text}");
        assert!(text.contains("Kommandozeile"), "{text}");
        assert!(!text.contains('\u{1b}'));
        let notice = notice_text(&request);
        assert!(
            notice.starts_with("Fernwartung gestartet: user:&lt;b&gt;anna"),
            "{notice}"
        );
    }
}
