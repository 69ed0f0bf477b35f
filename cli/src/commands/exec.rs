//! `exec DEVICE -- CMD…` and the fan-out `exec --school S -- CMD…`.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::{
    Device, DeviceStatus, EnvVar, ExecSpec, SessionSpec, StartSessionRequest, session_spec,
};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::Context;
use super::shell;
use crate::args::ExecArgs;
use crate::client::Api;
use crate::exit::Exit;
use crate::output::{Column, OutputFormat, Record, Ui, col, render_table, wide};
use crate::session::{self, Attach, Attacher, Event};

/// Output kept per device and stream for `-o json`.
const JSON_OUTPUT_LIMIT: usize = 1024 * 1024;

/// A line longer than this is printed in pieces, so one device cannot make
/// the CLI buffer without bound.
const MAX_LINE: usize = 64 * 1024;

pub async fn run(args: ExecArgs, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let env = match &args.env_file {
        Some(path) => read_env_file(path)?,
        None => Vec::new(),
    };
    match args.device.clone() {
        Some(device) => single(device, args, &env, ctx, ui)
            .await
            .map_err(crate::exit::as_session_failure),
        None => fan_out(args, &env, ctx, ui).await,
    }
}

/// `--env-file`: read and checked here, so a bad file fails before any
/// session starts; errors name the line, never a value.
fn read_env_file(path: &std::path::Path) -> anyhow::Result<Vec<EnvVar>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read --env-file {}: {e}", path.display()))?;
    schoolfleet_proto::exec_env::parse_file(&text)
        .map_err(|e| anyhow::anyhow!("--env-file {}: {e}", path.display()))
}

fn exec_kind(argv: &[String], env: &[EnvVar]) -> session_spec::Kind {
    session_spec::Kind::Exec(ExecSpec {
        argv: argv.to_vec(),
        env: env.to_vec(),
    })
}

async fn single(
    device: String,
    args: ExecArgs,
    env: &[EnvVar],
    ctx: &Context,
    ui: &mut Ui<'_>,
) -> anyhow::Result<()> {
    let api = Api::connect_for_sessions(&ctx.profile()?).await?;
    let session = shell::start(
        &api,
        &device,
        &args.purpose,
        exec_kind(&args.command, env),
        ui,
    )
    .await?;
    let channel = Attacher {
        api: api.clone(),
        session_id: session.id().to_owned(),
    }
    .attach(0)
    .await?;
    // A terminal on stdin is a person, not data for the command.
    let input = (!io::stdin().is_terminal()).then(shell::read_stdin_in_thread);
    let controls = shell::watch_signals(false)?;
    let outcome = shell::pump(
        channel,
        input,
        controls,
        session.watch_end(),
        ui.out,
        ui.err,
        api.server(),
    )
    .await;
    shell::close(session, &outcome).await;
    shell::finish(outcome)
}

/// The result for one device of a fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceOutcome {
    Ok,
    Exit(i32),
    Offline,
    Denied(String),
    Timeout,
    Error(String),
}

impl DeviceOutcome {
    pub fn text(&self) -> String {
        match self {
            DeviceOutcome::Ok => "ok".into(),
            DeviceOutcome::Exit(code) => format!("exit {code}"),
            DeviceOutcome::Offline => "offline".into(),
            DeviceOutcome::Denied(why) => format!("denied: {why}"),
            DeviceOutcome::Timeout => "timeout".into(),
            DeviceOutcome::Error(why) => format!("error: {why}"),
        }
    }
}

/// One device's line in the summary, and its JSON object.
#[derive(Debug, Serialize)]
pub struct FanOutRow {
    pub hostname: String,
    pub result: String,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub device_id: String,
    pub stdout: String,
    pub stderr: String,
}

impl Record for FanOutRow {
    const NOUN: &'static str = "devices";
    const COLUMNS: &'static [Column] = &[
        col("hostname", "HOST"),
        col("result", "RESULT"),
        wide("exit_code", "EXIT"),
        col("duration_ms", "DURATION"),
        wide("device_id", "DEVICE ID"),
        wide("stdout", "STDOUT"),
        wide("stderr", "STDERR"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.hostname.clone(),
            self.result.clone(),
            self.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            format!("{:.1}s", self.duration_ms as f64 / 1000.0),
            self.device_id.clone(),
            self.stdout.clone(),
            self.stderr.clone(),
        ]
    }
}

