//! The README's first command, `packaging/local-demo.sh`, run as a new
//! user would: with the binaries of this build (no release build), its
//! data in a temporary directory and its CLI profile in another.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schoolfleet_e2e::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/local-demo.sh")
}

/// The demo on `port`, with data under `home` and the binaries next to
/// this test. It runs in a process group of its own, so the test can stop
/// the script and everything it started at once.
fn demo(port: u16, home: &Path) -> Command {
    let bin_dir = bin("schoolfleet-server").parent().unwrap().to_owned();
    let mut command = clean_command(Path::new("bash"));
    command
        .arg(script())
        .env("SCHOOLFLEET_DEMO_PORT", port.to_string())
        .env("SCHOOLFLEET_DEMO_DIR", home.join("demo"))
        .env("SCHOOLFLEET_DEMO_BIN", bin_dir)
        .env("SCHOOLFLEET_CONFIG_DIR", home.join("cli"))
        .env("HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    command
}

/// Collects a pipe's lines in the background.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

/// Stops the script and its children (server, agent) on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.0.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.0.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_refuses_a_port_that_another_program_holds() {
    // Another program holds the port and answers on it.
    let foreign = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = foreign.local_addr().unwrap().port();
    let home = tempfile::tempdir().unwrap();

    let mut child = Running(demo(port, home.path()).spawn().unwrap());
    let stderr = lines_of(child.0.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(100));
    let said = stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("port {port}")), "{said}");
    assert!(said.contains("SCHOOLFLEET_DEMO_PORT"), "{said}");
    // Nothing was started, and no CLI profile points at the foreign port.
    assert!(!home.path().join("demo/server.log").exists());
    assert!(!home.path().join("cli").exists());
}

#[test]
fn the_demo_runs_server_and_agent_and_the_cli_works_against_them() {
    let port = free_port();
    let home = tempfile::tempdir().unwrap();
    let mut child = Running(demo(port, home.path()).spawn().unwrap());
    let stdout = lines_of(child.0.stdout.take().unwrap());
    let stderr = lines_of(child.0.stderr.take().unwrap());
    wait_until(Duration::from_secs(120), "the demo to be running", || {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!(
                "the demo exited with {status}:\n{}\n{}",
                stdout.lock().unwrap(),
                stderr.lock().unwrap()
            );
        }
        stdout.lock().unwrap().contains("schoolfleet is running")
    });

    // The CLI works with the profile the demo wrote, and nothing else.
    let cli = |args: &[&str]| {
        clean_command(&bin("schoolfleet"))
            .env("SCHOOLFLEET_CONFIG_DIR", home.path().join("cli"))
            .env("HOME", home.path())
            .args(args)
            .output()
            .unwrap()
    };
    let devices = cli(&["-o", "json", "devices"]);
    assert!(devices.status.success(), "{}", output_text(&devices));
    let devices: serde_json::Value = serde_json::from_slice(&devices.stdout).unwrap();
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), 1, "{devices:?}");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(devices[0]["hostname"], hostname.trim(), "{devices:?}");

    let id = devices[0]["id"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(30), "the agent to be online", || {
        let shown = cli(&["-o", "json", "device", "show", &id]);
        serde_json::from_slice::<serde_json::Value>(&shown.stdout)
            .is_ok_and(|d| d["overview"]["online"] == true)
    });
    let marker = unique_marker("demo");
    let exec = cli(&["exec", &id, "--reason", "Demo", "--", "echo", &marker]);
    assert!(exec.status.success(), "{}", output_text(&exec));
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), marker);
}
