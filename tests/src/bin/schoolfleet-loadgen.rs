//! `schoolfleet-loadgen`: many simulated agents in one process, each
//! speaking the real protocol to a real server.
//!
//! Every simulated agent makes its own P-256 key and CSR (the agent
//! library's code), enrols with the enrolment token like a real agent,
//! then holds one long-lived mTLS stream with its own certificate: Hello,
//! a startup inventory report, heartbeats at the server's interval, and
//! now and then a changed inventory. Inventories come from Windows and
//! Linux templates with 300 to 3,000 programs and varied hardware.
//!
//! ```sh
//! # Against a running server (the token must allow --agents uses):
//! schoolfleet-loadgen --server https://HOST:PORT --token sfe_... --agents 2000 --duration 300
//! # Smoke mode: starts its own server (from the target directory), 200 agents, 20 s:
//! schoolfleet-loadgen --smoke
//! ```
//!
//! Prints counters, latency percentiles (enrolment, stream open until the
//! Welcome, report until its acknowledgement) and its own CPU time, since it
//! shares the machine with the server. Exits non-zero when any error was
//! counted. Remote sessions: an `exec` is accepted and answered with one
//! line (`loadgen <n>`) and exit code 0 over a real `SessionChannel`, so a
//! fan-out exec can be measured against a simulated fleet; other kinds are
//! refused as switched off. Not yet simulated: certificate renewal,
//! reconnects.
//! Heartbeats have no answer in the protocol, so their latency cannot be
//! measured from this side.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use prost::Message;
use schoolfleet_e2e::{CliRunner, ServerProcess};
use schoolfleet_proto::tokens::parse_enrollment_token;
use schoolfleet_proto::transport::{self, ChannelOptions, ClientIdentity, ServerTrust};
use schoolfleet_proto::v1::agent_message::Body as AgentBody;
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::server_message::Body as ServerBody;
use schoolfleet_proto::v1::*;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;

#[derive(Debug, Clone)]
struct Args {
    server: String,
    token: String,
    agents: usize,
    duration: Duration,
    ramp: Duration,
    /// Override of the server's heartbeat interval.
    heartbeat: Option<Duration>,
    /// Mean time between changed inventories per agent; none when zero.
    change_every: Duration,
    smoke: bool,
    /// Smoke mode: once all agents are connected, a fan-out `exec` over
    /// the whole school through the real CLI, this many devices at a time.
    exec_fanout: Option<u32>,
}

fn usage() -> &'static str {
    "usage: schoolfleet-loadgen (--smoke | --server URL --token SFE_TOKEN) [--agents N] \
     [--duration SECS] [--ramp SECS] [--heartbeat SECS] [--change-every SECS] \
     [--exec-fanout PARALLEL (with --smoke)]"
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        server: String::new(),
        token: String::new(),
        agents: 200,
        duration: Duration::from_secs(20),
        ramp: Duration::from_secs(5),
        heartbeat: None,
        change_every: Duration::ZERO,
        smoke: false,
        exec_fanout: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--smoke" {
            args.smoke = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            println!("{}", usage());
            std::process::exit(0);
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{}", usage()))?;
        let secs = || -> anyhow::Result<Duration> {
            Ok(Duration::from_secs_f64(
                value.parse().with_context(|| format!("{flag} {value}"))?,
            ))
        };
        match flag.as_str() {
            "--server" => args.server = value.clone(),
            "--token" => args.token = value.clone(),
            "--agents" => args.agents = value.parse().context("--agents")?,
            "--duration" => args.duration = secs()?,
            "--ramp" => args.ramp = secs()?,
            "--heartbeat" => args.heartbeat = Some(secs()?),
            "--change-every" => args.change_every = secs()?,
            "--exec-fanout" => args.exec_fanout = Some(value.parse().context("--exec-fanout")?),
            _ => bail!("unknown flag {flag}\n{}", usage()),
        }
    }
    if args.exec_fanout.is_some() && !args.smoke {
        bail!("--exec-fanout needs --smoke (it uses the smoke server's admin)");
    }
    if !args.smoke && (args.server.is_empty() || args.token.is_empty()) {
        bail!(
            "--server and --token are needed without --smoke\n{}",
            usage()
        );
    }
    Ok(args)
}