/// The process's exit code after a fan-out: 0 only if every device ran the
/// command with status 0.
pub fn fan_out_exit_code(outcomes: &[DeviceOutcome]) -> u8 {
    if outcomes.iter().all(|o| *o == DeviceOutcome::Ok) {
        0
    } else {
        1
    }
}

/// The summary table (stderr in table mode).
pub fn summary_table(rows: &[FanOutRow]) -> String {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let cells = r.cells();
            vec![cells[0].clone(), cells[1].clone(), cells[3].clone()]
        })
        .collect();
    let counts = rows
        .iter()
        .fold(BTreeMap::<&str, usize>::new(), |mut m, r| {
            let kind = r.result.split([':', ' ']).next().unwrap_or("");
            *m.entry(kind).or_default() += 1;
            m
        });
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(
        "{}{}: {}\n",
        render_table(&["HOST", "RESULT", "DURATION"], &table),
        crate::output::count(rows.len() as u64, "device", "devices"),
        counts.join(", ")
    )
}

/// Collects complete lines from a byte stream; keeps the unfinished rest.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Complete lines (without the newline), in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                lines.push(std::mem::take(&mut self.pending));
            } else {
                self.pending.push(b);
                if self.pending.len() >= MAX_LINE {
                    lines.push(std::mem::take(&mut self.pending));
                }
            }
        }
        lines
    }

    /// The unfinished last line, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// A line from one device, on its way to the terminal.
#[derive(Debug)]
struct Line {
    index: usize,
    stderr: bool,
    bytes: Vec<u8>,
}

async fn fan_out(
    args: ExecArgs,
    env: &[EnvVar],
    ctx: &Context,
    ui: &mut Ui<'_>,
) -> anyhow::Result<()> {
    let school = args.school.clone().unwrap_or_default();
    let api = Api::connect_for_sessions(&ctx.profile()?).await?;
    let request = crate::commands::devices::list_request(&crate::args::DevicesArgs {
        school: Some(school.clone()),
        class: args.class.clone(),
        ..Default::default()
    });
    let devices: Vec<Device> = super::devices::fetch_all(&api, request)
        .await?
        .into_iter()
        .filter(|d| d.status == DeviceStatus::Active as i32)
        .collect();
    if devices.is_empty() {
        anyhow::bail!("no active devices in school {school} match");
    }

    let (lines_tx, mut lines_rx) = mpsc::channel::<Line>(64);
    let limit = std::sync::Arc::new(Semaphore::new(args.concurrency as usize));
    let mut tasks = JoinSet::new();
    for (index, device) in devices.iter().enumerate() {
        let request = StartSessionRequest {
            device: device.id.clone(),
            reason: args.purpose.reason.clone(),
            ticket: args.purpose.ticket.clone().unwrap_or_default(),
            spec: Some(SessionSpec {
                kind: Some(exec_kind(&args.command, env)),
            }),
            step_up: args
                .purpose
                .otp
                .as_deref()
                .map(crate::commands::mfa::totp_step_up),
        };
        let (api, limit, lines) = (api.clone(), limit.clone(), lines_tx.clone());
        let timeout = args.timeout;
        tasks.spawn(async move {
            let _slot = limit.acquire_owned().await;
            let began = Instant::now();
            let outcome =
                tokio::time::timeout(timeout, run_on_device(&api, request, index, &lines))
                    .await
                    .unwrap_or(DeviceOutcome::Timeout);
            (index, outcome, began.elapsed())
        });
    }
    drop(lines_tx);

    let json = ui.format != OutputFormat::Table;
    let hosts: Vec<String> = devices
        .iter()
        .map(|d| for_terminal(&d.hostname).into_owned())
        .collect();
    let mut captured: Vec<[Vec<u8>; 2]> = vec![[Vec::new(), Vec::new()]; devices.len()];
    let mut results: Vec<Option<(DeviceOutcome, Duration)>> = vec![None; devices.len()];
    let mut lines_open = true;
    while lines_open || !tasks.is_empty() {
        tokio::select! {
            line = lines_rx.recv(), if lines_open => match line {
                Some(line) if json => {
                    let buf = &mut captured[line.index][usize::from(line.stderr)];
                    if buf.len() < JSON_OUTPUT_LIMIT {
                        buf.extend_from_slice(&line.bytes);
                        buf.push(b'\n');
                    }
                }
                Some(line) => {
                    let (target, mark): (&mut dyn Write, &str) = if line.stderr {
                        (&mut *ui.err, "!")
                    } else {
                        (&mut *ui.out, "|")
                    };
                    // Exec output is raw like a terminal session; only the
                    // host name (device data) is neutralised.
                    target.write_all(format!("{} {mark} ", hosts[line.index]).as_bytes())?;
                    target.write_all(&line.bytes)?;
                    target.write_all(b"\n")?;
                    target.flush()?;
                }
                None => lines_open = false,
            },
            done = tasks.join_next(), if !tasks.is_empty() => {
                if let Some(Ok((index, outcome, took))) = done {
                    results[index] = Some((outcome, took));
                }
            }
        }
    }

    let mut rows: Vec<(FanOutRow, DeviceOutcome)> = devices
        .iter()
        .zip(results)
        .zip(captured)
        .map(|((device, result), [stdout, stderr])| {
            let (outcome, took) = result.unwrap_or((
                DeviceOutcome::Error("the task failed".into()),
                Duration::ZERO,
            ));
            let row = FanOutRow {
                hostname: device.hostname.clone(),
                result: outcome.text(),
                exit_code: match outcome {
                    DeviceOutcome::Ok => Some(0),
                    DeviceOutcome::Exit(code) => Some(code),
                    _ => None,
                },
                duration_ms: took.as_millis().try_into().unwrap_or(u64::MAX),
                device_id: device.id.clone(),
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            };
            (row, outcome)
        })
        .collect();
    rows.sort_by(|a, b| a.0.hostname.cmp(&b.0.hostname));
    let (rows, outcomes): (Vec<FanOutRow>, Vec<DeviceOutcome>) = rows.into_iter().unzip();
    if json {
        ui.list(&rows)?;
    } else {
        ui.err.write_all(summary_table(&rows).as_bytes())?;
    }
    match fan_out_exit_code(&outcomes) {
        0 => Ok(()),
        code => Err(Exit::silent(code).into()),
    }
}

