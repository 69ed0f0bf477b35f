//! Shell channels: a login shell on a real PTY (portable-pty: a Unix PTY,
//! or ConPTY on Windows with PowerShell or cmd). PTY reads and writes
//! block, so they run on their own threads; the channel task only moves
//! frames and resizes.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[cfg(unix)]
use nix::sys::signal::Signal;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use schoolfleet_proto::v1::device_frame::Body as DeviceBody;
use schoolfleet_proto::v1::{ChannelReady, WindowSize};
use tokio::sync::{mpsc, oneshot};

use super::channel::{ChannelIo, Finish, Input, QUEUE, frame};
#[cfg(unix)]
use super::kill_group;

/// SIGHUP first (what a closing terminal sends); SIGKILL after this.
const HANGUP_GRACE: Duration = Duration::from_secs(2);
/// After the shell exited, how long its output may take to drain.
const DRAIN: Duration = Duration::from_secs(2);
const CHUNK: usize = 32 * 1024;
const CTRL_D: u8 = 0x04;
/// After the admin's input ended, ^D goes in once the output was quiet
/// this long.
const QUIET: Duration = Duration::from_millis(300);
#[cfg(unix)]
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// TERM from the spec when it is a plain name, else "xterm".
pub fn term_or_default(term: &str) -> &str {
    let plain = !term.is_empty()
        && term.len() <= 64
        && term
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if plain { term } else { "xterm" }
}

/// 80x24 when unset; never 0 and never absurdly large.
pub fn clamp_size(size: WindowSize) -> WindowSize {
    let clamp = |v: u32, default: u32| if v == 0 { default } else { v.min(1000) };
    WindowSize {
        cols: clamp(size.cols, 80),
        rows: clamp(size.rows, 24),
    }
}

fn pty_size(size: WindowSize) -> PtySize {
    let size = clamp_size(size);
    PtySize {
        rows: size.rows as u16,
        cols: size.cols as u16,
        pixel_width: 0,
        pixel_height: 0,
    }
}

pub async fn run(shell: &Path, term: &str, size: Option<WindowSize>, io: &mut ChannelIo) -> Finish {
    let pair = match native_pty_system().openpty(pty_size(size.unwrap_or_default())) {
        Ok(pair) => pair,
        Err(err) => return Finish::failed(format!("cannot open a terminal: {err}")),
    };
    let command = shell_command(shell, term);
    let child = match pair.slave.spawn_command(command) {
        Ok(child) => child,
        Err(err) => {
            return Finish::failed(format!("cannot start {}: {err}", shell.display()));
        }
    };
    // Only the shell may hold the slave side, so its exit ends our reads.
    drop(pair.slave);
    let master = pair.master;
    let mut tree = Tree::of(child.as_ref());
    let (exit_tx, mut exit_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = exit_tx.send(wait(child));
    });
    let (reader, writer) = match (master.try_clone_reader(), master.take_writer()) {
        (Ok(r), Ok(w)) => (r, w),
        (Err(err), _) | (_, Err(err)) => {
            tree.hang_up(&mut exit_rx).await;
            return Finish::failed(format!("cannot use the terminal: {err}"));
        }
    };
    if !io.send(DeviceBody::Ready(ChannelReady::default())).await {
        tree.hang_up(&mut exit_rx).await;
        return Finish::Gone;
    }
    let clock = std::time::Instant::now();
    let last_output = Arc::new(AtomicU64::new(0));
    let reader_done = spawn_reader(reader, io.out.clone(), clock, last_output.clone());
    let mut input_tx = Some(spawn_writer(writer));
    let mut input_ended = false;

    let code = loop {
        tokio::select! {
            code = &mut exit_rx => break code.unwrap_or(255),
            _ = tokio::time::sleep(QUIET), if input_ended => {
                let quiet_since = Duration::from_millis(last_output.load(Ordering::Relaxed));
                if clock.elapsed().saturating_sub(quiet_since) >= QUIET
                    && let Some(tx) = &input_tx
                {
                    let _ = tx.send(vec![CTRL_D]).await;
                }
            }
            input = io.next_input() => match input {
                Input::Data(data) => {
                    if let Some(tx) = input_tx.as_ref().filter(|_| !input_ended) {
                        tokio::select! {
                            sent = tx.send(data) => if sent.is_err() { input_tx = None },
                            _ = io.cancel.cancelled() => {}
                        }
                    }
                }
                Input::Resize(size) => {
                    if let Err(err) = master.resize(pty_size(size)) {
                        tracing::debug!(error = %err, "cannot resize the terminal");
                    }
                }
                // No more keystrokes (piped input ended): the shell should
                // end after what it was given. A ^D typed while a command
                // still runs is lost when readline takes the terminal back,
                // so ^D goes in whenever the output has gone quiet.
                Input::Eof => input_ended = true,
                other => {
                    drop(input_tx);
                    tree.hang_up(&mut exit_rx).await;
                    return Finish::stopped(other);
                }
            }
        }
    };
    // The shell is gone; let its output drain, but do not wait for
    // background jobs that still hold the terminal: hang them up as a
    // closing terminal would. The whole session, not the shell's group:
    // under job control each job has a group of its own, and a job left
    // running would keep the terminal (and our reader thread) forever.
    if tokio::time::timeout(DRAIN, reader_done).await.is_err() {
        tree.hang_up_leftovers();
    }
    drop(master);
    Finish::Exit(code)
}