/// Counters shared by all simulated agents.
#[derive(Debug, Default)]
struct Counters {
    enrolled: AtomicU64,
    enrol_errors: AtomicU64,
    connected: AtomicU64,
    connect_errors: AtomicU64,
    stream_errors: AtomicU64,
    heartbeats: AtomicU64,
    reports: AtomicU64,
    reports_acked: AtomicU64,
    report_errors: AtomicU64,
    requests_unanswered: AtomicU64,
    /// Exec sessions accepted, and their channels answered or failed.
    sessions_accepted: AtomicU64,
    channels_answered: AtomicU64,
    channel_errors: AtomicU64,
}

impl Counters {
    fn errors(&self) -> u64 {
        [
            &self.enrol_errors,
            &self.connect_errors,
            &self.stream_errors,
            &self.report_errors,
            &self.channel_errors,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// Latencies in microseconds, by kind.
#[derive(Debug, Default)]
struct Latencies {
    enrol: Mutex<Vec<u64>>,
    open: Mutex<Vec<u64>>,
    report: Mutex<Vec<u64>>,
}

async fn record(list: &Mutex<Vec<u64>>, since: Instant) {
    list.lock().await.push(since.elapsed().as_micros() as u64);
}

/// `p`-th percentile (0..=100) of sorted values, in milliseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

/// A small deterministic generator, so agent `n` always gets the same PC.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WINDOWS_PROGRAMS: &[&str] = &[
    "Mozilla Firefox ESR",
    "LibreOffice",
    "7-Zip",
    "VLC media player",
    "GeoGebra Classic",
    "Microsoft Edge",
    "Microsoft Visual C++ 2015-2022 Redistributable (x64)",
    "Adobe Acrobat Reader",
    "Notepad++",
    "Audacity",
    "GIMP",
    "Scratch 3",
    "Microsoft Teams",
    "Zoom Workplace",
    "Java 8 Update 401",
];

const LINUX_PACKAGES: &[&str] = &[
    "bash",
    "coreutils",
    "firefox-esr",
    "libreoffice-core",
    "openssl",
    "libssl3",
    "systemd",
    "python3",
    "vlc",
    "geogebra",
    "gimp",
    "openssh-client",
    "curl",
    "git",
    "vim",
];

/// The inventory of simulated PC `n`, generation `generation` (each
/// change bumps one program's version).
fn inventory(n: usize, generation: u64) -> Inventory {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1).wrapping_mul(0x1000_0001));
    let windows = rng.below(10) < 7;
    let programs = 300 + rng.below(2_701) as usize;
    let (family, names, source) = if windows {
        ("windows", WINDOWS_PROGRAMS, "msi")
    } else {
        ("linux", LINUX_PACKAGES, "dpkg")
    };
    let software: Vec<SoftwarePackage> = (0..programs)
        .map(|p| {
            let name = match names.get(p) {
                Some(name) => (*name).to_owned(),
                None if windows => format!("Programm {p} von Hersteller {}", p % 37),
                None => format!("lib{}-{p}", ["gtk", "qt", "x11", "perl", "py"][p % 5]),
            };
            let bump = u64::from(p as u64 == generation % programs as u64) * generation;
            SoftwarePackage {
                name,
                version: format!("{}.{}.{}", p % 11, (n + p) % 7 + bump as usize, p),
                source: source.into(),
                publisher: format!("Hersteller {}", p % 37),
                ..Default::default()
            }
        })
        .collect();
    let cores = [2, 4, 4, 8, 8, 16][rng.below(6) as usize];
    Inventory {
        system: Some(SystemInfo {
            hostname: format!("lg{:05}-{}", n, if windows { "win" } else { "lnx" }),
            uptime_seconds: 60 + generation,
            ..Default::default()
        }),
        os: Some(OperatingSystem {
            family: family.into(),
            name: if windows {
                "Windows 11 Education".into()
            } else {
                "Debian GNU/Linux 12 (bookworm)".into()
            },
            version: if windows {
                format!(
                    "10.0.{}.{}",
                    [19045, 22631, 26100][rng.below(3) as usize],
                    rng.below(5000)
                )
            } else {
                "12".into()
            },
            ..Default::default()
        }),
        hardware: Some(Hardware {
            vendor: ["Dell Inc.", "LENOVO", "HP", "Fujitsu"][rng.below(4) as usize].into(),
            model: format!("Model {}", rng.below(40)),
            cpu_logical_cores: cores,
            cpu_physical_cores: cores / 2,
            memory_total_bytes: [4u64, 8, 8, 16, 32][rng.below(5) as usize] << 30,
            system_uuid: uuid::Uuid::from_u128((u128::from(rng.next()) << 64) | n as u128)
                .to_string(),
            serial_number: format!("LG{n:08}"),
            ..Default::default()
        }),
        software,
        ..Default::default()
    }
}