/// One device: start, attach, stream lines, and classify the end.
async fn run_on_device(
    api: &Api,
    request: StartSessionRequest,
    index: usize,
    lines: &mpsc::Sender<Line>,
) -> DeviceOutcome {
    let session = match session::start(api, request, |_| {}).await {
        Ok(session) => session,
        Err(e) if e.is_offline() => return DeviceOutcome::Offline,
        Err(e) if e.is_denied() => {
            let message = match &e {
                session::StartError::Refused(status) => for_terminal(status.message()).into_owned(),
                other => other.message(api.server()),
            };
            return DeviceOutcome::Denied(message);
        }
        Err(e) => return DeviceOutcome::Error(e.message(api.server())),
    };
    let attacher = Attacher {
        api: api.clone(),
        session_id: session.id().to_owned(),
    };
    let channel = match attacher.attach(0).await {
        Ok(channel) => channel,
        Err(e) => return DeviceOutcome::Error(format!("{e:#}")),
    };
    // One stdin cannot feed many devices: the commands get eof.
    let _ = channel.input.send(session::eof_frame()).await;
    let mut session = session;
    let outcome = collect_lines(channel.frames, index, lines, api.server()).await;
    if matches!(outcome, DeviceOutcome::Exit(_) | DeviceOutcome::Ok) {
        session.settle(std::time::Duration::from_secs(5)).await;
    }
    drop(session);
    outcome
}

