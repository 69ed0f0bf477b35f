//! Remote support with real processes: the server, agents on this machine
//! and the admin CLI. Shell on a real PTY, exec with both streams and a
//! 100 MB output, port forwarding with 50 concurrent connections, file
//! copy, fan-out, consent, authorisation, the audit chain, and what happens
//! when either end is killed mid-session.

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schoolfleet_e2e::*;
use sha2::{Digest, Sha256};

const REASON: &str = "Drucker im Raum 101 prüfen";

/// termios local flags on Linux (portable-pty hands out its own nix's
/// types, so compare bits).
const ICANON: u32 = 0o2;
const ECHO: u32 = 0o10;

/// Waits for a child with a deadline; kills it and fails when it hangs.
fn wait_with_deadline(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A remote `sleep` started by the CLI: the CLI, its collected stderr,
/// and the sleep's argument, unique to this run.
struct RemoteSleep {
    cli: Child,
    messages: Arc<Mutex<Vec<u8>>>,
    marker: String,
}

impl RemoteSleep {
    fn pids(&self) -> Vec<i32> {
        pids_with_cmdline(&["sleep", &self.marker])
    }
}

/// Starts `schoolfleet exec DEVICE -- sleep MARKER` and waits until the
/// sleep runs on the device.
fn start_remote_sleep(fleet: &Fleet) -> RemoteSleep {
    let marker = unique_sleep_seconds();
    let mut exec = fleet
        .cli
        .command(&[
            "exec",
            fleet.device(),
            "--reason",
            REASON,
            "--",
            "sleep",
            &marker,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let messages = collect(exec.stderr.take().unwrap());
    let sleep = RemoteSleep {
        cli: exec,
        messages,
        marker,
    };
    wait_until(Duration::from_secs(30), "the sleep to run", || {
        !sleep.pids().is_empty()
    });
    sleep
}

fn sessions(cli: &CliRunner) -> Vec<serde_json::Value> {
    cli.json(&["sessions", "list"]).as_array().unwrap().clone()
}

fn audit_actions(cli: &CliRunner) -> Vec<serde_json::Value> {
    cli.json(&["audit", "list", "--action", "session.", "--limit", "200"])
        .as_array()
        .unwrap()
        .clone()
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for 100 MB.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn shell_on_a_real_pty_runs_commands_resizes_and_restores_the_terminal() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let fleet = Fleet::start(1, &[], &[]);
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut command = CommandBuilder::new(bin("schoolfleet"));
    command.args(["shell", fleet.device(), "--reason", REASON]);
    for (key, _) in std::env::vars() {
        if key.starts_with("SCHOOLFLEET_") {
            command.env_remove(key);
        }
    }
    for (key, value) in fleet.cli.env_vars() {
        command.env(key, value);
    }
    command.env("TERM", "xterm");
    let mut cli = pty.slave.spawn_command(command).unwrap();
    drop(pty.slave);
    let output = collect(pty.master.try_clone_reader().unwrap());
    let mut keyboard = pty.master.take_writer().unwrap();

    // The product is computed remotely, so the echo of the typed line
    // cannot satisfy the check.
    keyboard.write_all(b"echo sf-$((6*7))-ok\r").unwrap();
    wait_for_output(&output, "sf-42-ok", "the remote shell's output");
    let termios = pty
        .master
        .get_termios()
        .expect("termios of the admin's PTY");
    assert!(
        termios.local_flags.bits() & ICANON == 0,
        "the admin's terminal is not in raw mode during the session"
    );

    // A resize of the admin's terminal reaches the remote PTY.
    pty.master
        .resize(PtySize {
            rows: 41,
            cols: 101,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    // No pause: the CLI sends the resize before keystrokes read after it.
    keyboard.write_all(b"stty size\r").unwrap();
    wait_for_output(&output, "41 101", "the resized remote terminal");

    keyboard.write_all(b"exit 3\r").unwrap();
    let status = wait_with_deadline_pty(&mut cli);
    assert_eq!(status, 3, "output:\n{}", text_of(&output));
    let termios = pty.master.get_termios().expect("termios after the session");
    let flags = termios.local_flags.bits();
    assert!(
        flags & ICANON != 0 && flags & ECHO != 0,
        "the admin's terminal was not restored: {flags:#o}"
    );

    // The session is on record and recorded in asciicast v2.
    let listed = sessions(&fleet.cli);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let session = &listed[0];
    assert_eq!(session["kind"], "shell", "{session}");
    assert_eq!(session["state"], "ended", "{session}");
    assert_eq!(session["exit_code"], 3, "{session}");
    assert_eq!(session["reason"], REASON, "{session}");
    let id = session["id"].as_str().unwrap();
    let cast = fleet.cli.ok(&[
        "sessions", "play", id, "--reason", "Nachweis", "--cast", "-",
    ]);
    let mut lines = cast.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2, "{header}");
    assert_eq!(header["width"], 80, "{header}");
    let events: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let printed: String = events
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert!(printed.contains("sf-42-ok"), "{printed}");
    // The recording is sealed at rest: neither the output nor the echo of
    // the typed line is in the database file or its WAL.
    for file in ["schoolfleet.db", "schoolfleet.db-wal"] {
        let path = fleet.server.data_dir.join(file);
        let bytes = std::fs::read(&path).unwrap_or_default();
        for marker in ["sf-42-ok", "sf-$((6*7))-ok"] {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "{marker} is readable in {}",
                path.display()
            );
        }
    }
    assert!(
        fleet.server.data_dir.join("schoolfleet.db").exists(),
        "the test looks at the right file"
    );
    assert!(
        events.iter().any(|e| e[1] == "r" && e[2] == "101x41"),
        "no resize event in the recording"
    );
    // Keystrokes are not recorded (passwords), only what the shell printed.
    assert!(!events.iter().any(|e| e[1] == "i"), "input was recorded");

    // asciinema itself reads the file (CI installs it; elsewhere the
    // check runs where asciinema is present).
    let cast_file = fleet.dir.path().join("session.cast");
    std::fs::write(&cast_file, &cast).unwrap();
    // asciinema 2 reads /dev/tty, so it gets a terminal of its own.
    let found = std::process::Command::new("asciinema")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        let replay = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 80,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut command = CommandBuilder::new("asciinema");
        command.arg("cat");
        command.arg(&cast_file);
        let mut player = replay.slave.spawn_command(command).unwrap();
        drop(replay.slave);
        let played = collect(replay.master.try_clone_reader().unwrap());
        wait_for_output(&played, "sf-42-ok", "asciinema to replay the recording");
        assert_eq!(
            wait_with_deadline_pty(&mut player),
            0,
            "{}",
            text_of(&played)
        );
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "asciinema is missing on CI (.ci/run installs it)"
        );
    }
}

#[test]
fn an_admin_ends_a_running_session() {
    let fleet = Fleet::start(1, &[], &[]);
    let mut sleep = start_remote_sleep(&fleet);
    let live = fleet.cli.json(&["sessions", "list", "--live"]);
    assert_eq!(live.as_array().unwrap().len(), 1, "{live}");
    let id = live[0]["id"].as_str().unwrap();
    let said = fleet
        .cli
        .ok(&["sessions", "end", id, "--reason", "Pause beendet"]);
    // Read-your-writes: the very next read shows the end and its reason.
    let shown = fleet.cli.json(&["sessions", "show", id]);
    assert_eq!(shown["state"], "ended", "{said}\n{shown}");
    assert!(
        shown["end_reason"]
            .as_str()
            .unwrap()
            .contains("Pause beendet"),
        "{shown}"
    );
    let status = wait_with_deadline(
        &mut sleep.cli,
        Duration::from_secs(15),
        "exec after sessions end",
    );
    assert_eq!(status.code(), Some(255));
    let text = text_of(&sleep.messages);
    assert!(text.contains("Pause beendet"), "{text}");
    wait_until(Duration::from_secs(10), "the sleep to be stopped", || {
        sleep.pids().is_empty()
    });
    let ends: Vec<_> = audit_actions(&fleet.cli)
        .into_iter()
        .filter(|e| e["action"] == "session.end" && e["target"].as_str().unwrap().contains(id))
        .collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
}

fn wait_with_deadline_pty(child: &mut Box<dyn portable_pty::Child + Send + Sync>) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.exit_code();
        }
        assert!(Instant::now() < deadline, "the shell CLI did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn exec_returns_both_streams_the_exit_code_and_100_mb_intact() {
    let fleet = Fleet::start(1, &[], &[]);
    let out = fleet.cli.run(&[
        "exec",
        fleet.device(),
        "--reason",
        REASON,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"));

    // A program the device does not have: 127, as ssh answers, not 255.
    let out = fleet.cli.run(&[
        "exec",
        fleet.device(),
        "--reason",
        REASON,
        "--",
        "sf-no-such-program",
    ]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(127), "{text}");
    assert!(
        text.contains("command not found: sf-no-such-program"),
        "{text}"
    );

    // A reader that goes away early (`| head`) ends the session quietly
    // with the SIGPIPE status, and the remote command with it.
    let marker = unique_marker("sf-pipe");
    let mut piped = fleet
        .cli
        .command(&[
            "exec",
            fleet.device(),
            "--reason",
            REASON,
            "--",
            "yes",
            &marker,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = vec![0u8; marker.len()];
    piped
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(first, marker.as_bytes());
    drop(piped.stdout.take());
    let messages = collect(piped.stderr.take().unwrap());
    let status = wait_with_deadline(
        &mut piped,
        Duration::from_secs(20),
        "exec with a closed pipe",
    );
    assert_eq!(status.code(), Some(141), "{}", text_of(&messages));
    assert!(
        !text_of(&messages).contains("error"),
        "{}",
        text_of(&messages)
    );
    wait_until(Duration::from_secs(10), "the remote `yes` to stop", || {
        pids_with_cmdline(&["yes", &marker]).is_empty()
    });

    let missing = fleet.cli.run(&[
        "exec",
        fleet.device(),
        "--reason",
        REASON,
        "--",
        "/nonexistent/programm",
    ]);
    // A missing program is the command's failure, not the session's: 127.
    assert_eq!(
        missing.status.code(),
        Some(127),
        "{}",
        output_text(&missing)
    );
    let text = output_text(&missing);
    assert!(text.contains("/nonexistent/programm"), "{text}");

    // 100 MB of stdout through agent, server and CLI, checked by SHA-256.
    let data = pattern(100_000_000, 42);
    let file = fleet.dir.path().join("big.bin");
    std::fs::write(&file, &data).unwrap();
    let expected = Sha256::digest(&data);
    drop(data);
    let big = fleet.cli.run(&[
        "exec",
        fleet.device(),
        "--reason",
        REASON,
        "--",
        "cat",
        file.to_str().unwrap(),
    ]);
    assert!(
        big.status.success(),
        "{}",
        String::from_utf8_lossy(&big.stderr)
    );
    assert_eq!(big.stdout.len(), 100_000_000);
    assert_eq!(
        Sha256::digest(&big.stdout),
        expected,
        "the 100 MB output changed"
    );

    let listed = sessions(&fleet.cli);
    let cat = listed
        .iter()
        .find(|s| s["summary"].as_str().unwrap_or("").starts_with("cat "))
        .expect("the cat session is listed");
    assert!(
        cat["bytes_from_device"].as_u64().unwrap() >= 100_000_000,
        "{cat}"
    );
}

#[test]
fn forward_carries_50_concurrent_connections_byte_exact() {
    let fleet = Fleet::start(1, &[], &[]);
    let echo = echo_server();
    let local = free_port();
    let spec = format!("{local}:127.0.0.1:{echo}");
    let mut forward = fleet
        .cli
        .command(&["forward", fleet.device(), &spec, "--reason", REASON])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let messages = collect(forward.stderr.take().unwrap());
    wait_for_output(&messages, "Forwarding", "the forward to listen");

    const CONNECTIONS: usize = 50;
    const BYTES: usize = 512 * 1024;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|n| {
            std::thread::spawn(move || {
                let payload = pattern(BYTES, n as u64 + 1);
                let received = echo_roundtrip(local, &payload);
                assert_eq!(received.len(), payload.len(), "connection {n} length");
                assert!(received == payload, "connection {n} bytes differ");
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a forwarded connection failed");
    }

    // Ending the CLI ends the session; its byte counts are on record.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(forward.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_with_deadline(
        &mut forward,
        Duration::from_secs(15),
        "forward after SIGTERM",
    );
    wait_until(
        Duration::from_secs(15),
        "the forward session to end",
        || sessions(&fleet.cli)[0]["state"] == "ended",
    );
    let session = &sessions(&fleet.cli)[0];
    assert_eq!(session["kind"], "forward", "{session}");
    let total = (CONNECTIONS * BYTES) as u64;
    assert!(
        session["bytes_to_device"].as_u64().unwrap() >= total,
        "{session}"
    );
    assert!(
        session["bytes_from_device"].as_u64().unwrap() >= total,
        "{session}"
    );
    assert!(
        session["channels"].as_u64().unwrap() >= CONNECTIONS as u64,
        "{session}"
    );
}

#[test]
fn copy_uploads_and_downloads_checked_and_refuses_paths_outside_the_roots() {
    let fleet = Fleet::start(
        1,
        &[("SCHOOLFLEET_SESSIONS__MAX_FILE_BYTES", "4194304")],
        &[],
    );
    let local = fleet.dir.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    // The "device" is this machine: its transfer roots include /tmp.
    let remote_dir = tempfile::tempdir_in("/tmp").unwrap();
    let data = pattern(3 * 1024 * 1024 + 7, 9);
    std::fs::write(local.join("treiber.bin"), &data).unwrap();

    let remote = remote_dir.path().join("treiber.bin");
    let target = format!("{}:{}", fleet.device(), remote.display());
    fleet.cli.ok(&[
        "cp",
        "--reason",
        REASON,
        local.join("treiber.bin").to_str().unwrap(),
        &target,
    ]);
    assert!(
        std::fs::read(&remote).unwrap() == data,
        "upload changed the bytes"
    );

    let back = local.join("zurueck.bin");
    fleet
        .cli
        .ok(&["cp", "--reason", REASON, &target, back.to_str().unwrap()]);
    assert!(
        std::fs::read(&back).unwrap() == data,
        "download changed the bytes"
    );
    // Both copies say how they ended: complete, not "admin side disconnected".
    let copies: Vec<_> = sessions(&fleet.cli)
        .into_iter()
        .filter(|s| s["kind"] == "cp")
        .collect();
    assert_eq!(copies.len(), 2, "{copies:?}");
    for copy in &copies {
        assert_eq!(copy["end_reason"], "copy complete", "{copy}");
    }
    assert!(
        std::fs::read_dir(&local).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".sfpart")),
        "a partial file was left behind"
    );

    // Outside the transfer roots, also through `..` and through a symlink.
    let link = remote_dir.path().join("etc-link");
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    for path in [
        "/etc/passwd".to_owned(),
        format!("{}/../../etc/passwd", remote_dir.path().display()),
        format!("{}/passwd", link.display()),
    ] {
        let out = fleet.cli.run(&[
            "cp",
            "--reason",
            REASON,
            &format!("{}:{path}", fleet.device()),
            local.join("passwd").to_str().unwrap(),
        ]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{path} was copied: {text}");
        assert!(text.contains("transfer roots"), "{path}: {text}");
        assert!(!local.join("passwd").exists());
    }

    // Above the size limit: refused before anything is sent.
    std::fs::write(local.join("gross.bin"), pattern(5 * 1024 * 1024, 3)).unwrap();
    let out = fleet.cli.run(&[
        "cp",
        "--reason",
        REASON,
        local.join("gross.bin").to_str().unwrap(),
        &format!(
            "{}:{}/gross.bin",
            fleet.device(),
            remote_dir.path().display()
        ),
    ]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("limit"), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(remote_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        leftovers.iter().all(|n| !n.contains("gross")),
        "{leftovers:?}"
    );
}

#[test]
fn fan_out_reports_success_failure_and_the_offline_device() {
    let mut fleet = Fleet::start(3, &[], &[]);
    fleet.agents[2].stop();
    let offline = fleet.device_ids[2].clone();
    let started = Instant::now();
    let out = fleet.cli.run(&[
        "-o",
        "json",
        "exec",
        "--school",
        "kus012",
        "--timeout",
        "20s",
        "--reason",
        REASON,
        "--",
        "sh",
        "-c",
        "echo hallo",
    ]);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)));
    assert_eq!(results.len(), 3, "{results:?}");
    for result in &results {
        let device = result["device_id"].as_str().unwrap();
        if device == offline {
            assert_eq!(result["result"], "offline", "{result}");
        } else {
            assert_eq!(result["result"], "ok", "{result}");
            assert_eq!(result["stdout"], "hallo\n", "{result}");
        }
    }

    // A failing command counts as failed, with its exit code.
    let out = fleet.cli.run(&[
        "-o",
        "json",
        "exec",
        "--school",
        "kus012",
        "--class",
        "schueler-pc",
        "--reason",
        REASON,
        "--",
        "sh",
        "-c",
        "exit 4",
    ]);
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let failed = results.iter().filter(|r| r["result"] == "exit 4").count();
    assert_eq!(failed, 2, "{results:?}");
}

/// A consent script that answers from a file: "yes", "no", anything else
/// means nobody answers. It logs what the local user was shown.
fn consent_script(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("consent.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo \"$SCHOOLFLEET_CONSENT_MODE|$SCHOOLFLEET_ADMIN|$SCHOOLFLEET_REASON|$SCHOOLFLEET_SESSION_KIND\" >> {log}\n\
             case \"$(cat {answer})\" in\n  yes) exit 0 ;;\n  no) exit 1 ;;\n  *) sleep 60 ;;\nesac\n",
            log = dir.join("consent.log").display(),
            answer = dir.join("answer").display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn consent_accept_refuse_no_answer_and_the_local_user_ends_a_session() {
    let scripts = tempfile::tempdir().unwrap();
    let script = consent_script(scripts.path());
    let fleet = Fleet::start(
        1,
        &[("SCHOOLFLEET_SESSIONS__CONSENT_TIMEOUT", "2s")],
        &[
            "--consent-provider",
            "command",
            "--consent-command",
            script.to_str().unwrap(),
        ],
    );
    fleet
        .cli
        .ok(&["consent", "set", "--school", "kus012", "--mode", "prompt"]);
    let exec = |words: &[&str]| {
        let mut args = vec!["exec", fleet.device(), "--reason", REASON, "--"];
        args.extend_from_slice(words);
        fleet.cli.run(&args)
    };

    std::fs::write(scripts.path().join("answer"), "yes").unwrap();
    let out = exec(&["echo", "angenommen"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "angenommen\n");
    let shown = std::fs::read_to_string(scripts.path().join("consent.log")).unwrap();
    assert!(
        shown.contains(&format!("prompt|user:admin|{REASON}|exec")),
        "{shown}"
    );

    std::fs::write(scripts.path().join("answer"), "no").unwrap();
    let out = exec(&["echo", "abgelehnt"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(255), "{text}");
    assert!(text.contains("declined"), "{text}");
    assert!(!text.contains("abgelehnt\n"), "the command ran: {text}");

    std::fs::write(scripts.path().join("answer"), "").unwrap();
    let started = Instant::now();
    let out = exec(&["echo", "keine-antwort"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(255), "{text}");
    assert!(text.contains("no answer"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(30));

    let denied: Vec<_> = audit_actions(&fleet.cli)
        .into_iter()
        .filter(|e| e["action"] == "session.denied")
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");

    // The local user ends a running session at the device.
    std::fs::write(scripts.path().join("answer"), "yes").unwrap();
    let mut long = start_remote_sleep(&fleet);
    let agent = &fleet.agents[0];
    let listed = agent.run(&["sessions", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["reason"], REASON, "{listed}");
    let ended = agent.run(&["sessions", "end"]);
    assert!(ended.status.success(), "{}", output_text(&ended));
    let status = wait_with_deadline(
        &mut long.cli,
        Duration::from_secs(15),
        "exec after local end",
    );
    assert_eq!(status.code(), Some(255));
    let told = text_of(&long.messages);
    assert!(told.contains("local user"), "{told}");
    // The admin was told whom the device asks, by host name (the agents
    // here all run on this machine).
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        told.contains(&format!(
            "Waiting for the user at {} to accept",
            hostname.trim()
        )),
        "{told}"
    );
    wait_until(Duration::from_secs(10), "the sleep to be stopped", || {
        long.pids().is_empty()
    });
}

#[test]
fn capabilities_and_tenants_are_enforced_and_refusals_audited() {
    let fleet = Fleet::start(1, &[], &[]);
    let echo = echo_server();
    let technician = fleet.cli.user(
        "t.schmitt",
        "technician@county:kus",
        &["--remote", "shell,exec,cp"],
    );
    let out = technician.run(&["exec", fleet.device(), "--reason", REASON, "--", "true"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let mut forward = technician
        .command(&[
            "forward",
            fleet.device(),
            &format!("0:127.0.0.1:{echo}"),
            "--reason",
            REASON,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = {
        let messages = collect(forward.stderr.take().unwrap());
        let status = wait_with_deadline(&mut forward, Duration::from_secs(30), "refused forward");
        assert!(!status.success());
        text_of(&messages)
    };
    assert!(text.to_lowercase().contains("permission"), "{text}");

    fleet
        .cli
        .ok(&["county", "add", "kl", "--name", "Landkreis Kaiserslautern"]);
    let other_admin = fleet.cli.user("kl.admin", "admin@county:kl", &[]);
    for kind in [
        vec!["exec", fleet.device(), "--reason", REASON, "--", "true"],
        vec!["shell", fleet.device(), "--reason", REASON],
    ] {
        let out = other_admin.run(&kind);
        let text = output_text(&out);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("not found"), "{text}");
    }

    let denied: Vec<_> = audit_actions(&fleet.cli)
        .into_iter()
        .filter(|e| e["action"] == "session.denied")
        .collect();
    let by = |actor: &str| denied.iter().filter(|e| e["actor"] == actor).count();
    assert_eq!(by("user:t.schmitt"), 1, "{denied:?}");
    assert_eq!(by("user:kl.admin"), 2, "{denied:?}");
}

#[test]
fn editing_one_audit_entry_breaks_the_chain() {
    let fleet = Fleet::start(1, &[], &[]);
    fleet
        .cli
        .ok(&["exec", fleet.device(), "--reason", REASON, "--", "true"]);
    let intact = fleet.cli.run(&["audit", "verify"]);
    assert!(intact.status.success(), "{}", output_text(&intact));

    let entries = fleet.cli.json(&["audit", "list", "--limit", "500"]);
    let target = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "session.start")
        .expect("a session.start entry");
    let seq = target["seq"].as_u64().unwrap();
    let database = fleet.server.data_dir.join("schoolfleet.db");
    // Edit the stored entry behind the server's back, as an attacker with
    // access to the database file would.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
            .await
            .unwrap();
        let changed = sqlx::query("UPDATE audit_events SET details = 'harmlos' WHERE seq = $1")
            .bind(seq as i64)
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(changed.rows_affected(), 1);
        pool.close().await;
    });

    let broken = fleet.cli.run(&["audit", "verify"]);
    let text = output_text(&broken);
    assert_eq!(broken.status.code(), Some(1), "{text}");
    assert!(text.contains(&seq.to_string()), "{text}");
}

#[test]
fn killing_the_agent_ends_the_admin_side_with_a_message() {
    let mut fleet = Fleet::start(1, &[], &[]);
    let mut sleep = start_remote_sleep(&fleet);
    fleet.agents[0].kill();
    let status = wait_with_deadline(
        &mut sleep.cli,
        Duration::from_secs(20),
        "exec after agent kill",
    );
    assert_eq!(status.code(), Some(255));
    let text = text_of(&sleep.messages);
    assert!(text.contains("lost the connection"), "{text}");
    // The agent had no chance to stop its child; a service manager would
    // (KillMode=control-group). Clean up here.
    for pid in sleep.pids() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn killing_the_cli_ends_the_shell_and_the_command_on_the_device() {
    let fleet = Fleet::start(1, &[], &[]);

    // A shell without a TTY (stdin is a pipe): its pid, then kill -9 the CLI.
    let mut shell = fleet
        .cli
        .command(&["shell", fleet.device(), "--reason", REASON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let output = collect(shell.stdout.take().unwrap());
    shell
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"echo shell-pid=$$.\n")
        .unwrap();
    // The typed line is echoed too ("$$."), so wait for digits.
    let shell_pid = || {
        text_of(&output)
            .split("shell-pid=")
            .filter_map(|rest| rest.split('.').next()?.parse::<i32>().ok())
            .next()
    };
    wait_until(Duration::from_secs(30), "the remote shell's pid", || {
        shell_pid().is_some()
    });
    let pid = shell_pid().unwrap();
    assert!(process_alive(pid));
    shell.kill().unwrap();
    shell.wait().unwrap();
    wait_until(Duration::from_secs(15), "the remote shell to end", || {
        !process_alive(pid)
    });

    // The same for exec.
    let mut sleep = start_remote_sleep(&fleet);
    sleep.cli.kill().unwrap();
    sleep.cli.wait().unwrap();
    wait_until(Duration::from_secs(15), "the sleep to be stopped", || {
        sleep.pids().is_empty()
    });
    wait_until(Duration::from_secs(15), "both sessions to end", || {
        sessions(&fleet.cli).iter().all(|s| s["state"] == "ended")
    });
}

/// A session can be quiet for long; the agent's stream under it must not
/// be dropped meanwhile (heartbeats follow the server's interval from the
/// first one on).
#[test]
fn an_idle_agent_keeps_its_stream_past_the_servers_idle_limit() {
    // Heartbeats every second: the server drops a stream silent for 8 s.
    let fleet = Fleet::start(1, &[], &[]);
    std::thread::sleep(Duration::from_secs(10));
    let server_log = fleet.server.log();
    assert!(!server_log.contains("idle timeout"), "{server_log}");
    let agent_log = fleet.agents[0].log();
    assert_eq!(
        agent_log.matches("connected to server").count(),
        1,
        "{agent_log}"
    );
}

/// A session started for a ticket shows in that ticket's timeline, with
/// its reason, end and exit code (not its command line).
#[test]
fn a_session_started_for_a_ticket_is_in_its_timeline() {
    let fleet = Fleet::start(1, &[], &[]);
    let created = fleet.cli.json(&[
        "ticket",
        "new",
        "Drucker druckt nicht",
        "--device",
        fleet.device(),
    ]);
    let key = created["key"].as_str().unwrap().to_owned();
    let out = fleet.cli.run(&[
        "exec",
        fleet.device(),
        "--reason",
        "Druckerwarteschlange prüfen",
        "--ticket",
        &key,
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    let shown = fleet.cli.json(&["ticket", "show", &key]);
    let sessions: Vec<_> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "session")
        .collect();
    assert_eq!(sessions.len(), 1, "{shown}");
    let text = sessions[0]["text"].as_str().unwrap();
    assert!(text.contains("Druckerwarteschlange prüfen"), "{text}");
    assert!(text.contains("exit 3"), "{text}");
    assert!(text.contains("ended"), "{text}");
    assert!(
        !text.contains("exit 3\""),
        "the command line leaked: {text}"
    );
}
