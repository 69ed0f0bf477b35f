//! `schoolfleet-loadgen`: many simulated agents in one process, each
//! speaking the real protocol to a real server.
//!
//! Every simulated agent makes its own P-256 key and CSR (the agent
//! library's code), enrols with the enrolment token like a real agent,
//! then holds one long-lived mTLS stream with its own certificate: Hello,
//! a startup inventory report, heartbeats at the server's interval (each
//! acknowledged, so its latency is measured), and now and then a changed
//! inventory. A stream that breaks is opened again after the real agent's
//! backoff. Inventories come from Windows and Linux templates with 300 to
//! 3,000 programs and varied hardware.
//!
//! ```sh
//! # Against a running server (the token must allow --agents uses):
//! schoolfleet-loadgen --server https://HOST:PORT --token sfe_... --agents 2000 --duration 300
//! # Smoke mode: starts its own server (from the target directory), 200 agents, 20 s:
//! schoolfleet-loadgen --smoke
//! # The fleet benchmarks of BENCHMARKS.md, e.g. a reconnect storm:
//! schoolfleet-loadgen --smoke --agents 10000 --ramp 300 --duration 200 --kill-server-at 60
//! ```
//!
//! Prints counters, latency percentiles (enrolment, stream open until the
//! Welcome, heartbeat and report until their acknowledgement, reconnect)
//! and its own CPU time, since it shares the machine with the server; with
//! a server of its own (or `--server-pid`) also the server's memory and CPU.
//! Exits non-zero when any error was counted or an agent was not back at
//! the end. Remote sessions: an `exec` is accepted and answered with one
//! line (`loadgen <n>`) and exit code 0 over a real `SessionChannel`; other
//! kinds are refused as switched off. Not simulated: certificate renewal.

mod agent;
mod smoke;
mod stats;
mod templates;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use agent::Shared;
use stats::{Counters, Latencies, ProcessSample, percentile, sample};
use templates::Change;

#[derive(Debug, Clone)]
pub struct Args {
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
    /// Smoke mode, after the fan-out: this many forward sessions at once,
    /// each carrying `forward_mib` MiB to the simulated PC and back.
    forwards: Option<usize>,
    forward_mib: usize,
    /// Seconds after the ramp when the fan-out and the forwards start
    /// (they wait for every agent to be connected in any case).
    fanout_at: Duration,
    /// Seconds after the ramp: every agent sends its startup report at once.
    boot_storm: Option<Duration>,
    /// What the storm's reports change: nothing (`same`) or every program.
    boot_storm_change: Option<Change>,
    /// Smoke mode, seconds after the ramp: SIGKILL the server and start it
    /// again on the same port and data.
    kill_server_at: Option<Duration>,
    /// The server's process, for its memory and CPU (smoke mode knows it).
    server_pid: Option<u32>,
}

fn usage() -> &'static str {
    "usage: schoolfleet-loadgen (--smoke | --server URL --token SFE_TOKEN [--server-pid PID]) \
     [--agents N] [--duration SECS] [--ramp SECS] [--heartbeat SECS] [--change-every SECS] \
     [--boot-storm-at SECS [--boot-storm same|changed]] \
     [--exec-fanout PARALLEL (smoke)] [--forwards N [--forward-mib M] (smoke)] \
     [--fanout-at SECS] [--kill-server-at SECS (smoke)]\n\
     Times of --boot-storm-at, --fanout-at and --kill-server-at count from the end of the ramp;\n\
     heartbeat latencies are taken once all agents are connected with their startup reports\n\
     answered, until the first of these events.\n\
     Smoke mode uses PostgreSQL when LOADGEN_DATABASE_URL is set."
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
        forwards: None,
        forward_mib: 16,
        fanout_at: Duration::ZERO,
        boot_storm: None,
        boot_storm_change: None,
        kill_server_at: None,
        server_pid: None,
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
            "--server-pid" => args.server_pid = Some(value.parse().context("--server-pid")?),
            "--agents" => args.agents = value.parse().context("--agents")?,
            "--duration" => args.duration = secs()?,
            "--ramp" => args.ramp = secs()?,
            "--heartbeat" => args.heartbeat = Some(secs()?),
            "--change-every" => args.change_every = secs()?,
            "--exec-fanout" => args.exec_fanout = Some(value.parse().context("--exec-fanout")?),
            "--forwards" => args.forwards = Some(value.parse().context("--forwards")?),
            "--forward-mib" => args.forward_mib = value.parse().context("--forward-mib")?,
            "--fanout-at" => args.fanout_at = secs()?,
            "--boot-storm-at" => args.boot_storm = Some(secs()?),
            "--boot-storm" => {
                args.boot_storm_change = match value.as_str() {
                    "same" => None,
                    "changed" => Some(Change::Everything),
                    other => bail!("--boot-storm {other}: expected same or changed"),
                }
            }
            "--kill-server-at" => args.kill_server_at = Some(secs()?),
            _ => bail!("unknown flag {flag}\n{}", usage()),
        }
    }
    if !args.smoke
        && (args.exec_fanout.is_some() || args.forwards.is_some() || args.kill_server_at.is_some())
    {
        bail!("--exec-fanout, --forwards and --kill-server-at need --smoke (a server of our own)");
    }
    if !args.smoke && (args.server.is_empty() || args.token.is_empty()) {
        bail!(
            "--server and --token are needed without --smoke\n{}",
            usage()
        );
    }
    Ok(args)
}