/// A login shell with a clean environment, not the agent's.
#[cfg(unix)]
fn shell_command(shell: &Path, term: &str) -> CommandBuilder {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten();
    let home = user
        .as_ref()
        .map(|u| u.dir.clone())
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| "/".into());
    let name = user.map(|u| u.name).unwrap_or_else(|| "root".into());
    let mut command = CommandBuilder::new(shell);
    command.arg("-l");
    command.env_clear();
    command.env("TERM", term_or_default(term));
    command.env("HOME", &home);
    command.env("USER", &name);
    command.env("LOGNAME", &name);
    command.env("SHELL", shell);
    command.env("PATH", DEFAULT_PATH);
    command.env(
        "LANG",
        std::env::var("LANG").unwrap_or_else(|_| "C.UTF-8".into()),
    );
    command.cwd(&home);
    command
}

/// PowerShell (or cmd, with `--shell`) on ConPTY. The environment is the
/// service's (Windows needs SystemRoot and friends), minus the token.
#[cfg(windows)]
fn shell_command(shell: &Path, term: &str) -> CommandBuilder {
    let mut command = CommandBuilder::new(shell);
    let powershell = shell.file_name().is_some_and(|n| {
        n.to_string_lossy()
            .to_ascii_lowercase()
            .starts_with("powershell")
            || n.to_string_lossy().to_ascii_lowercase().starts_with("pwsh")
    });
    if powershell {
        command.arg("-NoLogo");
    }
    command.env_remove("SCHOOLFLEET_AGENT_TOKEN");
    command.env("TERM", term_or_default(term));
    command.cwd(crate::os::process::WORK_DIR);
    command
}

/// The shell's process tree: on Unix its session (portable-pty starts the
/// shell with setsid, so its pid is its group and its session); on Windows
/// the shell, whose ConPTY ends the console programs attached to it when
/// it closes.
#[cfg(unix)]
struct Tree(u32);

#[cfg(unix)]
impl Tree {
    fn of(child: &(dyn portable_pty::Child + Send + Sync)) -> Tree {
        Tree(child.process_id().unwrap_or(0))
    }

    async fn hang_up(&mut self, exit_rx: &mut oneshot::Receiver<i32>) {
        hang_up(self.0, exit_rx).await;
    }

    fn hang_up_leftovers(&mut self) {
        kill_group(self.0, Signal::SIGHUP);
        kill_session(self.0, Signal::SIGHUP);
    }
}

#[cfg(windows)]
struct Tree(Box<dyn portable_pty::ChildKiller + Send + Sync>);

#[cfg(windows)]
impl Tree {
    fn of(child: &(dyn portable_pty::Child + Send + Sync)) -> Tree {
        Tree(child.clone_killer())
    }

    async fn hang_up(&mut self, exit_rx: &mut oneshot::Receiver<i32>) {
        let _ = self.0.kill();
        let _ = tokio::time::timeout(HANGUP_GRACE, &mut *exit_rx).await;
    }

