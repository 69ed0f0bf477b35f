//! Exec channels: one command without a shell, stdin from `input`/`eof`,
//! stdout as `output` and stderr as `stderr`, then its exit status.

use std::process::Stdio;
use std::time::Duration;

use schoolfleet_proto::v1::device_frame::Body as DeviceBody;
use schoolfleet_proto::v1::{ChannelReady, DeviceFrame, EnvVar};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::channel::{ChannelIo, Finish, Input, frame};
use crate::os::process::{TreeChild, exit_code};

/// Ask the tree to stop first; kill it after this.
const TERM_GRACE: Duration = Duration::from_secs(2);
const CHUNK: usize = 64 * 1024;

/// Runs `argv` with `env` set on top of the agent's environment (checked
/// by `validate_spec`; values are never logged).
pub async fn run(argv: &[String], env: &[EnvVar], io: &mut ChannelIo) -> Finish {
    let Some(program) = argv.first() else {
        return Finish::failed("the command is empty");
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(crate::os::process::WORK_DIR)
        .env_remove("SCHOOLFLEET_AGENT_TOKEN")
        .envs(env.iter().map(|v| (&v.name, &v.value)));
    // Its own tree (process group, Job Object), so a cancel reaches
    // everything it started.
    let mut child = match TreeChild::spawn(command) {
        Ok(child) => child,
        // As a shell (and ssh) reports it: 127 not found, 126 not runnable.
        // The session worked; the command did not.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return not_started(io, 127, format!("command not found: {program}")).await;
        }
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return not_started(io, 126, format!("{program}: permission denied")).await;
        }
        Err(err) => return Finish::failed(format!("cannot start {program}: {err}")),
    };
    if !io.send(DeviceBody::Ready(ChannelReady::default())).await {
        child.terminate(TERM_GRACE).await;
        return Finish::Gone;
    }
    let stdout = child.take_stdout();
    let stderr = child.take_stderr();
    let mut readers = tokio::task::JoinSet::new();
    if let Some(stdout) = stdout {
        readers.spawn(pump(stdout, io.out.clone(), DeviceBody::Output));
    }
    if let Some(stderr) = stderr {
        readers.spawn(pump(stderr, io.out.clone(), DeviceBody::Stderr));
    }
    // stdin is written by its own task, so a command that does not read
    // its input cannot stall the channel.
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Vec<u8>>(super::channel::QUEUE);
    if let Some(mut stdin) = child.take_stdin() {
        tokio::spawn(async move {
            while let Some(data) = stdin_rx.recv().await {
                if stdin.write_all(&data).await.is_err() {
                    break;
                }
            }
        });
    }
    let mut stdin_tx = Some(stdin_tx);

    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            input = io.next_input() => match input {
                Input::Data(data) => {
                    if let Some(tx) = &stdin_tx {
                        tokio::select! {
                            sent = tx.send(data) => if sent.is_err() { stdin_tx = None },
                            _ = io.cancel.cancelled() => {}
                        }
                    }
                }
                Input::Eof => stdin_tx = None,
                Input::Resize(_) => {}
                other => {
                    child.terminate(TERM_GRACE).await;
                    return Finish::stopped(other);
                }
            }
        }
    };
    drop(stdin_tx);
    let code = match status {
        Ok(status) => exit_code(status),
        Err(err) => return Finish::failed(format!("cannot wait for {program}: {err}")),
    };
    // Both streams fully drained before `exit`; a leftover background
    // process holding them open is cut off when the channel is ended.
    loop {
        tokio::select! {
            joined = readers.join_next() => if joined.is_none() { break },
            input = io.next_input() => match input {
                Input::Data(_) | Input::Eof | Input::Resize(_) => {}
                other => {
                    child.kill_tree();
                    return Finish::stopped(other);
                }
            }
        }
    }
    Finish::Exit(code)
}

/// A command that could not start: the message on stderr, then `code`.
async fn not_started(io: &mut ChannelIo, code: i32, message: String) -> Finish {
    if !io.send(DeviceBody::Ready(ChannelReady::default())).await
        || !io
            .send(DeviceBody::Stderr(format!("{message}\n").into_bytes()))
            .await
    {
        return Finish::Gone;
    }
    Finish::Exit(code)
}

