//! Smoke mode: a server of our own, and what is measured against it (the
//! fan-out exec through the real CLI).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use schoolfleet_e2e::{CliRunner, ServerProcess};

use crate::agent::Shared;

/// Smoke mode: a server of our own with county `lg`, school `lg001`.
pub fn start_own_server(
    dir: &std::path::Path,
    agents: usize,
    heartbeat: Option<Duration>,
) -> (ServerProcess, CliRunner, String) {
    let data = dir.join("server");
    std::fs::create_dir_all(&data).expect("server directory");
    // All simulated agents come from 127.0.0.1, where a real fleet comes
    // from one address per school: the per-address cap must allow them.
    let per_peer = (agents * 2 + 100).to_string();
    let mut env: Vec<(&str, String)> = vec![
        (
            "SCHOOLFLEET_LIMITS__MAX_CONNECTIONS_PER_PEER",
            per_peer.clone(),
        ),
        ("SCHOOLFLEET_LIMITS__MAX_CONNECTIONS", per_peer),
        // The server's own default, where `ServerProcess` sets 1 s for tests.
        ("SCHOOLFLEET_AGENTS__HEARTBEAT_INTERVAL", "60s".into()),
        ("SCHOOLFLEET_AGENTS__ONLINE_WINDOW", "3m".into()),
        // The load generator reports its own figures.
        ("RUST_LOG", "warn".into()),
    ];
    if let Some(heartbeat) = heartbeat {
        env[2].1 = format!("{}s", heartbeat.as_secs().max(1));
        env[3].1 = format!("{}s", heartbeat.as_secs().max(1) * 3);
    }
    // PostgreSQL instead of the SQLite file in the data directory.
    if let Ok(url) = std::env::var("LOADGEN_DATABASE_URL") {
        env.push(("SCHOOLFLEET_SERVER__DATABASE_URL", url));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start_with_env(&data, &env);
    let cli = server.admin_cli(&dir.join("cli"));
    cli.ok(&["county", "add", "lg", "--name", "Lastkreis"]);
    cli.ok(&[
        "school",
        "add",
        "lg001",
        "--county",
        "lg",
        "--name",
        "Lastschule",
    ]);
    cli.ok(&["consent", "set", "--school", "lg001", "--mode", "none"]);
    let token = cli.enrollment_token("lg001", "1h", agents as u32);
    (server, cli, token)
}

/// What the fan-out `exec` over the smoke school found.
#[derive(Debug)]
pub struct FanOut {
    pub took: Duration,
    pub devices: usize,
    pub answered: usize,
}

/// Waits until every agent is connected, then runs `schoolfleet exec
/// --school lg001 -- loadgen` and counts the devices that answered with
/// their line and exit code 0.
pub fn run_fanout(cli: &CliRunner, parallel: u32, shared: &Shared) -> anyhow::Result<FanOut> {
    wait_for_all_online(shared)?;
    let started = Instant::now();
    let parallel = parallel.to_string();
    let out = cli.run(&[
        "-o",
        "json",
        "exec",
        "--school",
        "lg001",
        "--concurrency",
        &parallel,
        "--reason",
        "Lastprobe",
        "--",
        "loadgen",
    ]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "the fan-out printed no JSON: {}",
            schoolfleet_e2e::output_text(&out)
        )
    })?;
    let took = started.elapsed();
    let rows = rows.as_array().cloned().unwrap_or_default();
    if let Some(failed) = rows.iter().find(|r| r["exit_code"] != 0) {
        eprintln!("first device the fan-out did not reach: {failed}");
    }
    let answered = rows
        .iter()
        .filter(|r| {
            r["exit_code"] == 0
                && r["stdout"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("loadgen "))
        })
        .count();
    Ok(FanOut {
        took,
        devices: rows.len(),
        answered,
    })
}

/// What the concurrent forwards measured.
#[derive(Debug)]
pub struct Forwards {
    pub sessions: usize,
    pub bytes_each: usize,
    pub took: Duration,
    /// Sessions whose every byte came back.
    pub complete: usize,
}

/// Opens `count` forward sessions at once through the real CLI, one per
/// simulated PC (which echoes), pushes `bytes_each` through every one in
/// parallel and waits for the echo of all of them.
pub fn run_forwards(
    cli: &CliRunner,
    count: usize,
    bytes_each: usize,
    shared: &Shared,
) -> anyhow::Result<Forwards> {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    struct Cli(std::process::Child);
    impl Drop for Cli {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    wait_for_all_online(shared)?;
    let mut clis = Vec::new();
    let mut ports = Vec::new();
    for n in 0..count.min(shared.args.agents) {
        let port = schoolfleet_e2e::free_port();
        let child = cli
            .command(&[
                "forward",
                &crate::templates::hostname(n),
                // The PC echoes; the target only has to pass the allow-list.
                &format!("{port}:127.0.0.1:7"),
                "--reason",
                "Lastprobe",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("schoolfleet forward")?;
        clis.push(Cli(child));
        ports.push(port);
    }
    let listening = Instant::now() + Duration::from_secs(120);
    for port in &ports {
        while TcpStream::connect(("127.0.0.1", *port)).is_err() {
            if Instant::now() > listening {
                bail!("the forward on port {port} never listened");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let started = Instant::now();
    let workers: Vec<_> = ports
        .iter()
        .map(|&port| {
            std::thread::spawn(move || -> anyhow::Result<bool> {
                let mut stream = TcpStream::connect(("127.0.0.1", port))?;
                stream.set_read_timeout(Some(Duration::from_secs(300)))?;
                let mut writer = stream.try_clone()?;
                let sending = std::thread::spawn(move || -> std::io::Result<()> {
                    let chunk = vec![0x5au8; 64 * 1024];
                    let mut left = bytes_each;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        writer.write_all(&chunk[..n])?;
                        left -= n;
                    }
                    writer.shutdown(std::net::Shutdown::Write)
                });
                let mut buf = vec![0u8; 64 * 1024];
                let mut echoed = 0;
                loop {
                    match stream.read(&mut buf)? {
                        0 => break,
                        n => {
                            if buf[..n].iter().any(|&b| b != 0x5a) {
                                bail!("the echo changed the bytes");
                            }
                            echoed += n;
                        }
                    }
                }
                sending
                    .join()
                    .map_err(|_| anyhow::anyhow!("sender panicked"))??;
                Ok(echoed == bytes_each)
            })
        })
        .collect();
    let mut complete = 0;
    for worker in workers {
        match worker.join() {
            Ok(Ok(true)) => complete += 1,
            Ok(Ok(false)) => {}
            Ok(Err(err)) => eprintln!("a forward failed: {err:#}"),
            Err(_) => eprintln!("a forward thread panicked"),
        }
    }
    Ok(Forwards {
        sessions: ports.len(),
        bytes_each,
        took: started.elapsed(),
        complete,
    })
}

fn wait_for_all_online(shared: &Shared) -> anyhow::Result<()> {
    let wait_until = Instant::now() + shared.args.ramp + Duration::from_secs(120);
    while shared.counters.online.load(Ordering::Relaxed) < shared.args.agents as i64 {
        if Instant::now() > wait_until {
            bail!("not every agent connected");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
