//! `shell DEVICE`: an interactive shell on the device's PTY. Also the
//! stdin/stdout pump that single-device `exec` shares.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Read, Write};
use std::time::Duration;

use schoolfleet_proto::v1::{
    ClientFrame, SessionSpec, ShellSpec, StartSessionRequest, WindowSize, session_spec,
};
use tokio::sync::{mpsc, watch};

use super::Context;
use crate::args::{PurposeArgs, ShellArgs};
use crate::client::Api;
use crate::exit::{COMMAND_NOT_FOUND, Exit, SESSION_FAILURE};
use crate::output::Ui;
use crate::session::{self, Attach, Attacher, Channel, Ended, Event, Session};
use crate::terminal::{self, Crossterm, RawGuard};

/// Size for the remote PTY when stdin is not a terminal.
const DEFAULT_SIZE: (u16, u16) = (80, 24);

/// How long to wait for the channel's last frames once the server says the
/// session is over: the final output and `exit` may still be on the way.
const END_GRACE: Duration = Duration::from_secs(2);

/// Bytes read from stdin at a time (well below the 256 KiB frame limit).
const STDIN_CHUNK: usize = 64 * 1024;
const _: () = assert!(
    STDIN_CHUNK <= crate::session::MAX_FRAME_BYTES,
    "input frames must fit the protocol's frame limit"
);

pub async fn run(args: ShellArgs, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let interactive = io::stdin().is_terminal();
    // A terminal that reports 0x0 (some serial consoles) gets the default.
    let (cols, rows) = if interactive {
        terminal_size().unwrap_or(DEFAULT_SIZE)
    } else {
        DEFAULT_SIZE
    };
    let term = std::env::var("TERM")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "xterm-256color".into());
    let spec = session_spec::Kind::Shell(ShellSpec {
        term,
        size: Some(WindowSize {
            cols: cols.into(),
            rows: rows.into(),
        }),
    });

    let api = Api::connect_for_sessions(&ctx.profile()?).await?;
    let session = start(&api, &args.device, &args.purpose, spec, ui).await?;
    let channel = Attacher {
        api: api.clone(),
        session_id: session.id().to_owned(),
    }
    .attach(0)
    .await?;

    // The terminal may have changed size while the device's user was asked.
    let mut size = (cols, rows);
    if let Some(now) = terminal_size().filter(|_| interactive)
        && now != size
    {
        size = now;
        let _ = channel
            .input
            .send(session::resize_frame(now.0, now.1))
            .await;
    }
    let controls = watch_signals(interactive)?;
    let input = if interactive {
        read_terminal_in_thread(size)
    } else {
        end_with_ctrl_d(read_stdin_in_thread())
    };
    terminal::install_panic_hook();
    let guard = if interactive {
        Some(RawGuard::enable(Crossterm)?)
    } else {
        None
    };
    let outcome = pump(
        channel,
        Some(input),
        controls,
        session.watch_end(),
        ui.out,
        ui.err,
        api.server(),
    )
    .await;
    // Restore the terminal before anything is printed about the outcome.
    drop(guard);
    close(session, &outcome).await;
    finish(outcome)
}

/// Starts a session of `kind`, telling the person when the device's user is
/// asked.
pub(crate) async fn start(
    api: &Api,
    device: &str,
    purpose: &PurposeArgs,
    kind: session_spec::Kind,
    ui: &mut Ui<'_>,
) -> anyhow::Result<Session> {
    let mut request = StartSessionRequest {
        device: device.to_owned(),
        reason: purpose.reason.clone(),
        ticket: purpose.ticket.clone().unwrap_or_default(),
        spec: Some(SessionSpec { kind: Some(kind) }),
        step_up: purpose
            .otp
            .as_deref()
            .map(crate::commands::mfa::totp_step_up),
    };
    loop {
        let err = &mut *ui.err;
        match session::start(api, request.clone(), |waiting| {
            let _ = writeln!(err, "{}", session::waiting_message(device, waiting));
        })
        .await
        {
            Ok(session) => return Ok(session),
            // Asked for a second factor and none was given: ask the person.
            Err(session::StartError::Refused(status))
                if request.step_up.is_none() && crate::commands::mfa::wants_step_up(&status) =>
            {
                let code = crate::commands::mfa::ask_code(ui, status.message())?;
                request.step_up = Some(crate::commands::mfa::totp_step_up(&code));
            }
            Err(e) => return Err(anyhow::anyhow!(e.message(api.server()))),
        }
    }
}