async fn collect_lines(
    mut frames: session::FrameStream,
    index: usize,
    lines: &mpsc::Sender<Line>,
    server: &str,
) -> DeviceOutcome {
    let mut splitters = [LineSplitter::default(), LineSplitter::default()];
    let flush = |splitters: &mut [LineSplitter; 2]| {
        let mut rest = Vec::new();
        for (stream, splitter) in splitters.iter_mut().enumerate() {
            if let Some(bytes) = splitter.finish() {
                rest.push(Line {
                    index,
                    stderr: stream == 1,
                    bytes,
                });
            }
        }
        rest
    };
    loop {
        let (stream, bytes) = match session::next_event(&mut frames, server).await {
            Event::Output(bytes) => (0, bytes),
            Event::Stderr(bytes) => (1, bytes),
            Event::Ready(_) | Event::Eof => continue,
            Event::Exit(code) => {
                for line in flush(&mut splitters) {
                    let _ = lines.send(line).await;
                }
                return match code {
                    0 => DeviceOutcome::Ok,
                    code => DeviceOutcome::Exit(code),
                };
            }
            Event::Failed(failure) => {
                for line in flush(&mut splitters) {
                    let _ = lines.send(line).await;
                }
                return DeviceOutcome::Error(failure.to_string());
            }
        };
        for bytes in splitters[stream].push(&bytes) {
            let _ = lines
                .send(Line {
                    index,
                    stderr: stream == 1,
                    bytes,
                })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::fake;
    use schoolfleet_proto::v1::ChannelErrorCode;

    #[test]
    fn lines_are_split_across_frames() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"ab"), Vec::<Vec<u8>>::new());
        assert_eq!(
            s.push(b"c\nde\n\nf"),
            vec![b"abc".to_vec(), b"de".to_vec(), vec![]]
        );
        assert_eq!(s.finish(), Some(b"f".to_vec()));
        assert_eq!(s.finish(), None);
        let long = vec![b'x'; MAX_LINE + 5];
        let pieces = s.push(&long);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].len(), MAX_LINE);
        assert_eq!(s.finish().map(|r| r.len()), Some(5));
    }

    #[tokio::test]
    async fn device_lines_and_result() {
        let (tx, mut rx) = mpsc::channel(16);
        let frames = fake::stream(
            vec![
                fake::ready(0, "", 0),
                fake::output(b"eins\nzw"),
                fake::stderr(b"warnung\n"),
                fake::output(b"ei"),
                fake::exit(3),
            ],
            false,
        );
        let outcome = collect_lines(frames, 2, &tx, "s").await;
        assert_eq!(outcome, DeviceOutcome::Exit(3));
        drop(tx);
        let mut got = Vec::new();
        while let Some(line) = rx.recv().await {
            assert_eq!(line.index, 2);
            got.push((line.stderr, String::from_utf8(line.bytes).unwrap()));
        }
        assert_eq!(
            got,
            [
                (false, "eins".to_string()),
                (true, "warnung".to_string()),
                (false, "zwei".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn broken_device_is_an_error_not_a_hang() {
        let (tx, _rx) = mpsc::channel(16);
        let frames = fake::stream(
            vec![fake::error(ChannelErrorCode::Failed, "sh: not found")],
            false,
        );
        assert_eq!(
            collect_lines(frames, 0, &tx, "s").await,
            DeviceOutcome::Error("sh: not found".into())
        );
    }

    fn row(host: &str, outcome: DeviceOutcome, ms: u64) -> FanOutRow {
        FanOutRow {
            hostname: host.into(),
            result: outcome.text(),
            exit_code: None,
            duration_ms: ms,
            device_id: format!("id-{host}"),
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    #[test]
    fn summary_lists_every_result_and_counts_them() {
        let rows = [
            row("pc01", DeviceOutcome::Ok, 1200),
            row("pc02", DeviceOutcome::Exit(2), 300),
            row("pc03", DeviceOutcome::Offline, 5),
            row(
                "pc04",
                DeviceOutcome::Denied("refused at the device".into()),
                60_000,
            ),
            row("pc05", DeviceOutcome::Timeout, 60_000),
            row("pc06\u{1b}[2J", DeviceOutcome::Error("boom".into()), 10),
        ];
        let text = summary_table(&rows);
        assert_eq!(
            text,
            "HOST         RESULT                         DURATION\n\
             pc01         ok                             1.2s\n\
             pc02         exit 2                         0.3s\n\
             pc03         offline                        0.0s\n\
             pc04         denied: refused at the device  60.0s\n\
             pc05         timeout                        60.0s\n\
             pc06\\x1b[2J  error: boom                    0.0s\n\
             6 devices: 1 denied, 1 error, 1 exit, 1 offline, 1 ok, 1 timeout\n"
        );
        crate::output::assert_keys_match_columns(&rows[0]);
        let one = summary_table(&rows[..1]);
        assert!(one.ends_with("\n1 device: 1 ok\n"), "{one}");
    }

    #[test]
    fn exit_code_is_zero_only_when_all_succeeded() {
        assert_eq!(
            fan_out_exit_code(&[DeviceOutcome::Ok, DeviceOutcome::Ok]),
            0
        );
        assert_eq!(
            fan_out_exit_code(&[DeviceOutcome::Ok, DeviceOutcome::Offline]),
            1
        );
        assert_eq!(fan_out_exit_code(&[DeviceOutcome::Exit(1)]), 1);
    }
}