fn inventory_report(inv: &Inventory, reason: &str) -> (InventoryReport, String) {
    let hash = schoolfleet_agent::inventory::content_hash(inv);
    let report = InventoryReport {
        report_id: uuid::Uuid::new_v4().to_string(),
        collected_at: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp(),
            nanos: 0,
        }),
        content_hash: hash.clone(),
        inventory: inv.encode_to_vec(),
        reason: reason.into(),
    };
    (report, hash)
}

struct Shared {
    /// False while a fan-out `exec` runs: the agents stay past the end of
    /// the run until it is done, so that none is missing from it.
    fanout_done: std::sync::atomic::AtomicBool,
    args: Args,
    counters: Counters,
    latencies: Latencies,
    deadline: Instant,
}

/// One simulated agent from enrolment to the end of the run.
async fn agent(n: usize, shared: Arc<Shared>) {
    let args = &shared.args;
    let c = &shared.counters;
    let delay = args.ramp.mul_f64(n as f64 / args.agents.max(1) as f64);
    tokio::time::sleep(delay).await;

    let Ok(token) = parse_enrollment_token(&args.token) else {
        c.enrol_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let pin = token.ca_pin;
    let mut generation = 0u64;
    let inv = inventory(n, generation);
    let hostname = inv
        .system
        .as_ref()
        .map(|s| s.hostname.clone())
        .unwrap_or_default();

    // Enrolment, as the agent does it: own key, CSR, pinned first contact.
    let started = Instant::now();
    let enrolled = async {
        let (key_pem, csr_pem) = schoolfleet_agent::identity::generate_key_and_csr(&hostname)?;
        let channel = transport::connect(
            &args.server,
            ServerTrust::Pinned(pin),
            None,
            ChannelOptions {
                request_timeout: Some(Duration::from_secs(60)),
                ..Default::default()
            },
        )
        .await?;
        let response = AgentServiceClient::new(channel)
            .enroll(EnrollRequest {
                token: args.token.clone(),
                csr_pem,
                system_uuid: String::new(),
                serial_number: String::new(),
                hostname: hostname.clone(),
                agent_version: "loadgen".into(),
                // Each simulated PC is its own device.
                machine_id: uuid::Uuid::new_v4().simple().to_string(),
            })
            .await?
            .into_inner();
        anyhow::Ok((key_pem, response))
    }
    .await;
    let (key_pem, response) = match enrolled {
        Ok(ok) => ok,
        Err(err) => {
            if c.enrol_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("first enrolment error (agent {n}): {err:#}");
            }
            return;
        }
    };
    record(&shared.latencies.enrol, started).await;
    c.enrolled.fetch_add(1, Ordering::Relaxed);

    // One long-lived mTLS stream with the device certificate.
    let started = Instant::now();
    let channel = match transport::connect(
        &args.server,
        ServerTrust::Pinned(pin),
        Some(ClientIdentity {
            cert_chain_pem: response.certificate_pem,
            key_pem,
        }),
        ChannelOptions::default(),
    )
    .await
    {
        Ok(channel) => channel,
        Err(err) => {
            if c.connect_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("first connect error (agent {n}): {err:#}");
            }
            return;
        }
    };
    let (tx, rx) = mpsc::channel::<AgentMessage>(16);
    let send = |body| AgentMessage { body: Some(body) };
    let (report, mut hash) = inventory_report(&inv, "startup");
    drop(inv);
    let _ = tx
        .send(send(AgentBody::Hello(Hello {
            agent_version: "loadgen".into(),
            inventory_hash: hash.clone(),
            spooled_reports: 0,
            consent_min: String::new(),
        })))
        .await;
    let session_link = SessionLink {
        n,
        channel: channel.clone(),
        stream: tx.clone(),
    };
    let mut inbound = match AgentServiceClient::new(channel)
        .open_stream(ReceiverStream::new(rx))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => {
            if c.connect_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("first stream error (agent {n}): {status}");
            }
            return;
        }
    };
    let heartbeat = match inbound.message().await {
        Ok(Some(ServerMessage {
            body: Some(ServerBody::Welcome(w)),
        })) => args.heartbeat.unwrap_or(Duration::from_secs(
            u64::from(w.heartbeat_interval_seconds).max(1),
        )),
        other => {
            if c.connect_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("first stream error (agent {n}): no Welcome but {other:?}");
            }
            return;
        }
    };
    record(&shared.latencies.open, started).await;
    c.connected.fetch_add(1, Ordering::Relaxed);

    // Reports waiting for their acknowledgement, by report id.
    let mut pending: Vec<(String, Instant)> = Vec::new();
    c.reports.fetch_add(1, Ordering::Relaxed);
    pending.push((report.report_id.clone(), Instant::now()));
    let _ = tx.send(send(AgentBody::InventoryReport(report))).await;

    let mut rng = Rng(n as u64 + 7);
    // Spread the heartbeats of agents that started together.
    let mut next_beat =
        tokio::time::Instant::now() + heartbeat.mul_f64(rng.below(1000) as f64 / 1000.0);
    let next_change = |rng: &mut Rng| {
        (!args.change_every.is_zero()).then(|| {
            tokio::time::Instant::now()
                + args
                    .change_every
                    .mul_f64(0.5 + rng.below(1000) as f64 / 1000.0)
        })
    };
    let mut change_at = next_change(&mut rng);
    let mut sequence = 0u64;
    let deadline = tokio::time::Instant::from_std(shared.deadline);
    loop {
        let change = async {
            match change_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline), if shared.fanout_done.load(Ordering::Relaxed) => break,
            _ = tokio::time::sleep_until(next_beat) => {
                sequence += 1;
                c.heartbeats.fetch_add(1, Ordering::Relaxed);
                let beat = Heartbeat { sequence, inventory_hash: hash.clone(), uptime_seconds: sequence };
                if tx.send(send(AgentBody::Heartbeat(beat))).await.is_err() {
                    c.stream_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                next_beat += heartbeat;
            }
            _ = change => {
                generation += 1;
                let (report, new_hash) = inventory_report(&inventory(n, generation), "changed");
                hash = new_hash;
                c.reports.fetch_add(1, Ordering::Relaxed);
                pending.push((report.report_id.clone(), Instant::now()));
                if tx.send(send(AgentBody::InventoryReport(report))).await.is_err() {
                    c.stream_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                change_at = next_change(&mut rng);
            }
            message = inbound.message() => {
                if !on_message(&session_link, message, &mut pending, &shared).await {
                    return;
                }
            }
        }
    }
    // The run is over: wait a while for acknowledgements still owed, then
    // count what is left as errors.
    let grace = deadline + DRAIN;
    while !pending.is_empty() {
        tokio::select! {
            _ = tokio::time::sleep_until(grace) => break,
            message = inbound.message() => {
                if !on_message(&session_link, message, &mut pending, &shared).await {
                    return;
                }
            }
        }
    }
    c.report_errors
        .fetch_add(pending.len() as u64, Ordering::Relaxed);
}

