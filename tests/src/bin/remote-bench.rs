//! Remote-session benchmark, one run on loopback, each figure beside its
//! OpenSSH peer measured in the same run:
//! - port-forward throughput through server and agent vs `ssh -L`;
//! - wall time of `schoolfleet exec DEVICE -- true` vs `ssh localhost true`;
//! - keystroke round trip in a shell session (p50/p99) vs `ssh -tt`.
//!
//! Run (needs `sshd`, e.g. Debian's openssh-server):
//!   cargo build --release --workspace --bins
//!   target/release/remote-bench            # or: tests/bench/remote-sessions.sh
//! Settings: BENCH_MIB (data per transfer, default 1024), BENCH_ROUNDS
//! (transfers per side, default 3), BENCH_EXECS (default 20), BENCH_KEYS
//! (keystrokes per side, default 300).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use schoolfleet_e2e::{Fleet, free_port, wait_until};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let mib = setting("BENCH_MIB", 1024);
    let rounds = setting("BENCH_ROUNDS", 3);
    let execs = setting("BENCH_EXECS", 20);
    let keys = setting("BENCH_KEYS", 300);

    let sshd = Sshd::start().context("cannot start sshd on 127.0.0.1")?;
    let fleet = Fleet::start(1, &[], &[]);
    eprintln!("server, agent and sshd are up; measuring …");
    let result = measure(&fleet, &sshd, mib, rounds, execs, keys);
    if result.is_err() {
        // The logs say why a run broke off (they go with the temp dir).
        let tail = |log: String| log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
        eprintln!("agent log, newest first:\n{}", tail(fleet.agents[0].log()));
        eprintln!("server log, newest first:\n{}", tail(fleet.server.log()));
    }
    result
}

fn measure(
    fleet: &Fleet,
    sshd: &Sshd,
    mib: usize,
    rounds: usize,
    execs: usize,
    keys: usize,
) -> anyhow::Result<()> {
    // --- throughput ---
    let sink = sink_server();
    let ours = free_port();
    let forward = fleet
        .cli
        .command(&[
            "forward",
            fleet.device(),
            &format!("{ours}:127.0.0.1:{sink}"),
            "--reason",
            "benchmark",
        ])
        .stderr(Stdio::null())
        .spawn()?;
    let mut forward = KillOnDrop(forward);
    let theirs = free_port();
    let tunnel = sshd
        .client()
        .args([
            "-N",
            "-L",
            &format!("{theirs}:127.0.0.1:{sink}"),
            "127.0.0.1",
        ])
        .spawn()?;
    let mut tunnel = KillOnDrop(tunnel);
    for port in [ours, theirs] {
        wait_until(Duration::from_secs(30), "a forward to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }
    let bytes = mib * 1024 * 1024;
    let (mut ours_mbs, mut theirs_mbs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Alternate, so drift on a noisy machine hits both sides alike.
        ours_mbs.push(throughput(ours, bytes)?);
        theirs_mbs.push(throughput(theirs, bytes)?);
    }
    stop(&mut forward.0);
    stop(&mut tunnel.0);

    // --- exec wall time ---
    let (mut ours_exec, mut theirs_exec) = (Vec::new(), Vec::new());
    for _ in 0..execs {
        let started = Instant::now();
        let out = fleet
            .cli
            .command(&[
                "exec",
                fleet.device(),
                "--reason",
                "benchmark",
                "--",
                "true",
            ])
            .output()?;
        if !out.status.success() {
            let log = fleet.agents[0].log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            bail!(
                "exec failed: {}\nagent log (last lines, newest first):\n{}",
                String::from_utf8_lossy(&out.stderr),
                tail.join("\n")
            );
        }
        ours_exec.push(started.elapsed());
        let started = Instant::now();
        let out = sshd.client().args(["127.0.0.1", "true"]).output()?;
        if !out.status.success() {
            bail!("ssh true failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        theirs_exec.push(started.elapsed());
    }

    // --- keystroke round trip ---
    let mut ours_cmd = portable_pty::CommandBuilder::new(schoolfleet_e2e::bin("schoolfleet"));
    ours_cmd.args(["shell", fleet.device(), "--reason", "benchmark"]);
    for (key, value) in fleet.cli.env_vars() {
        ours_cmd.env(key, value);
    }
    let ours_keys = keystrokes(ours_cmd, keys)?;
    let mut theirs_cmd = portable_pty::CommandBuilder::new("ssh");
    theirs_cmd.args(sshd.client_args());
    theirs_cmd.args(["-tt", "127.0.0.1"]);
    let theirs_keys = keystrokes(theirs_cmd, keys)?;

    let ours_tp = median_f64(&ours_mbs);
    let theirs_tp = median_f64(&theirs_mbs);
    println!("| measurement | schoolfleet | OpenSSH | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| forward throughput, median of {rounds} × {mib} MiB | {ours_tp:.0} MB/s | {theirs_tp:.0} MB/s (`ssh -L`) | {:.2} |",
        ours_tp / theirs_tp
    );
    println!(
        "| exec `true` wall time, median of {execs} (p90) | {} ({}) | {} ({}) (`ssh localhost true`) | {:.2} |",
        ms(percentile(&mut ours_exec, 50)),
        ms(percentile(&mut ours_exec, 90)),
        ms(percentile(&mut theirs_exec, 50)),
        ms(percentile(&mut theirs_exec, 90)),
        percentile(&mut ours_exec, 50).as_secs_f64()
            / percentile(&mut theirs_exec, 50).as_secs_f64()
    );
    let (mut ours_keys, mut theirs_keys) = (ours_keys, theirs_keys);
    println!(
        "| keystroke round trip p50 / p99 ({keys} keys) | {} / {} | {} / {} (`ssh -tt`) | {:.2} |",
        ms(percentile(&mut ours_keys, 50)),
        ms(percentile(&mut ours_keys, 99)),
        ms(percentile(&mut theirs_keys, 50)),
        ms(percentile(&mut theirs_keys, 99)),
        percentile(&mut ours_keys, 50).as_secs_f64()
            / percentile(&mut theirs_keys, 50).as_secs_f64()
    );
    println!(
        "\nper round (MB/s): schoolfleet {:?}, ssh -L {:?}",
        ours_mbs.iter().map(|v| v.round()).collect::<Vec<_>>(),
        theirs_mbs.iter().map(|v| v.round()).collect::<Vec<_>>()
    );
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(values: &mut [Duration], p: usize) -> Duration {
    values.sort();
    let index = ((values.len() * p).div_ceil(100)).clamp(1, values.len()) - 1;
    values[index]
}

fn median_f64(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// A child that is killed however `main` returns.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads every connection to EOF, then answers with the byte count.
fn sink_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buffer = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = stream.write_all(&total.to_le_bytes());
            });
        }
    });
    port
}