    /// Dropping the master closes the pseudoconsole, which ends the rest.
    fn hang_up_leftovers(&mut self) {}
}

fn wait(mut child: Box<dyn portable_pty::Child + Send + Sync>) -> i32 {
    // The unix child is a std Child: its status has the signal number.
    #[cfg(unix)]
    {
        let child_ref: &mut dyn portable_pty::Child = child.as_mut();
        if let Some(std_child) = child_ref.downcast_mut::<std::process::Child>() {
            return match std_child.wait() {
                Ok(status) => super::exit_code(status),
                Err(_) => 255,
            };
        }
    }
    match child.wait() {
        Ok(status) => status.exit_code() as i32,
        Err(_) => 255,
    }
}

#[cfg(unix)]
/// SIGHUP to the shell's group, then SIGKILL to whatever of its session
/// is still there after the grace period, so no orphaned shell stays
/// behind. The session, not just the group: an interactive shell puts
/// each background job into a process group of its own.
async fn hang_up(pgid: u32, exit_rx: &mut oneshot::Receiver<i32>) {
    kill_group(pgid, Signal::SIGHUP);
    let _ = tokio::time::timeout(HANGUP_GRACE, &mut *exit_rx).await;
    kill_group(pgid, Signal::SIGKILL);
    kill_session(pgid, Signal::SIGKILL);
}

#[cfg(unix)]
/// Signals every process whose session id is `sid` (the shell was started
/// with setsid, so its pid is the session id). Never the agent's own.
fn kill_session(sid: u32, signal: Signal) {
    let Ok(sid) = i32::try_from(sid) else { return };
    if sid <= 1 || nix::unistd::getsid(None).map(|own| own.as_raw()) == Ok(sid) {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if session_of(pid) == Some(sid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
}

#[cfg(unix)]
/// Field 6 of /proc/PID/stat (after the command name, which may contain
/// spaces and parentheses).
fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

fn spawn_reader(
    mut reader: Box<dyn Read + Send>,
    out: mpsc::Sender<schoolfleet_proto::v1::DeviceFrame>,
    clock: std::time::Instant,
    last_output: Arc<AtomicU64>,
) -> oneshot::Receiver<()> {
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    last_output.store(clock.elapsed().as_millis() as u64, Ordering::Relaxed);
                    // Blocks while the queue is full: backpressure.
                    if out
                        .blocking_send(frame(DeviceBody::Output(buf[..n].to_vec())))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                // EIO once the shell and its children closed the terminal.
                Err(_) => break,
            }
        }
        let _ = done_tx.send(());
    });
    done_rx
}