/// How long the end of a run waits for acknowledgements still owed.
const DRAIN: Duration = Duration::from_secs(60);

/// What a simulated agent needs to answer session requests: its stream
/// (for consent answers) and its connection (to dial channels back).
struct SessionLink {
    n: usize,
    channel: tonic::transport::Channel,
    stream: mpsc::Sender<AgentMessage>,
}

impl SessionLink {
    /// Accepts an exec at once (as consent `none` would); refuses the rest.
    async fn open_session(&self, open: OpenSession, counters: &Counters) {
        let is_exec = matches!(
            open.spec.and_then(|s| s.kind),
            Some(session_spec::Kind::Exec(_))
        );
        let event = if is_exec {
            counters.sessions_accepted.fetch_add(1, Ordering::Relaxed);
            session_event::Event::Accepted(SessionAccepted {})
        } else {
            session_event::Event::Refused(SessionRefused {
                refusal: SessionRefusal::Disabled as i32,
                message: "the load generator answers exec only".into(),
            })
        };
        let answer = AgentMessage {
            body: Some(AgentBody::SessionEvent(SessionEvent {
                session_id: open.session_id,
                event: Some(event),
            })),
        };
        let _ = self.stream.send(answer).await;
    }

    /// Dials the channel back and runs the "command": one line, exit 0.
    fn open_channel(&self, open: OpenChannel, shared: Arc<Shared>) {
        let channel = self.channel.clone();
        let line = format!("loadgen {}\n", self.n).into_bytes();
        tokio::spawn(async move {
            use schoolfleet_proto::v1::device_frame::Body as DeviceBody;
            let c = &shared.counters;
            let answered = async {
                let (out, mut inbound) =
                    schoolfleet_agent::session::channel::dial(channel, &open.channel_id).await?;
                let frames = [
                    DeviceBody::Ready(ChannelReady::default()),
                    DeviceBody::Output(line),
                    DeviceBody::Exit(ChannelExit { code: 0 }),
                ];
                for body in frames {
                    out.send(DeviceFrame { body: Some(body) })
                        .await
                        .map_err(|_| tonic::Status::cancelled("channel closed"))?;
                }
                drop(out);
                // The server closes its side once it has relayed the exit.
                use tokio_stream::StreamExt;
                while let Some(Ok(_)) = inbound.next().await {}
                Ok::<_, tonic::Status>(())
            }
            .await;
            match answered {
                Ok(()) => c.channels_answered.fetch_add(1, Ordering::Relaxed),
                Err(status) => {
                    if c.channel_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("first channel error: {status}");
                    }
                    0
                }
            };
        });
    }
}