async fn pump(
    mut reader: impl AsyncRead + Unpin,
    out: mpsc::Sender<DeviceFrame>,
    wrap: fn(Vec<u8>) -> DeviceBody,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(frame(wrap(buf[..n].to_vec()))).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::session::channel::Stop;
    use schoolfleet_proto::v1::client_frame::Body as ClientBody;
    use schoolfleet_proto::v1::{ClientFrame, Eof};

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    /// Collects frames until the worker finished.
    async fn collect(rx: &mut mpsc::Receiver<DeviceFrame>) -> (Vec<u8>, Vec<u8>, bool) {
        let (mut out, mut err, mut ready) = (Vec::new(), Vec::new(), false);
        while let Some(f) = rx.recv().await {
            match f.body {
                Some(DeviceBody::Ready(_)) => ready = true,
                Some(DeviceBody::Output(d)) => out.extend(d),
                Some(DeviceBody::Stderr(d)) => err.extend(d),
                _ => {}
            }
        }
        (out, err, ready)
    }

    #[tokio::test]
    async fn both_streams_stdin_and_the_exit_code() {
        let (mut io, input, mut rx) = super::super::channel::test_pair(Stop::default());
        let script = "cat; echo to-stderr >&2; exit 3";
        let worker = tokio::spawn(async move {
            let finish = run(&argv(&["sh", "-c", script]), &[], &mut io).await;
            drop(io);
            finish
        });
        input
            .send(Ok(ClientFrame {
                body: Some(ClientBody::Input(b"hallo\n".to_vec())),
            }))
            .await
            .unwrap();
        input
            .send(Ok(ClientFrame {
                body: Some(ClientBody::Eof(Eof {})),
            }))
            .await
            .unwrap();
        let (out, err, ready) = collect(&mut rx).await;
        assert_eq!(worker.await.unwrap(), Finish::Exit(3));
        assert!(ready);
        assert_eq!(out, b"hallo\n");
        assert_eq!(err, b"to-stderr\n");
    }

    #[tokio::test]
    async fn the_variables_reach_the_command() {
        let (mut io, _input, mut rx) = super::super::channel::test_pair(Stop::default());
        let env = vec![EnvVar {
            name: "SF_SECRET".into(),
            value: "Wert mit Leerzeichen $HOME".into(),
        }];
        let worker = tokio::spawn(async move {
            let finish = run(
                &argv(&["sh", "-c", "printf '%s' \"$SF_SECRET\""]),
                &env,
                &mut io,
            )
            .await;
            drop(io);
            finish
        });
        let (out, _, _) = collect(&mut rx).await;
        assert_eq!(worker.await.unwrap(), Finish::Exit(0));
        assert_eq!(out, b"Wert mit Leerzeichen $HOME");
    }

    #[tokio::test]
    async fn killed_by_a_signal_is_128_plus_n() {
        let (mut io, _input, mut rx) = super::super::channel::test_pair(Stop::default());
        let worker = tokio::spawn(async move {
            let finish = run(&argv(&["sh", "-c", "kill -9 $$"]), &[], &mut io).await;
            drop(io);
            finish
        });
        collect(&mut rx).await;
        assert_eq!(worker.await.unwrap(), Finish::Exit(137));
    }

    #[tokio::test]
    async fn a_missing_command_exits_127_like_a_shell() {
        let (mut io, _input, mut rx) = super::super::channel::test_pair(Stop::default());
        let worker = tokio::spawn(async move {
            let finish = run(&argv(&["/nonexistent/tool", "x"]), &[], &mut io).await;
            drop(io);
            finish
        });
        let (out, err, ready) = collect(&mut rx).await;
        assert_eq!(worker.await.unwrap(), Finish::Exit(127));
        assert!(ready && out.is_empty());
        assert_eq!(err, b"command not found: /nonexistent/tool\n");
    }

    #[tokio::test]
    async fn a_command_that_cannot_run_exits_126() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-executable");
        std::fs::write(&file, "echo hi\n").unwrap();
        let (mut io, _input, mut rx) = super::super::channel::test_pair(Stop::default());
        let path = file.display().to_string();
        let worker = tokio::spawn(async move {
            let finish = run(&argv(&[&path]), &[], &mut io).await;
            drop(io);
            finish
        });
        let (_, err, _) = collect(&mut rx).await;
        assert_eq!(worker.await.unwrap(), Finish::Exit(126));
        assert!(String::from_utf8_lossy(&err).contains("permission denied"));
    }

    #[tokio::test]
    async fn cancel_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("sleep.pid");
        let cancel = Stop::default();
        let (mut io, _input, mut rx) = super::super::channel::test_pair(cancel.clone());
        // A grandchild sleep in the background, and the shell waiting on it.
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let worker = tokio::spawn(async move {
            let finish = run(&argv(&["sh", "-c", &script]), &[], &mut io).await;
            drop(io);
            finish
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(alive(pid), "sleep should run before the cancel");
        cancel.cancel();
        let finish = worker.await.unwrap();
        assert_eq!(finish, Finish::ended());
        collect(&mut rx).await;
        // SIGKILL is delivered asynchronously: give the kernel a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchild sleep survived the cancel"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Alive and not a zombie.
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
