//! `sessions list|show|end|play`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::{
    ApprovePlaybackRequest, EndSessionRequest, GetRecordingRequest, GetSessionRequest,
    ListSessionsRequest, Session, SessionKind, SessionState,
};
use serde::Serialize;
use tokio_stream::StreamExt;

use super::Context;
use crate::args::SessionsCommand;
use crate::client::Reply;
use crate::output::{Column, Record, Section, Ui, col, time_opt, wide};

/// Recordings are capped by the server (64 MiB by default); this is only a
/// guard against a server that never stops.
const MAX_RECORDING_BYTES: usize = 512 * 1024 * 1024;

pub fn kind_name(kind: i32) -> &'static str {
    match SessionKind::try_from(kind) {
        Ok(SessionKind::Shell) => "shell",
        Ok(SessionKind::Exec) => "exec",
        Ok(SessionKind::Forward) => "forward",
        Ok(SessionKind::Copy) => "cp",
        _ => "unknown",
    }
}

pub fn state_name(state: i32) -> &'static str {
    match SessionState::try_from(state) {
        Ok(SessionState::Pending) => "pending",
        Ok(SessionState::Active) => "active",
        Ok(SessionState::Ended) => "ended",
        Ok(SessionState::Denied) => "denied",
        Ok(SessionState::Ending) => "ending",
        _ => "unknown",
    }
}

#[derive(Debug, Serialize)]
pub struct SessionRow {
    pub id: String,
    pub kind: &'static str,
    pub state: &'static str,
    pub hostname: String,
    pub actor: String,
    pub started_at: Option<String>,
    pub reason: String,
    pub end_reason: String,
    pub ended_at: Option<String>,
    pub ticket: String,
    pub summary: String,
    pub consent: String,
    /// The second factor proven at the start ("totp", "totp-grace").
    pub step_up: String,
    pub exit_code: Option<i32>,
    pub bytes_to_device: u64,
    pub bytes_from_device: u64,
    pub channels: u32,
    pub has_recording: bool,
    pub device_id: String,
    pub county_id: String,
    pub school_id: String,
}

impl From<&Session> for SessionRow {
    fn from(s: &Session) -> Self {
        Self {
            id: s.id.clone(),
            kind: kind_name(s.kind),
            state: state_name(s.state),
            hostname: s.hostname.clone(),
            actor: s.actor.clone(),
            started_at: time_opt(s.started_at.as_ref()),
            reason: s.reason.clone(),
            end_reason: s.end_reason.clone(),
            ended_at: time_opt(s.ended_at.as_ref()),
            ticket: s.ticket.clone(),
            summary: s.summary.clone(),
            consent: s.consent.clone(),
            step_up: s.step_up.clone(),
            exit_code: s.exit_code,
            bytes_to_device: s.bytes_to_device,
            bytes_from_device: s.bytes_from_device,
            channels: s.channels,
            has_recording: s.has_recording,
            device_id: s.device_id.clone(),
            county_id: s.county_id.clone(),
            school_id: s.school_id.clone(),
        }
    }
}

impl Record for SessionRow {
    const NOUN: &'static str = "sessions";
    const COLUMNS: &'static [Column] = &[
        col("id", "ID"),
        col("kind", "KIND"),
        col("state", "STATE"),
        col("hostname", "HOST"),
        col("actor", "BY"),
        col("started_at", "STARTED"),
        col("reason", "REASON"),
        col("end_reason", "END"),
        wide("ended_at", "ENDED"),
        wide("ticket", "TICKET"),
        wide("summary", "SUMMARY"),
        wide("consent", "CONSENT"),
        wide("step_up", "STEP-UP"),
        wide("exit_code", "EXIT"),
        wide("bytes_to_device", "BYTES TO DEVICE"),
        wide("bytes_from_device", "BYTES FROM DEVICE"),
        wide("channels", "CHANNELS"),
        wide("has_recording", "RECORDING"),
        wide("device_id", "DEVICE ID"),
        wide("county_id", "COUNTY"),
        wide("school_id", "SCHOOL"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.kind.to_owned(),
            self.state.to_owned(),
            self.hostname.clone(),
            self.actor.clone(),
            self.started_at.clone().unwrap_or_default(),
            self.reason.clone(),
            self.end_reason.clone(),
            self.ended_at.clone().unwrap_or_default(),
            self.ticket.clone(),
            self.summary.clone(),
            self.consent.clone(),
            self.step_up.clone(),
            self.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            self.bytes_to_device.to_string(),
            self.bytes_from_device.to_string(),
            self.channels.to_string(),
            crate::output::yes_no(self.has_recording),
            self.device_id.clone(),
            self.county_id.clone(),
            self.school_id.clone(),
        ]
    }
}