/// Handles one message from the server; false when the stream is over.
async fn on_message(
    link: &SessionLink,
    message: Result<Option<ServerMessage>, tonic::Status>,
    pending: &mut Vec<(String, Instant)>,
    shared: &Arc<Shared>,
) -> bool {
    let c = &shared.counters;
    match message {
        Ok(Some(ServerMessage {
            body: Some(ServerBody::ReportAck(ack)),
        })) => {
            if let Some(i) = pending.iter().position(|(id, _)| *id == ack.report_id) {
                let (_, sent) = pending.swap_remove(i);
                record(&shared.latencies.report, sent).await;
            }
            if ack.error.is_empty() && !ack.retry {
                c.reports_acked.fetch_add(1, Ordering::Relaxed);
            } else if c.report_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!(
                    "first report error (agent {}): {} (retry {})",
                    link.n, ack.error, ack.retry
                );
            }
            true
        }
        Ok(Some(ServerMessage {
            body: Some(ServerBody::OpenSession(open)),
        })) => {
            link.open_session(open, c).await;
            true
        }
        Ok(Some(ServerMessage {
            body: Some(ServerBody::OpenChannel(open)),
        })) => {
            link.open_channel(open, shared.clone());
            true
        }
        Ok(Some(ServerMessage {
            body: Some(ServerBody::CloseSession(_)),
        })) => true,
        Ok(Some(_)) => {
            c.requests_unanswered.fetch_add(1, Ordering::Relaxed);
            true
        }
        Ok(None) => {
            c.stream_errors.fetch_add(1, Ordering::Relaxed);
            false
        }
        Err(status) => {
            if c.stream_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("first stream error (agent {}): {status}", link.n);
            }
            false
        }
    }
}

