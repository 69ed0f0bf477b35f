//! End-to-end harness: the real `schoolfleet-server`, `schoolfleet-agent`
//! and `schoolfleet` binaries as child processes on this machine.
//!
//! `cargo test --workspace` builds the binaries before any test runs,
//! because each binary crate has integration tests of its own. Every child
//! is killed on drop, so a failing test leaves no process behind.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of a workspace binary next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>; a
    // binary of this crate (the benchmark) sits in target/<profile> itself.
    let dir = exe.parent().expect("target directory");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("target directory")
    } else {
        dir
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds every binary",
        path.display()
    );
    path
}

/// A command with the caller's environment minus every SCHOOLFLEET_*
/// variable, so that a developer's own profile cannot leak into a test.
pub fn clean_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("SCHOOLFLEET_") {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stop_child(child: &mut Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, signal);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A `schoolfleet-server` process on SQLite in a temp directory.
pub struct ServerProcess {
    pub data_dir: PathBuf,
    pub port: u16,
    /// Extra environment (configuration) for the server process.
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl ServerProcess {
    /// Starts a server with short agent intervals, suited to tests.
    pub fn start(data_dir: &Path) -> ServerProcess {
        Self::start_with_env(data_dir, &[])
    }

    /// Starts one of several replicas: it announces its own URL, so that
    /// remote sessions started on the other replicas are relayed to it.
    pub fn start_replica(data_dir: &Path, env: &[(&str, &str)]) -> ServerProcess {
        let port = free_port();
        let advertise = format!("https://127.0.0.1:{port}");
        let mut env: Vec<(&str, &str)> = env.to_vec();
        env.push(("SCHOOLFLEET_SERVER__ADVERTISE_URL", &advertise));
        let mut server = Self::configured(data_dir, &env);
        server.port = port;
        server.restart();
        server
    }

    /// Starts a server with extra configuration variables.
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> ServerProcess {
        let mut server = Self::configured(data_dir, env);
        server.restart();
        server
    }

    fn configured(data_dir: &Path, env: &[(&str, &str)]) -> ServerProcess {
        ServerProcess {
            data_dir: data_dir.to_owned(),
            port: free_port(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn ca_pin(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("ca.pin"))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn bootstrap_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("bootstrap-admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    /// (Re)starts the process on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("server.log"))
            .unwrap();
        let child = clean_command(&bin("schoolfleet-server"))
            .args(["run", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("SCHOOLFLEET_AGENTS__HEARTBEAT_INTERVAL", "1s")
            .env("SCHOOLFLEET_AGENTS__ONLINE_WINDOW", "5s")
            .env("SCHOOLFLEET_SERVER__SHUTDOWN_GRACE", "2s")
            // The step-up is off unless a test turns it on (in `env`).
            .env("SCHOOLFLEET_SESSIONS__REQUIRE_MFA", "[]")
            .env("RUST_LOG", "info,schoolfleet_server=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn schoolfleet-server");
        self.child = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(30), "the server to listen", || {
            self.data_dir.join("ca.pin").exists()
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// SIGTERM, as systemd does, and wait for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// SIGKILL: the server dies without any chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// An admin CLI logged in as the bootstrap admin.
    pub fn admin_cli(&self, config_dir: &Path) -> CliRunner {
        CliRunner {
            config_dir: config_dir.to_owned(),
            server: self.url(),
            ca_pin: self.ca_pin(),
            token: self.bootstrap_token(),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the `schoolfleet` CLI with a given server, pin and token.
#[derive(Debug, Clone)]
pub struct CliRunner {
    pub config_dir: PathBuf,
    pub server: String,
    pub ca_pin: String,
    pub token: String,
}

impl CliRunner {
    pub fn with_token(&self, token: &str) -> CliRunner {
        CliRunner {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    /// The environment that points the CLI at this server as this user.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "SCHOOLFLEET_CONFIG_DIR",
                self.config_dir.display().to_string(),
            ),
            ("SCHOOLFLEET_SERVER", self.server.clone()),
            ("SCHOOLFLEET_CA_PIN", self.ca_pin.clone()),
            ("SCHOOLFLEET_TOKEN", self.token.clone()),
        ]
    }

    /// The configured command, for callers that spawn it themselves
    /// (long-running sessions, a PTY).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = clean_command(&bin("schoolfleet"));
        command.envs(self.env_vars()).args(args);
        command
    }

    /// Creates a user with one role binding and returns a CLI acting as
    /// that user. `extra` goes to `user add` (e.g. `--remote exec,cp`).
    pub fn user(&self, name: &str, role_at_scope: &str, extra: &[&str]) -> CliRunner {
        let mut args = vec!["user", "add", name, "--role", role_at_scope];
        args.extend_from_slice(extra);
        self.ok(&args);
        let secret = self.json(&["token", "create", "--user", name])["secret"]
            .as_str()
            .expect("token secret")
            .to_owned();
        self.with_token(&secret)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("spawn schoolfleet")
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "schoolfleet {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("CLI output is UTF-8")
    }

    /// Runs with `-o json` and parses the output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        let text = self.ok(&full);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}\n{text}"))
    }

    /// Runs with `-o json`; returns (success, parsed stdout) without
    /// requiring success (for commands that print data and then fail).
    pub fn json_result(&self, args: &[&str]) -> (bool, serde_json::Value) {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        let out = self.run(&full);
        let value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}\n{}", output_text(&out)));
        (out.status.success(), value)
    }

    /// Creates an enrolment token and returns its secret.
    pub fn enrollment_token(&self, school: &str, expires: &str, uses: u32) -> String {
        let created = self.json(&[
            "enroll-token",
            "create",
            "--school",
            school,
            "--class",
            "schueler-pc",
            "--expires",
            expires,
            "--uses",
            &uses.to_string(),
        ]);
        created["secret"]
            .as_str()
            .expect("secret in output")
            .to_owned()
    }
}

/// A `schoolfleet-agent` with its own state directory.
pub struct AgentProcess {
    pub state_dir: PathBuf,
    child: Option<Child>,
}

impl AgentProcess {
    pub fn new(state_dir: &Path) -> AgentProcess {
        AgentProcess {
            state_dir: state_dir.to_owned(),
            child: None,
        }
    }

    fn command(&self) -> Command {
        let mut command = clean_command(&bin("schoolfleet-agent"));
        command.arg("--state-dir").arg(&self.state_dir);
        command
    }

    pub fn enroll(&self, server_url: &str, token: &str) -> Output {
        self.enroll_with(server_url, token, &[])
    }

    /// Enrols with extra flags (`--host-identifier instance` lets several
    /// agents on this one machine be separate devices).
    pub fn enroll_with(&self, server_url: &str, token: &str, args: &[&str]) -> Output {
        self.command()
            .args(["enroll", "--server", server_url])
            .args(args)
            .env("SCHOOLFLEET_AGENT_TOKEN", token)
            .output()
            .expect("spawn schoolfleet-agent enroll")
    }

    /// Runs another `schoolfleet-agent` subcommand against this state
    /// directory (`sessions`, `sessions end`).
    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("spawn schoolfleet-agent")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("agent.log")).unwrap_or_default()
    }

    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts `schoolfleet-agent run` with extra flags.
    pub fn start_with(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "agent already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join("agent.log"))
            .unwrap();
        let child = self
            .command()
            .arg("run")
            .args(args)
            .env("SCHOOLFLEET_AGENT_LOG", "info,schoolfleet_agent=debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn schoolfleet-agent run");
        self.child = Some(child);
        let socket = self.state_dir.join("agent.sock");
        wait_until(
            Duration::from_secs(10),
            "the agent's control socket",
            || socket.exists(),
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// SIGKILL: the agent dies without any chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `schoolfleet-agent collect-now`: returns the new report's id.
    pub fn collect_now(&self) -> String {
        let out = self.command().arg("collect-now").output().unwrap();
        assert!(
            out.status.success(),
            "collect-now failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// `schoolfleet-agent report TITLE`: a service-desk ticket from this device.
    pub fn report(&self, title: &str) -> Output {
        self.command()
            .args(["report", title])
            .output()
            .expect("spawn schoolfleet-agent report")
    }

    /// `schoolfleet-agent status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        let out = self.command().arg("status").output().unwrap();
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A server with county `kus`, school `kus012` and `agents` agents on this
/// machine, each enrolled as its own device (`--host-identifier
/// instance`) and connected. The school's consent policy is `none` unless
/// a test sets another.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub server: ServerProcess,
    pub cli: CliRunner,
    pub agents: Vec<AgentProcess>,
    pub device_ids: Vec<String>,
}

impl Fleet {
    pub fn start(agents: usize, server_env: &[(&str, &str)], agent_args: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("server")).unwrap();
        let server = ServerProcess::start_with_env(&dir.path().join("server"), server_env);
        let cli = server.admin_cli(&dir.path().join("cli"));
        cli.ok(&["county", "add", "kus", "--name", "Landkreis Kusel"]);
        cli.ok(&[
            "school",
            "add",
            "kus012",
            "--county",
            "kus",
            "--name",
            "IGS Kusel",
        ]);
        cli.ok(&["consent", "set", "--school", "kus012", "--mode", "none"]);
        let token = cli.enrollment_token("kus012", "1h", agents.max(1) as u32);
        let mut fleet = Fleet {
            dir,
            server,
            cli,
            agents: Vec::new(),
            device_ids: Vec::new(),
        };
        for n in 0..agents {
            let mut agent = AgentProcess::new(&fleet.dir.path().join(format!("agent{n}")));
            let out = agent.enroll_with(
                &fleet.server.url(),
                &token,
                &["--host-identifier", "instance"],
            );
            assert!(out.status.success(), "enrol: {}", output_text(&out));
            agent.start_with(agent_args);
            wait_until(Duration::from_secs(30), "the agent to connect", || {
                agent.status()["connected"] == true
            });
            fleet
                .device_ids
                .push(agent.status()["device_id"].as_str().unwrap().to_owned());
            fleet.agents.push(agent);
        }
        fleet
    }

    /// The first device's id.
    pub fn device(&self) -> &str {
        &self.device_ids[0]
    }
}

/// A marker no other test run on this machine uses: `LABEL-<pid>-<n>`.
/// Tests that look for their processes in /proc must use one, since CI
/// and a developer's run may share the machine.
pub fn unique_marker(label: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{label}-{}-{n}", std::process::id())
}

/// A `sleep` argument (over an hour) that is unique to this run, like
/// [`unique_marker`]: `3600.<pid><n>`.
pub fn unique_sleep_seconds() -> String {
    let marker = unique_marker("");
    let digits: String = marker.chars().filter(char::is_ascii_digit).collect();
    format!("3600.{digits}")
}

/// Pids of processes whose command line is exactly `argv`.
pub fn pids_with_cmdline(argv: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), &[0]].concat())
        .collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

/// True while a process with this pid exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

/// Collects everything a reader produces, on a thread.
pub fn collect(mut reader: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = reader.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buffer
}

pub fn text_of(buffer: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

pub fn wait_for_output(buffer: &Arc<Mutex<Vec<u8>>>, needle: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if text_of(buffer).contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "timed out waiting for {what} ({needle:?}); output so far:\n{}",
        text_of(buffer)
    );
}

/// An echo server: every connection gets its bytes back, then EOF.
pub fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut stream);
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

/// Sends `payload` through the TCP port `port` (a forward to an
/// [`echo_server`]), half-closes, and returns all that came back.
pub fn echo_roundtrip(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sent = payload.to_vec();
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        // Half-close: the echo server answers with EOF after it.
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut received = Vec::new();
    stream.read_to_end(&mut received).unwrap();
    sender.join().unwrap();
    received
}