impl SessionRow {
    pub fn section(&self) -> Section {
        let mut s = Section::new(format!("Session {}", self.id));
        s.field("Kind", self.kind)
            .field("State", self.state)
            .field("Device", format!("{} ({})", self.hostname, self.device_id))
            .field("School", format!("{} ({})", self.school_id, self.county_id))
            .field("Started by", self.actor.clone())
            .field("Reason", self.reason.clone())
            .field("Ticket", self.ticket.clone())
            .field("What", self.summary.clone())
            .field("Consent", self.consent.clone())
            .field("Step-up", self.step_up.clone())
            .field("Started", self.started_at.clone().unwrap_or_default())
            .field("Ended", self.ended_at.clone().unwrap_or_default())
            .field("End reason", self.end_reason.clone())
            .field(
                "Exit status",
                self.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            )
            .field(
                "Bytes",
                format!(
                    "{} to the device, {} from the device",
                    self.bytes_to_device, self.bytes_from_device
                ),
            )
            .field("Channels", self.channels.to_string())
            .field("Recording", crate::output::yes_no(self.has_recording));
        s
    }
}

pub async fn run(cmd: SessionsCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    match cmd {
        SessionsCommand::List {
            device,
            live,
            limit,
        } => {
            let api = ctx.connect().await?;
            let sessions = api
                .sessions()
                .list_sessions(ListSessionsRequest {
                    device: device.unwrap_or_default(),
                    state: if live { "live" } else { "all" }.into(),
                    limit,
                })
                .await
                .reply(&api)?
                .sessions;
            let rows: Vec<SessionRow> = sessions.iter().map(SessionRow::from).collect();
            ui.list(&rows)?;
        }
        SessionsCommand::Show { id } => {
            let api = ctx.connect().await?;
            let session = api
                .sessions()
                .get_session(GetSessionRequest { session_id: id })
                .await
                .reply(&api)?;
            let row = SessionRow::from(&session);
            ui.one(&row, |out| out.write_all(row.section().render().as_bytes()))?;
        }
        SessionsCommand::End { id, reason } => {
            let api = ctx.connect().await?;
            let ended = api
                .sessions()
                .end_session(EndSessionRequest {
                    session_id: id.clone(),
                    reason,
                })
                .await
                .reply(&api)?
                .session;
            match ended.map(|s| s.state) {
                Some(s) if s == SessionState::Ending as i32 => ui.done(&format!(
                    "Session {id} is ending: the end is recorded, the device has not confirmed the stop yet."
                ))?,
                _ => ui.done(&format!("Ended session {id}."))?,
            }
        }
        SessionsCommand::ApprovePlayback { id, user, reason } => {
            let api = ctx.connect().await?;
            let answer = api
                .sessions()
                .approve_playback(ApprovePlaybackRequest {
                    session_id: id.clone(),
                    user: user.clone(),
                    reason,
                })
                .await
                .reply(&api)?;
            ui.done(&format!(
                "{} may play the recording of session {} until {}.",
                for_terminal(&user),
                for_terminal(&id),
                time_opt(answer.expires_at.as_ref()).unwrap_or_default()
            ))?;
        }
        SessionsCommand::Play {
            id,
            reason,
            speed,
            idle_limit,
            cast,
        } => replay((id, reason), speed, idle_limit, cast, ctx, ui).await?,
    }
    Ok(())
}