/// User plus system CPU time of this process (`/proc/self/stat`, in the
/// kernel's fixed 100 Hz user clock).
fn own_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Smoke mode: a server of our own with county `lg`, school `lg001`.
fn start_own_server(dir: &std::path::Path, agents: usize) -> (ServerProcess, CliRunner, String) {
    let data = dir.join("server");
    std::fs::create_dir_all(&data).expect("server directory");
    let server =
        ServerProcess::start_with_env(&data, &[("SCHOOLFLEET_AGENTS__HEARTBEAT_INTERVAL", "5s")]);
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
struct FanOut {
    took: Duration,
    devices: usize,
    answered: usize,
}

/// Waits until every agent is connected, then runs `schoolfleet exec
/// --school lg001 -- loadgen` and counts the devices that answered with
/// their line and exit code 0.
fn run_fanout(cli: &CliRunner, parallel: u32, shared: &Shared) -> anyhow::Result<FanOut> {
    let wait_until = Instant::now() + shared.args.ramp + Duration::from_secs(60);
    while shared.counters.connected.load(Ordering::Relaxed) < shared.args.agents as u64 {
        if Instant::now() > wait_until {
            bail!("not every agent connected; no fan-out");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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

fn main() -> anyhow::Result<()> {
    let mut args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let (_server, admin) = if args.smoke {
        let (server, cli, token) = start_own_server(dir.path(), args.agents);
        args.server = server.url();
        args.token = token;
        (Some(server), Some(cli))
    } else {
        (None, None)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cpu_before = own_cpu();
    let started = Instant::now();
    let shared = Arc::new(Shared {
        fanout_done: (args.exec_fanout.is_none()).into(),
        deadline: started + args.ramp + args.duration,
        args: args.clone(),
        counters: Counters::default(),
        latencies: Latencies::default(),
    });
    let fanout = match (admin, args.exec_fanout) {
        (Some(cli), Some(parallel)) => {
            let shared = shared.clone();
            Some(std::thread::spawn(move || {
                // Set even if the fan-out fails or panics: the agents stay
                // past the end of the run only until it is over.
                struct Done(Arc<Shared>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.fanout_done.store(true, Ordering::Relaxed);
                    }
                }
                let done = Done(shared);
                run_fanout(&cli, parallel, &done.0)
            }))
        }
        _ => None,
    };
    runtime.block_on(async {
        let tasks: Vec<_> = (0..args.agents)
            .map(|n| tokio::spawn(agent(n, shared.clone())))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
    let fanout = fanout.map(|f| {
        f.join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the fan-out thread panicked")))
    });
    let wall = started.elapsed();
    let cpu = own_cpu().saturating_sub(cpu_before);

    let c = &shared.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "schoolfleet-loadgen: {} agents, ramp {:?}, run {:?}, wall {:.1} s",
        args.agents,
        args.ramp,
        args.duration,
        wall.as_secs_f64()
    );
    println!(
        "  enrolled {} (errors {}), connected {} (errors {}), stream errors {}",
        get(&c.enrolled),
        get(&c.enrol_errors),
        get(&c.connected),
        get(&c.connect_errors),
        get(&c.stream_errors)
    );
    println!(
        "  heartbeats {}, reports {} acknowledged {} (errors {}), requests unanswered {}",
        get(&c.heartbeats),
        get(&c.reports),
        get(&c.reports_acked),
        get(&c.report_errors),
        get(&c.requests_unanswered)
    );
    println!(
        "  exec sessions accepted {}, channels answered {} (errors {})",
        get(&c.sessions_accepted),
        get(&c.channels_answered),
        get(&c.channel_errors)
    );
    let mut fanout_failed = false;
    match &fanout {
        Some(Ok(f)) => {
            println!(
                "  fan-out exec over {} devices: {} answered in {:.2} s ({:.0} devices/s)",
                f.devices,
                f.answered,
                f.took.as_secs_f64(),
                f.answered as f64 / f.took.as_secs_f64()
            );
            fanout_failed = f.answered != args.agents;
        }
        Some(Err(err)) => {
            println!("  fan-out exec: {err:#}");
            fanout_failed = true;
        }
        None => {}
    }
    for (what, list) in [
        ("enrolment", &shared.latencies.enrol),
        ("stream open", &shared.latencies.open),
        ("report ack", &shared.latencies.report),
    ] {
        let mut values = runtime.block_on(list.lock()).clone();
        values.sort_unstable();
        println!(
            "  {what:<12} p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  (n={})",
            percentile(&values, 50.0),
            percentile(&values, 90.0),
            percentile(&values, 99.0),
            percentile(&values, 100.0),
            values.len()
        );
    }
    println!(
        "  own CPU {:.2} s ({:.0} % of one core over the run, {:.2} ms per agent-minute)",
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / (args.agents as f64 * wall.as_secs_f64() / 60.0)
    );
    let errors = c.errors();
    if fanout_failed {
        bail!("the fan-out exec did not reach every device");
    }
    if errors > 0 || get(&c.connected) != args.agents as u64 {
        bail!(
            "{errors} errors, {} of {} agents connected",
            get(&c.connected),
            args.agents
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let values: Vec<u64> = (1..=100).map(|v| v * 1000).collect();
        assert_eq!(percentile(&values, 50.0), 51.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn inventories_are_varied_stable_and_change_one_program() {
        let sizes: Vec<usize> = (0..200).map(|n| inventory(n, 0).software.len()).collect();
        assert!(sizes.iter().all(|s| (300..=3000).contains(s)), "{sizes:?}");
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() > 1000);
        let families: std::collections::HashSet<String> = (0..50)
            .map(|n| inventory(n, 0).os.unwrap().family)
            .collect();
        assert_eq!(families.len(), 2, "both Windows and Linux templates");

        let hash = |inv: &Inventory| schoolfleet_agent::inventory::content_hash(inv);
        // The same PC again: the same inventory.
        assert_eq!(hash(&inventory(7, 0)), hash(&inventory(7, 0)));
        let (a, b) = (inventory(7, 0), inventory(7, 1));
        let changed = a
            .software
            .iter()
            .zip(&b.software)
            .filter(|(x, y)| x != y)
            .count();
        assert_eq!(changed, 1);
        assert_ne!(hash(&a), hash(&b));
    }
}