/// What the watcher thread saw of the run.
#[derive(Debug, Default)]
struct Timeline {
    /// The server before any agent connected.
    server_idle: Option<ProcessSample>,
    /// Every agent connected and its startup report answered, and the
    /// server then.
    all_online: Option<(Instant, ProcessSample)>,
    /// The server at the end of the steady state (the run's deadline).
    server_end: Option<(Instant, ProcessSample)>,
    /// Highest RSS seen in the samples (a killed server loses its peak).
    server_max_rss_kib: u64,
    /// Highest RSS sampled while the boot storm ran.
    storm_max_rss_kib: u64,
    /// The boot storm: started, all its reports acknowledged.
    storm: Option<(Instant, Option<Instant>)>,
    /// The reconnect storm: server killed, running again, all agents back.
    restart: Option<(Instant, Instant, Option<Instant>)>,
}

fn main() -> anyhow::Result<()> {
    let mut args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let (server, admin) = if args.smoke {
        let (server, cli, token) = smoke::start_own_server(dir.path(), args.agents, args.heartbeat);
        args.server = server.url();
        args.token = token;
        (Some(server), Some(cli))
    } else {
        (None, None)
    };
    let server = Arc::new(Mutex::new(server));
    let server_pid = {
        let server = server.clone();
        let external = args.server_pid;
        move || external.or_else(|| server.lock().unwrap().as_ref().and_then(|s| s.pid()))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cpu_before = sample("self").unwrap_or_default().cpu;
    let started = Instant::now();
    let (storm_tx, storm_rx) = tokio::sync::watch::channel(0u32);
    let shared = Arc::new(Shared {
        fanout_done: (args.exec_fanout.is_none() && args.forwards.is_none()).into(),
        deadline: started + args.ramp + args.duration,
        args: args.clone(),
        counters: Counters::default(),
        latencies: Latencies::default(),
        steady: false.into(),
        storm: storm_rx,
    });
    let timeline = Arc::new(Mutex::new(Timeline {
        server_idle: server_pid().and_then(|pid| sample(&pid.to_string())),
        ..Default::default()
    }));
    let fanout = match admin {
        Some(cli) if args.exec_fanout.is_some() || args.forwards.is_some() => {
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
                let args = &done.0.args;
                let at = done.0.deadline - args.duration + args.fanout_at;
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let fanout = args
                    .exec_fanout
                    .map(|parallel| smoke::run_fanout(&cli, parallel, &done.0));
                let forwards = args
                    .forwards
                    .map(|count| smoke::run_forwards(&cli, count, args.forward_mib << 20, &done.0));
                (fanout, forwards)
            }))
        }
        _ => None,
    };
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (shared, timeline, finished, server) = (
            shared.clone(),
            timeline.clone(),
            finished.clone(),
            server.clone(),
        );
        let server_pid = server_pid.clone();
        std::thread::spawn(move || {
            watch(
                &shared,
                &timeline,
                &finished,
                &server,
                &server_pid,
                storm_tx,
            )
        })
    };
    runtime.block_on(async {
        let tasks: Vec<_> = (0..args.agents)
            .map(|n| tokio::spawn(agent::agent(n, shared.clone())))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
    finished.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let (fanout, forwards) = match fanout.map(|f| f.join()) {
        Some(Ok(results)) => results,
        Some(Err(_)) => (
            Some(Err(anyhow::anyhow!("the fan-out thread panicked"))),
            None,
        ),
        None => (None, None),
    };
    let wall = started.elapsed();
    let cpu = sample("self")
        .unwrap_or_default()
        .cpu
        .saturating_sub(cpu_before);

    let c = &shared.counters;
    let get = Counters::get;
    println!(
        "schoolfleet-loadgen: {} agents, ramp {:?}, run {:?}, wall {:.1} s",
        args.agents,
        args.ramp,
        args.duration,
        wall.as_secs_f64()
    );
    println!(
        "  enrolled {} (errors {}), streams opened {} (failed attempts {}), disconnects {}, not back at the end {}",
        get(&c.enrolled),
        get(&c.enrol_errors),
        get(&c.connected),
        get(&c.connect_failures),
        get(&c.disconnects),
        get(&c.not_back)
    );
    println!(
        "  heartbeats {} acknowledged {}, reports {} acknowledged {} (errors {}, lost with their stream {}, deferred by the server {} times), requests unanswered {}",
        get(&c.heartbeats),
        get(&c.heartbeats_acked),
        get(&c.reports),
        get(&c.reports_acked),
        get(&c.report_errors),
        get(&c.reports_lost),
        get(&c.reports_deferred),
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
    match &forwards {
        Some(Ok(f)) => {
            let total = (2 * f.bytes_each * f.complete) as f64 / 1e6;
            println!(
                "  {} forwards at once, {} MiB each way each: {} complete in {:.2} s, {:.0} MB/s in all (both directions)",
                f.sessions,
                f.bytes_each >> 20,
                f.complete,
                f.took.as_secs_f64(),
                total / f.took.as_secs_f64()
            );
            fanout_failed |= f.complete != f.sessions;
        }
        Some(Err(err)) => {
            println!("  forwards: {err:#}");
            fanout_failed = true;
        }
        None => {}
    }
    for (what, list) in [
        ("enrolment", &shared.latencies.enrol),
        ("stream open", &shared.latencies.open),
        ("heartbeat", &shared.latencies.heartbeat),
        ("report ack", &shared.latencies.report),
        ("reconnect", &shared.latencies.reconnect),
    ] {
        let mut values = runtime.block_on(list.lock()).clone();
        if values.is_empty() {
            continue;
        }
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
    print_server(&timeline.lock().unwrap(), args.agents);
    println!(
        "  load generator CPU {:.2} s ({:.0} % of one core over the run, {:.2} ms per agent-minute)",
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / (args.agents as f64 * wall.as_secs_f64() / 60.0)
    );
    let errors = c.errors();
    if fanout_failed {
        bail!("the fan-out exec or the forwards did not reach every device");
    }
    if errors > 0 || get(&c.enrolled) != args.agents as u64 {
        bail!(
            "{errors} errors, {} of {} agents enrolled",
            get(&c.enrolled),
            args.agents
        );
    }
    Ok(())
}

/// Samples the server once a second, starts the boot storm and kills the
/// server when the arguments say so, until the agents are done.
fn watch(
    shared: &Shared,
    timeline: &Mutex<Timeline>,
    finished: &std::sync::atomic::AtomicBool,
    server: &Mutex<Option<schoolfleet_e2e::ServerProcess>>,
    server_pid: &dyn Fn() -> Option<u32>,
    storm: tokio::sync::watch::Sender<u32>,
) {
    let args = &shared.args;
    let c = &shared.counters;
    let ramp_end = shared.deadline - args.duration;
    let all = args.agents as i64;
    let mut storm_reports = 0;
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let now = Instant::now();
        let server_now = server_pid().and_then(|pid| sample(&pid.to_string()));
        let mut t = timeline.lock().unwrap();
        if let Some(s) = server_now {
            t.server_max_rss_kib = t.server_max_rss_kib.max(s.rss_kib);
            if matches!(t.storm, Some((_, None))) {
                t.storm_max_rss_kib = t.storm_max_rss_kib.max(s.rss_kib);
            }
        }
        let online = c.online.load(Ordering::Relaxed);
        // Steady: every agent connected and every startup report answered
        // (or lost with a stream that broke).
        let reports_settled = Counters::get(&c.reports_acked)
            + Counters::get(&c.report_errors)
            + Counters::get(&c.reports_lost)
            >= Counters::get(&c.reports);
        if t.all_online.is_none()
            && online == all
            && reports_settled
            && let Some(s) = server_now
        {
            t.all_online = Some((now, s));
            shared.steady.store(true, Ordering::Relaxed);
        }
        // The steady state ends with the first event of the run.
        let first_event = [
            args.boot_storm,
            Some(args.fanout_at).filter(|_| args.exec_fanout.is_some() || args.forwards.is_some()),
            args.kill_server_at,
        ]
        .into_iter()
        .flatten()
        .map(|at| ramp_end + at)
        .chain([shared.deadline])
        .min()
        .unwrap_or(shared.deadline);
        if t.server_end.is_none()
            && t.all_online.is_some()
            && now >= first_event
            && let Some(s) = server_now
        {
            t.server_end = Some((now, s));
            shared.steady.store(false, Ordering::Relaxed);
        }
        // The boot storm: every agent's startup report at once.
        if let Some(at) = args.boot_storm
            && t.storm.is_none()
            && now >= ramp_end + at
        {
            storm_reports = Counters::get(&c.reports_acked) + args.agents as u64;
            t.storm = Some((now, None));
            storm.send_modify(|n| *n += 1);
        }
        if let Some((_, done @ None)) = &mut t.storm
            && Counters::get(&c.reports_acked) >= storm_reports
        {
            *done = Some(now);
        }
        // The reconnect storm: SIGKILL, start again, wait for all.
        if let Some(at) = args.kill_server_at
            && t.restart.is_none()
            && now >= ramp_end + at
        {
            drop(t);
            let mut guard = server.lock().unwrap();
            if let Some(server) = guard.as_mut() {
                let killed = Instant::now();
                server.kill();
                server.restart();
                timeline.lock().unwrap().restart = Some((killed, Instant::now(), None));
            }
            continue;
        }
        if let Some((_, restarted, back @ None)) = &mut t.restart
            && now > *restarted + Duration::from_secs(1)
            && online == all
        {
            *back = Some(now);
        }
    }
}

fn print_server(t: &Timeline, agents: usize) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    if let (Some(idle), Some((at, online))) = (t.server_idle, t.all_online) {
        let per_agent = online.rss_kib.saturating_sub(idle.rss_kib) as f64 / agents as f64;
        println!(
            "  server RSS idle {:.1} MiB, all {agents} online {:.1} MiB ({per_agent:.1} KiB per agent), highest sampled {:.1} MiB",
            mib(idle.rss_kib),
            mib(online.rss_kib),
            mib(t.server_max_rss_kib),
        );
        if let Some((end, last)) = t.server_end
            && end > at
        {
            let minutes = (end - at).as_secs_f64() / 60.0;
            let cpu = last.cpu.saturating_sub(online.cpu).as_secs_f64();
            println!(
                "  server at the end of the steady state: RSS {:.1} MiB ({:.1} KiB per agent above idle)",
                mib(last.rss_kib),
                last.rss_kib.saturating_sub(idle.rss_kib) as f64 / agents as f64
            );
            println!(
                "  server CPU in the steady state: {cpu:.2} s over {:.0} s = {:.3} ms per agent-minute ({:.1} % of one core); peak RSS of the process {:.1} MiB",
                minutes * 60.0,
                cpu * 1000.0 / (agents as f64 * minutes),
                100.0 * cpu / (minutes * 60.0),
                mib(last.peak_rss_kib)
            );
        }
    }
    if let Some((started, done)) = t.storm {
        match done {
            Some(done) => {
                let took = (done - started).as_secs_f64();
                println!(
                    "  boot storm: {agents} startup reports acknowledged in {took:.2} s = {:.1} reports/s; server RSS at most {:.1} MiB meanwhile",
                    agents as f64 / took,
                    mib(t.storm_max_rss_kib)
                );
            }
            None => println!(
                "  boot storm: not every report was acknowledged; server RSS at most {:.1} MiB meanwhile",
                mib(t.storm_max_rss_kib)
            ),
        }
    }
    if let Some((killed, restarted, back)) = t.restart {
        match back {
            Some(back) => println!(
                "  reconnect storm: server killed, running again after {:.2} s; all {agents} agents back {:.2} s after the restart",
                (restarted - killed).as_secs_f64(),
                (back - restarted).as_secs_f64()
            ),
            None => println!("  reconnect storm: not every agent came back"),
        }
    }
}