/// `sessions play`: fetches the .cast, then writes or plays it.
async fn replay(
    (id, reason): (String, String),
    speed: f64,
    idle_limit: Option<Duration>,
    cast: Option<std::path::PathBuf>,
    ctx: &Context,
    ui: &mut Ui<'_>,
) -> anyhow::Result<()> {
    // A long recording streams for longer than the unary timeout allows.
    let api = crate::client::Api::connect_for_sessions(&ctx.profile()?).await?;
    let mut chunks = api
        .sessions()
        .get_recording(GetRecordingRequest {
            session_id: id,
            reason,
        })
        .await
        .reply(&api)?;
    let mut data = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk =
            chunk.map_err(|s| anyhow::anyhow!(crate::client::describe_status(&s, api.server())))?;
        data.extend_from_slice(&chunk.data);
        if data.len() > MAX_RECORDING_BYTES {
            bail!("the recording is larger than {MAX_RECORDING_BYTES} bytes");
        }
    }
    match cast {
        Some(path) if path.as_os_str() == "-" => ui.out.write_all(&data)?,
        Some(path) => write_cast(&path, &data, ui)?,
        None => {
            let text = String::from_utf8_lossy(&data);
            let cast = parse_cast(&text)?;
            play(&cast, speed, idle_limit, ui).await?;
        }
    }
    Ok(())
}

fn write_cast(path: &Path, data: &[u8], ui: &mut Ui<'_>) -> anyhow::Result<()> {
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))?;
    ui.note(&format!(
        "Wrote {} ({} bytes); replay it with `asciinema play {}`.",
        path.display(),
        data.len(),
        path.display()
    ))?;
    Ok(())
}

/// A parsed asciicast v2 recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Cast {
    pub width: u32,
    pub height: u32,
    /// The header's `idle_time_limit`, used when `--idle-limit` is not given.
    pub idle_time_limit: Option<f64>,
    pub events: Vec<CastEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CastEvent {
    pub time: f64,
    pub kind: String,
    pub data: String,
}

/// Parses the header line and the event lines. A broken event line (a
/// recording cut mid-line) is skipped; a broken header is an error.
pub fn parse_cast(text: &str) -> anyhow::Result<Cast> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: serde_json::Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| anyhow::anyhow!("the recording has no asciicast header"))?;
    if header["version"].as_u64() != Some(2) {
        bail!("the recording is not asciicast version 2");
    }
    let size = |key: &str| header[key].as_u64().and_then(|v| u32::try_from(v).ok());
    let mut events = Vec::new();
    for line in lines {
        let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(line)
        else {
            continue;
        };
        if let [time, kind, data] = items.as_slice()
            && let (Some(time), Some(kind), Some(data)) =
                (time.as_f64(), kind.as_str(), data.as_str())
        {
            events.push(CastEvent {
                time,
                kind: kind.to_owned(),
                data: data.to_owned(),
            });
        }
    }
    Ok(Cast {
        width: size("width").unwrap_or(80),
        height: size("height").unwrap_or(24),
        idle_time_limit: header["idle_time_limit"].as_f64().filter(|v| *v > 0.0),
        events,
    })
}

/// One step of playback: wait, then show.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub delay: Duration,
    pub show: Show,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Show {
    /// Terminal output, written raw (it is a terminal session).
    Output(String),
    /// A marker (e.g. "recording truncated"), shown as a note.
    Marker(String),
}

/// The waits between events: gaps capped at `idle_limit` (else the header's
/// `idle_time_limit`), then divided by `speed`. Times that go backwards
/// count as no wait.
pub fn schedule(cast: &Cast, speed: f64, idle_limit: Option<Duration>) -> Vec<Step> {
    let cap = idle_limit
        .map(|d| d.as_secs_f64())
        .or(cast.idle_time_limit)
        .unwrap_or(f64::INFINITY);
    let mut previous = 0.0;
    let mut steps = Vec::new();
    for event in &cast.events {
        let show = match event.kind.as_str() {
            "o" => Show::Output(event.data.clone()),
            "m" => Show::Marker(event.data.clone()),
            // Input is never recorded; resizes cannot be replayed here.
            _ => continue,
        };
        let gap = (event.time - previous).max(0.0).min(cap);
        previous = event.time.max(previous);
        let delay = Duration::try_from_secs_f64(gap / speed).unwrap_or(Duration::ZERO);
        steps.push(Step { delay, show });
    }
    steps
}