/// How long to wait for the server to record the end of a session whose
/// remote process exited (see [`Session::settle`]).
const SETTLE: Duration = Duration::from_secs(5);

/// Ends a session after its channel: a remote exit waits for the server's
/// record of it; anything else (a stop, a closed local pipe) ends at once.
pub(crate) async fn close(mut session: Session, outcome: &Outcome) {
    if matches!(outcome, Outcome::Exited(code) if *code != SIGPIPE_STATUS) {
        session.settle(SETTLE).await;
    }
    drop(session);
}

/// Turns how the channel ended into the process's exit.
pub(crate) fn finish(outcome: Outcome) -> anyhow::Result<()> {
    match outcome {
        Outcome::Exited(0) => Ok(()),
        Outcome::Exited(code) => Err(Exit::remote_status(code).into()),
        Outcome::Failed(message) => Err(Exit::with_message(SESSION_FAILURE, message).into()),
        Outcome::NotFound(message) => Err(Exit::with_message(COMMAND_NOT_FOUND, message).into()),
    }
}

/// What the stdin thread reads.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Data(Vec<u8>),
    /// The admin's terminal has this size now; sent before the data read
    /// after the change, so keystrokes never overtake a resize.
    Resize(u16, u16),
    Eof,
}

/// Reads stdin on a plain thread (not tokio's blocking pool: a read that
/// never returns must not delay the runtime's shutdown). Bounded, so a fast
/// pipe waits for the device instead of filling memory.
pub fn read_stdin_in_thread() -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || read_into(io::stdin(), None, &tx));
    rx
}

/// Like [`read_stdin_in_thread`] for a terminal: before each chunk it
/// compares the terminal's size with the last one seen and sends a
/// resize first when it changed. SIGWINCH alone races with the keystrokes
/// typed right after a resize (`stty size` could see the old size).
pub fn read_terminal_in_thread(size: (u16, u16)) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || read_into(io::stdin(), Some((terminal_size, size)), &tx));
    rx
}

/// The terminal's size, when it reports a usable one.
fn terminal_size() -> Option<(u16, u16)> {
    crossterm::terminal::size()
        .ok()
        .filter(|&(cols, rows)| cols > 0 && rows > 0)
}

/// A way to read the terminal's size, and the size last sent.
type SizeProbe = (fn() -> Option<(u16, u16)>, (u16, u16));