/// Sends `bytes` through the forward on `port`; MB/s until the sink has
/// counted every byte.
fn throughput(port: u16, bytes: usize) -> anyhow::Result<f64> {
    let chunk = vec![0x5au8; 256 * 1024];
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n])?;
        left -= n;
    }
    stream.shutdown(Shutdown::Write)?;
    let mut count = [0u8; 8];
    stream.read_exact(&mut count)?;
    let elapsed = started.elapsed().as_secs_f64();
    if u64::from_le_bytes(count) != bytes as u64 {
        bail!(
            "the sink counted {} of {bytes} bytes",
            u64::from_le_bytes(count)
        );
    }
    Ok(bytes as f64 / elapsed / 1e6)
}

/// Starts `command` on a PTY, runs `cat` in the remote shell, then types
/// one character at a time and times until the remote terminal echoes it.
fn keystrokes(command: portable_pty::CommandBuilder, keys: usize) -> anyhow::Result<Vec<Duration>> {
    let pty = portable_pty::native_pty_system().openpty(portable_pty::PtySize {
        rows: 24,
        cols: 80,
        pixel_width: 0,
        pixel_height: 0,
    })?;
    let mut child = pty.slave.spawn_command(command)?;
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader()?;
    let mut writer = pty.master.take_writer()?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 || tx.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // Start cat and wait until it has started (its marker line printed).
    writer.write_all(b"echo bench-$((40+2)); exec cat\r")?;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen).contains("bench-42") {
        let left = deadline.saturating_duration_since(Instant::now());
        seen.extend(rx.recv_timeout(left).context("the shell did not start")?);
    }
    std::thread::sleep(Duration::from_millis(300));
    while rx.try_recv().is_ok() {}
    let mut samples = Vec::with_capacity(keys);
    for n in 0..keys {
        // A line at a time keeps the canonical-mode line short.
        let key = if n % 60 == 59 { b'\r' } else { b'x' };
        let started = Instant::now();
        writer.write_all(&[key])?;
        writer.flush()?;
        let echo = if key == b'\r' { b'\n' } else { b'x' };
        loop {
            let chunk = rx
                .recv_timeout(Duration::from_secs(10))
                .context("no echo within 10 s")?;
            if chunk.contains(&echo) {
                break;
            }
        }
        if key == b'x' {
            samples.push(started.elapsed());
        } else {
            // cat prints the line back after the newline's echo.
            std::thread::sleep(Duration::from_millis(50));
            while rx.try_recv().is_ok() {}
        }
    }
    writer.write_all(&[4, 4])?; // EOF to cat, which ends the session
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    Ok(samples)
}

/// A private sshd on 127.0.0.1 with throwaway keys, run as this user.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Sshd {
    fn start() -> anyhow::Result<Sshd> {
        let binary = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("sshd not found: install openssh-server")?;
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        for key in ["host_key", "id"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .status()?;
            if !status.success() {
                bail!("ssh-keygen failed");
            }
        }
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys"))?;
        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nAllowTcpForwarding yes\nPidFile {pid}\nPermitRootLogin yes\n",
                hk = d.join("host_key").display(),
                ak = d.join("authorized_keys").display(),
                pid = d.join("sshd.pid").display(),
            ),
        )?;
        // Privilege separation wants this directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(binary)
            .arg("-D")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stderr(Stdio::null())
            .spawn()?;
        wait_until(Duration::from_secs(10), "sshd to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Ok(Sshd { dir, port, child })
    }

    fn client_args(&self) -> Vec<String> {
        let key: &Path = &self.dir.path().join("id");
        [
            "-p",
            &self.port.to_string(),
            "-i",
            &key.display().to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn client(&self) -> Command {
        let mut command = Command::new("ssh");
        command.args(self.client_args());
        command
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