async fn play(
    cast: &Cast,
    speed: f64,
    idle_limit: Option<Duration>,
    ui: &mut Ui<'_>,
) -> anyhow::Result<()> {
    ui.note(&format!(
        "Replaying a {}x{} recording; Ctrl-C stops.",
        cast.width, cast.height
    ))?;
    for step in schedule(cast, speed, idle_limit) {
        tokio::time::sleep(step.delay).await;
        match step.show {
            Show::Output(text) => {
                ui.out.write_all(without_queries(&text).as_bytes())?;
                ui.out.flush()?;
            }
            Show::Marker(text) => writeln!(ui.err, "\r\n[{}]\r", for_terminal(&text))?,
        }
    }
    writeln!(ui.out)?;
    Ok(())
}

/// The recorded output without the sequences that ask the terminal for an
/// answer (cursor position `ESC[6n`, device attributes, colour and title
/// reports, mode and setting queries). Replayed, they would make the
/// admin's terminal answer into its own input, and the answers would reach
/// the shell prompt after the replay.
pub fn without_queries(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\u{1b}') {
        return std::borrow::Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut kept = 0;
    while i < bytes.len() {
        if bytes[i] != 0x1b || i + 1 >= bytes.len() {
            i += 1;
            continue;
        }
        let (end, query) = match bytes[i + 1] {
            b'[' => csi(bytes, i + 2),
            b']' => string_sequence(bytes, i + 2, |body| body.ends_with(b"?")),
            b'P' => string_sequence(bytes, i + 2, |body| {
                body.starts_with(b"$q") || body.starts_with(b"+q")
            }),
            _ => (i + 2, false),
        };
        if query {
            out.push_str(&text[kept..i]);
            kept = end;
        }
        i = end.max(i + 1);
    }
    out.push_str(&text[kept.min(text.len())..]);
    std::borrow::Cow::Owned(out)
}

/// A CSI sequence from its parameters at `start`: (end, is a query).
fn csi(bytes: &[u8], start: usize) -> (usize, bool) {
    let mut j = start;
    while j < bytes.len() && (0x30..=0x3f).contains(&bytes[j]) {
        j += 1;
    }
    let params = &bytes[start..j];
    while j < bytes.len() && (0x20..=0x2f).contains(&bytes[j]) {
        j += 1;
    }
    let intermediates_end = j;
    let Some(&last) = bytes.get(j) else {
        return (bytes.len(), false);
    };
    let intermediates = &bytes[start + params.len()..intermediates_end];
    let first_param: Option<u32> = std::str::from_utf8(params)
        .ok()
        .and_then(|p| p.split(';').next())
        .and_then(|p| p.parse().ok());
    let query = match last {
        // Device status and cursor position reports, device attributes.
        b'n' | b'c' => true,
        // Window and title reports (not the other window operations).
        b't' => matches!(
            first_param,
            Some(11 | 13 | 14 | 15 | 16 | 18 | 19 | 20 | 21)
        ),
        // DECRQM mode queries.
        b'p' => intermediates == b"$",
        // XTVERSION, and the keyboard protocol query.
        b'q' => params.starts_with(b">"),
        b'u' => params.starts_with(b"?"),
        // DECREQTPARM.
        b'x' => intermediates.is_empty(),
        _ => false,
    };
    (j + 1, query)
}