fn read_into(mut source: impl Read, mut probe: Option<SizeProbe>, tx: &mpsc::Sender<Input>) {
    let mut buf = vec![0; STDIN_CHUNK];
    loop {
        let input = match source.read(&mut buf) {
            Ok(0) => Input::Eof,
            Ok(n) => Input::Data(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A broken stdin ends the input like EOF.
            Err(_) => Input::Eof,
        };
        if let Some((read_size, last)) = &mut probe
            && let Some(now) = read_size()
            && now != *last
        {
            *last = now;
            if tx.blocking_send(Input::Resize(now.0, now.1)).is_err() {
                return;
            }
        }
        let last = input == Input::Eof;
        if tx.blocking_send(input).is_err() || last {
            return;
        }
    }
}

/// Piped input for a shell ends with Ctrl-D before `eof`: a PTY has no
/// half-close, so this is how the remote shell learns that its input is
/// over (as when a person presses Ctrl-D), and `… | schoolfleet shell`
/// ends instead of waiting at the prompt.
pub fn end_with_ctrl_d(mut input: mpsc::Receiver<Input>) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(item) = input.recv().await {
            if item == Input::Eof && tx.send(Input::Data(vec![CTRL_D])).await.is_err() {
                return;
            }
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// VEOF of a terminal in its default settings.
const CTRL_D: u8 = 0x04;

/// Signals while a session runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Control {
    /// The admin's terminal changed size (SIGWINCH).
    Resize(u16, u16),
    /// SIGINT, SIGTERM or SIGHUP: end the session and exit.
    Stop(&'static str),
}

/// Turns SIGINT/SIGTERM/SIGHUP (and SIGWINCH when `resizes`) into
/// [`Control`]s. Handling them, instead of dying, is what lets the terminal
/// guard restore the terminal. In raw mode Ctrl-C is just a byte for the
/// remote shell, so SIGINT only comes from `kill`.
#[cfg(unix)]
pub fn watch_signals(resizes: bool) -> io::Result<mpsc::Receiver<Control>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut winch = signal(SignalKind::window_change())?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let control = tokio::select! {
                _ = interrupt.recv() => Control::Stop("SIGINT"),
                _ = terminate.recv() => Control::Stop("SIGTERM"),
                _ = hangup.recv() => Control::Stop("SIGHUP"),
                _ = winch.recv(), if resizes => match crossterm::terminal::size() {
                    Ok((cols, rows)) => Control::Resize(cols, rows),
                    Err(_) => continue,
                },
            };
            if tx.send(control).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Windows: Ctrl+Break and closing the console stop the session (Ctrl+C
/// is a key for the remote shell in raw mode); there is no SIGWINCH, so the
/// console size is polled.
#[cfg(windows)]
pub fn watch_signals(resizes: bool) -> io::Result<mpsc::Receiver<Control>> {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
    let mut interrupt = ctrl_c()?;
    let mut brk = ctrl_break()?;
    let mut close = ctrl_close()?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut size = crossterm::terminal::size().ok();
        let mut poll = tokio::time::interval(Duration::from_millis(250));
        loop {
            let control = tokio::select! {
                _ = interrupt.recv() => Control::Stop("Ctrl+C"),
                _ = brk.recv() => Control::Stop("Ctrl+Break"),
                _ = close.recv() => Control::Stop("console closed"),
                _ = poll.tick(), if resizes => match crossterm::terminal::size() {
                    Ok(now) if Some(now) != size => {
                        size = Some(now);
                        Control::Resize(now.0, now.1)
                    }
                    _ => continue,
                },
            };
            if tx.send(control).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// 128 + SIGPIPE: how a shell reports a command whose reader went away.
const SIGPIPE_STATUS: i32 = 141;

/// How a shell or exec channel ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The remote process's status.
    Exited(i32),
    /// The session or the connection failed; the message says why.
    Failed(String),
    /// The device could not find the program to run: exit 127, as a shell
    /// (and so ssh) does.
    NotFound(String),
}

/// Moves bytes between the local stdio and one channel until the channel's
/// last frame, a stop signal, or the session's end.
///
/// Output is written raw: it is a terminal session. Frames towards the
/// device wait in a small queue, and stdin is only read while it is empty,
/// so a slow device slows the reader; device output keeps flowing meanwhile.
/// `input: None` means "no stdin for the device": `eof` is sent at once.
pub async fn pump(
    channel: Channel,
    input: Option<mpsc::Receiver<Input>>,
    mut controls: mpsc::Receiver<Control>,
    mut ended: watch::Receiver<Option<Ended>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    server: &str,
) -> Outcome {
    let Channel {
        input: to_device,
        mut frames,
    } = channel;
    let mut outbox: VecDeque<ClientFrame> = VecDeque::new();
    let mut input = input;
    if input.is_none() {
        outbox.push_back(session::eof_frame());
    }
    let mut controls_open = true;
    let mut device_open = true;
    let mut session_end: Option<Ended> = None;
    // Armed when the session's end is announced; idle until then.
    let grace = tokio::time::sleep(END_GRACE);
    tokio::pin!(grace);

    loop {
        tokio::select! {
            // Signals first, so a stop is never starved by bulk output.
            biased;
            control = controls.recv(), if controls_open => match control {
                Some(Control::Resize(cols, rows)) => {
                    outbox.push_back(session::resize_frame(cols, rows));
                }
                Some(Control::Stop(signal)) => {
                    return Outcome::Failed(format!("stopped by {signal}; the session was ended"));
                }
                None => controls_open = false,
            },
            permit = to_device.reserve(), if !outbox.is_empty() && device_open => match permit {
                Ok(permit) => {
                    if let Some(frame) = outbox.pop_front() {
                        permit.send(frame);
                    }
                }
                // The Attach call is over; its last frame will say why.
                Err(_) => {
                    device_open = false;
                    outbox.clear();
                    input = None;
                }
            },
            event = session::next_event(&mut frames, server) => match event {
                Event::Output(bytes) => {
                    if let Err(e) = out.write_all(&bytes).and_then(|()| out.flush()) {
                        // `exec … | head`: the reader is gone. End quietly
                        // with the status a local command gets from SIGPIPE.
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            return Outcome::Exited(SIGPIPE_STATUS);
                        }
                        return Outcome::Failed(format!("cannot write the output: {e}"));
                    }
                }
                Event::Stderr(bytes) => {
                    let _ = err.write_all(&bytes).and_then(|()| err.flush());
                }
                Event::Ready(_) | Event::Eof => {}
                Event::Exit(code) => return Outcome::Exited(code),
                Event::Failed(failure) if failure.is_command_not_found() => {
                    return Outcome::NotFound(failure.to_string());
                }
                Event::Failed(failure) => {
                    // The session's own notice says best why (e.g. "idle timeout").
                    return match session_end {
                        Some(Ended { exit_code: Some(code), .. }) => Outcome::Exited(code),
                        Some(end) => Outcome::Failed(format!("session ended: {}",
                            schoolfleet_proto::text::for_terminal(&end.reason))),
                        None => Outcome::Failed(failure.to_string()),
                    };
                }
            },
            chunk = recv_input(&mut input), if outbox.is_empty() && input.is_some() => {
                match chunk {
                    Some(Input::Data(bytes)) => outbox.push_back(session::input_frame(bytes)),
                    Some(Input::Resize(cols, rows)) => {
                        outbox.push_back(session::resize_frame(cols, rows));
                    }
                    Some(Input::Eof) | None => {
                        input = None;
                        outbox.push_back(session::eof_frame());
                    }
                }
            }
            changed = ended.changed(), if session_end.is_none() => {
                let end = match changed {
                    Ok(()) => ended.borrow_and_update().clone(),
                    Err(_) => Some(Ended { reason: "lost track of the session".into(), exit_code: None }),
                };
                if let Some(end) = end {
                    session_end = Some(end);
                    grace.as_mut().reset(tokio::time::Instant::now() + END_GRACE);
                }
            }
            () = &mut grace, if session_end.is_some() => {
                let end = session_end.take().expect("checked by the guard");
                return match end.exit_code {
                    Some(code) => Outcome::Exited(code),
                    None => Outcome::Failed(format!(
                        "session ended: {}",
                        schoolfleet_proto::text::for_terminal(&end.reason)
                    )),
                };
            }
        }
    }
}

async fn recv_input(input: &mut Option<mpsc::Receiver<Input>>) -> Option<Input> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::fake;
    use schoolfleet_proto::v1::{ChannelErrorCode, client_frame};

    struct Harness {
        frames_to_device: mpsc::Receiver<ClientFrame>,
        input: mpsc::Sender<Input>,
        controls: mpsc::Sender<Control>,
        end: watch::Sender<Option<Ended>>,
    }

    async fn run_pump(
        device_frames: Vec<schoolfleet_proto::v1::DeviceFrame>,
        with_stdin: bool,
        prepare: impl FnOnce(&Harness),
    ) -> (Outcome, String, String, Vec<ClientFrame>) {
        let (to_device, frames_to_device) = mpsc::channel(8);
        let (input_tx, input_rx) = mpsc::channel(4);
        let (controls_tx, controls_rx) = mpsc::channel(4);
        let (end_tx, end_rx) = watch::channel(None);
        let harness = Harness {
            frames_to_device,
            input: input_tx,
            controls: controls_tx,
            end: end_tx,
        };
        prepare(&harness);
        let channel = Channel {
            input: to_device,
            frames: Box::pin(tokio_stream::StreamExt::chain(
                tokio_stream::iter(device_frames.into_iter().map(Ok)),
                // The device keeps the channel open until told otherwise.
                tokio_stream::pending(),
            )),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let outcome = pump(
            channel,
            with_stdin.then_some(input_rx),
            controls_rx,
            end_rx,
            &mut out,
            &mut err,
            "https://s",
        )
        .await;
        let mut harness = harness;
        let mut sent = Vec::new();
        while let Ok(frame) = harness.frames_to_device.try_recv() {
            sent.push(frame);
        }
        (
            outcome,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            sent,
        )
    }

    #[tokio::test]
    async fn output_streams_go_to_their_places_and_exit_code_comes_back() {
        let (outcome, out, err, sent) = run_pump(
            vec![
                fake::ready(0, "", 0),
                fake::output(b"out1\n"),
                fake::stderr(b"err1\n"),
                fake::output(b"out2\n"),
                fake::exit(7),
            ],
            false,
            |_| {},
        )
        .await;
        assert_eq!(outcome, Outcome::Exited(7));
        assert_eq!(out, "out1\nout2\n");
        assert_eq!(err, "err1\n");
        // Without stdin the device gets an immediate eof.
        assert!(matches!(
            sent.first().and_then(|f| f.body.as_ref()),
            Some(client_frame::Body::Eof(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn stdin_is_forwarded_then_eof() {
        let (outcome, _, _, sent) = run_pump(vec![], true, |h| {
            h.input
                .try_send(Input::Data(b"echo hi\n".to_vec()))
                .unwrap();
            h.input.try_send(Input::Eof).unwrap();
            h.end
                .send(Some(Ended {
                    reason: "exit 0".into(),
                    exit_code: Some(0),
                }))
                .unwrap();
        })
        .await;
        assert_eq!(outcome, Outcome::Exited(0));
        let bodies: Vec<_> = sent.into_iter().filter_map(|f| f.body).collect();
        assert_eq!(
            bodies,
            [
                client_frame::Body::Input(b"echo hi\n".to_vec()),
                client_frame::Body::Eof(Default::default())
            ]
        );
    }

    #[tokio::test]
    async fn resize_is_sent_to_the_device() {
        let (outcome, _, _, sent) = run_pump(vec![fake::exit(0)], false, |h| {
            h.controls.try_send(Control::Resize(120, 40)).unwrap();
        })
        .await;
        assert_eq!(outcome, Outcome::Exited(0));
        assert!(
            sent.iter()
                .any(|f| matches!(&f.body, Some(client_frame::Body::Resize(size)) if size.cols == 120 && size.rows == 40)),
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn signals_stop_the_session_even_during_output() {
        let output: Vec<_> = (0..100).map(|_| fake::output(b"x")).collect();
        let (outcome, _, _, _) = run_pump(output, false, |h| {
            h.controls.try_send(Control::Stop("SIGTERM")).unwrap();
        })
        .await;
        assert!(
            matches!(&outcome, Outcome::Failed(m) if m.contains("SIGTERM")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn device_gone_is_a_failure_with_its_message() {
        let (outcome, _, _, _) = run_pump(
            vec![
                fake::output(b"partial"),
                fake::error(
                    ChannelErrorCode::DeviceGone,
                    "lost the connection to kus012-pc01",
                ),
            ],
            false,
            |_| {},
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Failed("lost the connection to kus012-pc01".into())
        );
        let err = finish(outcome).unwrap_err();
        assert_eq!(err.downcast_ref::<Exit>().unwrap().code, SESSION_FAILURE);
    }

    #[tokio::test]
    async fn missing_program_exits_127_like_ssh() {
        let (outcome, _, _, _) = run_pump(
            vec![fake::error(
                ChannelErrorCode::Failed,
                "command not found: frobnicate",
            )],
            false,
            |_| {},
        )
        .await;
        let err = finish(outcome).unwrap_err();
        let exit = err.downcast_ref::<Exit>().unwrap();
        assert_eq!(exit.code, 127);
        assert_eq!(exit.to_string(), "command not found: frobnicate");
    }

    #[tokio::test(start_paused = true)]
    async fn session_end_without_channel_exit_does_not_hang() {
        let (outcome, _, _, _) = run_pump(vec![], false, |h| {
            h.end
                .send(Some(Ended {
                    reason: "ended by the local user at the device".into(),
                    exit_code: None,
                }))
                .unwrap();
        })
        .await;
        assert_eq!(
            outcome,
            Outcome::Failed("session ended: ended by the local user at the device".into())
        );
    }

    #[tokio::test]
    async fn piped_shell_input_ends_with_ctrl_d_then_eof() {
        let (tx, rx) = mpsc::channel(4);
        let mut rx = end_with_ctrl_d(rx);
        tx.send(Input::Data(b"echo hi\n".to_vec())).await.unwrap();
        tx.send(Input::Eof).await.unwrap();
        assert_eq!(rx.recv().await, Some(Input::Data(b"echo hi\n".to_vec())));
        assert_eq!(rx.recv().await, Some(Input::Data(vec![0x04])));
        assert_eq!(rx.recv().await, Some(Input::Eof));
    }

    #[test]
    fn stdin_thread_reads_chunks_then_eof() {
        let (tx, mut rx) = mpsc::channel(4);
        let data = vec![b'x'; STDIN_CHUNK + 10];
        std::thread::spawn(move || read_into(io::Cursor::new(data), None, &tx));
        let mut total = 0;
        loop {
            match rx.blocking_recv() {
                Some(Input::Data(bytes)) => {
                    assert!(bytes.len() <= STDIN_CHUNK);
                    total += bytes.len();
                }
                Some(Input::Eof) => break,
                Some(other) => panic!("unexpected {other:?}"),
                None => panic!("no eof"),
            }
        }
        assert_eq!(total, STDIN_CHUNK + 10);
    }

    #[test]
    fn a_resize_goes_before_the_keystrokes_read_after_it() {
        fn resized() -> Option<(u16, u16)> {
            Some((101, 41))
        }
        let (tx, mut rx) = mpsc::channel(4);
        std::thread::spawn(move || {
            read_into(
                io::Cursor::new(b"stty size\r".to_vec()),
                Some((resized, (80, 24))),
                &tx,
            )
        });
        assert_eq!(rx.blocking_recv(), Some(Input::Resize(101, 41)));
        assert_eq!(
            rx.blocking_recv(),
            Some(Input::Data(b"stty size\r".to_vec()))
        );
        // Unchanged since: no second resize.
        assert_eq!(rx.blocking_recv(), Some(Input::Eof));
    }

    #[test]
    fn exit_codes_pass_through() {
        assert!(finish(Outcome::Exited(0)).is_ok());
        let err = finish(Outcome::Exited(42)).unwrap_err();
        assert_eq!(err.downcast_ref::<Exit>().unwrap().code, 42);
    }
}