fn spawn_writer(mut writer: Box<dyn Write + Send>) -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    std::thread::spawn(move || {
        while let Some(data) = rx.blocking_recv() {
            if writer
                .write_all(&data)
                .and_then(|()| writer.flush())
                .is_err()
            {
                break;
            }
        }
    });
    tx
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::session::channel::Stop;
    use schoolfleet_proto::v1::ClientFrame;
    use schoolfleet_proto::v1::client_frame::Body as ClientBody;

    fn shell() -> std::path::PathBuf {
        if Path::new("/bin/bash").exists() {
            "/bin/bash".into()
        } else {
            "/bin/sh".into()
        }
    }

    async fn send(input: &mpsc::Sender<Result<ClientFrame, tonic::Status>>, body: ClientBody) {
        input
            .send(Ok(ClientFrame { body: Some(body) }))
            .await
            .unwrap();
    }

    #[test]
    fn term_and_size_are_sanitised() {
        assert_eq!(term_or_default("xterm-256color"), "xterm-256color");
        assert_eq!(term_or_default(""), "xterm");
        assert_eq!(term_or_default("xterm\u{1b}]0;x"), "xterm");
        assert_eq!(term_or_default("../../etc/x"), "xterm");
        let size = clamp_size(WindowSize {
            cols: 0,
            rows: 70000,
        });
        assert_eq!((size.cols, size.rows), (80, 1000));
    }

    #[tokio::test]
    async fn a_pty_shell_runs_echo_and_reports_its_exit() {
        let (mut io, input, mut rx) = super::super::channel::test_pair(Stop::default());
        let worker = tokio::spawn(async move {
            let size = Some(WindowSize {
                cols: 100,
                rows: 30,
            });
            let finish = run(&shell(), "xterm-256color", size, &mut io).await;
            drop(io);
            finish
        });
        // The marker is split so the echoed command line does not match.
        send(
            &input,
            ClientBody::Input(b"echo sf-$((40+2))-$TERM; stty size; exit 7\n".to_vec()),
        )
        .await;
        let mut output = Vec::new();
        let mut ready = false;
        while let Some(frame) = rx.recv().await {
            match frame.body {
                Some(DeviceBody::Ready(_)) => ready = true,
                Some(DeviceBody::Output(data)) => output.extend(data),
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&output);
        assert!(ready);
        assert!(text.contains("sf-42-xterm-256color"), "{text}");
        assert!(text.contains("30 100"), "{text}");
        assert_eq!(worker.await.unwrap(), Finish::Exit(7));
    }

    #[tokio::test]
    async fn piped_input_ends_with_eof_like_ctrl_d() {
        let (mut io, input, mut rx) = super::super::channel::test_pair(Stop::default());
        let worker = tokio::spawn(async move {
            let finish = run(&shell(), "dumb", None, &mut io).await;
            drop(io);
            finish
        });
        send(&input, ClientBody::Input(b"echo piped-$((6*7))\n".to_vec())).await;
        send(&input, ClientBody::Eof(schoolfleet_proto::v1::Eof {})).await;
        let mut output = Vec::new();
        let collect = async {
            while let Some(frame) = rx.recv().await {
                if let Some(DeviceBody::Output(data)) = frame.body {
                    output.extend(data);
                }
            }
        };
        let ended = tokio::time::timeout(Duration::from_secs(10), collect).await;
        assert!(
            ended.is_ok(),
            "the shell did not end at eof: {}",
            String::from_utf8_lossy(&output)
        );
        let finish = tokio::time::timeout(Duration::from_secs(10), worker)
            .await
            .expect("the shell did not end at eof")
            .unwrap();
        assert_eq!(finish, Finish::Exit(0));
        assert!(String::from_utf8_lossy(&output).contains("piped-42"));
    }

    #[tokio::test]
    async fn a_closed_channel_hangs_up_the_shell_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let (mut io, input, mut rx) = super::super::channel::test_pair(Stop::default());
        let worker = tokio::spawn(async move {
            let finish = run(&shell(), "xterm", None, &mut io).await;
            drop(io);
            finish
        });
        // A background job (its own process group under job control) that
        // ignores SIGHUP: only the session-wide SIGKILL ends it.
        let line = format!("trap '' HUP; sleep 300 & echo $! > {}\n", pidfile.display());
        send(&input, ClientBody::Input(line.into_bytes())).await;
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let pid: i32 = loop {
            if let Ok(text) = std::fs::read_to_string(&pidfile)
                && let Ok(pid) = text.trim().parse()
            {
                break pid;
            }
            assert!(std::time::Instant::now() < deadline, "no background sleep");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // The admin side goes away without exit.
        drop(input);
        assert_eq!(worker.await.unwrap(), Finish::Gone);
        drain.await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "background sleep survived"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn jobs_left_running_at_exit_are_hung_up() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let (mut io, input, mut rx) = super::super::channel::test_pair(Stop::default());
        let worker = tokio::spawn(async move {
            let finish = run(&shell(), "xterm", None, &mut io).await;
            drop(io);
            finish
        });
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        // A background job (its own process group under job control) still
        // running when the shell exits.
        let line = format!("sleep 300 & echo $! > {}; exit 3\n", pidfile.display());
        send(&input, ClientBody::Input(line.into_bytes())).await;
        let finish = tokio::time::timeout(Duration::from_secs(15), worker)
            .await
            .expect("the shell channel did not end")
            .unwrap();
        assert_eq!(finish, Finish::Exit(3));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "the background job outlived the shell session"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(input);
        drain.await.unwrap();
    }

    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }
}