/// An OSC or DCS string from `start` to BEL or ST: (end, is a query).
fn string_sequence(bytes: &[u8], start: usize, query: impl Fn(&[u8]) -> bool) -> (usize, bool) {
    let mut j = start;
    while j < bytes.len() {
        match bytes[j] {
            0x07 => return (j + 1, query(&bytes[start..j])),
            0x1b if bytes.get(j + 1) == Some(&b'\\') => return (j + 2, query(&bytes[start..j])),
            _ => j += 1,
        }
    }
    (bytes.len(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"version": 2, "width": 100, "height": 30, "timestamp": 1795000000, "env": {"TERM": "xterm-256color"}}
[0.5, "o", "$ "]
[1.0, "r", "120x40"]
[1.5, "o", "ls\r\n"]
[11.5, "o", "a.txt  b.txt\r\n"]
[12.0, "m", "recording truncated at 67108864 bytes"]
[12.0, "o", "\u001b[1mdone\u001b[0m"]
[12.0, "o", "half
"#;

    #[test]
    fn parses_header_and_events_and_skips_a_cut_line() {
        let cast = parse_cast(SAMPLE).unwrap();
        assert_eq!((cast.width, cast.height), (100, 30));
        assert_eq!(cast.events.len(), 6);
        assert_eq!(cast.events[5].data, "\u{1b}[1mdone\u{1b}[0m");
        assert!(parse_cast("not json\n").is_err());
        assert!(parse_cast("{\"version\": 1}\n").is_err());
    }

    fn delays(steps: &[Step]) -> Vec<f64> {
        steps.iter().map(|s| s.delay.as_secs_f64()).collect()
    }

    #[test]
    fn timing_follows_the_recording() {
        let cast = parse_cast(SAMPLE).unwrap();
        let steps = schedule(&cast, 1.0, None);
        assert_eq!(delays(&steps), [0.5, 1.0, 10.0, 0.5, 0.0]);
        assert_eq!(steps[4].show, Show::Output("\u{1b}[1mdone\u{1b}[0m".into()));
        assert!(matches!(steps[3].show, Show::Marker(_)));
    }

    #[test]
    fn speed_and_idle_limit_shorten_the_waits() {
        let cast = parse_cast(SAMPLE).unwrap();
        let steps = schedule(&cast, 2.0, Some(Duration::from_secs(2)));
        assert_eq!(delays(&steps), [0.25, 0.5, 1.0, 0.25, 0.0]);
        // The header's idle_time_limit applies when no flag is given.
        let mut limited = cast.clone();
        limited.idle_time_limit = Some(3.0);
        assert_eq!(
            delays(&schedule(&limited, 1.0, None)),
            [0.5, 1.0, 3.0, 0.5, 0.0]
        );
    }

    #[test]
    fn time_going_backwards_does_not_wait() {
        let cast = Cast {
            width: 80,
            height: 24,
            idle_time_limit: None,
            events: vec![
                CastEvent {
                    time: 5.0,
                    kind: "o".into(),
                    data: "a".into(),
                },
                CastEvent {
                    time: 1.0,
                    kind: "o".into(),
                    data: "b".into(),
                },
                CastEvent {
                    time: 6.0,
                    kind: "o".into(),
                    data: "c".into(),
                },
            ],
        };
        assert_eq!(delays(&schedule(&cast, 1.0, None)), [5.0, 0.0, 1.0]);
    }

    #[test]
    fn session_rows_match_their_columns() {
        let session = Session {
            id: "s1".into(),
            kind: SessionKind::Forward as i32,
            state: SessionState::Ended as i32,
            hostname: "kus012-pc01\u{1b}[2J".into(),
            exit_code: Some(0),
            ..Default::default()
        };
        let row = SessionRow::from(&session);
        crate::output::assert_keys_match_columns(&row);
        assert_eq!((row.kind, row.state), ("forward", "ended"));
        let text = row.section().render();
        assert!(text.contains("kus012-pc01\\x1b[2J"), "{text}");
        assert!(!text.contains('\u{1b}'));
    }

    #[test]
    fn replay_drops_what_would_make_the_terminal_answer() {
        let recorded = "\u{1b}[6n$ ls\r\n\u{1b}[1mfett\u{1b}[0m\u{1b}[c\u{1b}[>0c\
            \u{1b}]11;?\u{7}\u{1b}]0;Titel\u{7}\u{1b}[18t\u{1b}[8;30;100t\
            \u{1b}[?2004$p\u{1b}P$qm\u{1b}\\\u{1b}[?u\u{1b}[5nEnde";
        assert_eq!(
            without_queries(recorded),
            "$ ls\r\n\u{1b}[1mfett\u{1b}[0m\u{1b}]0;Titel\u{7}\u{1b}[8;30;100tEnde"
        );
        assert_eq!(without_queries("ohne Escape"), "ohne Escape");
        // A sequence cut at the end of an event is kept as it is.
        assert_eq!(without_queries("a\u{1b}[1"), "a\u{1b}[1");
    }
}
