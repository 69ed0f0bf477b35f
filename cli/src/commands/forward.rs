//! `forward DEVICE [LOCALPORT:]HOST:PORT`: a local TCP listener whose
//! connections are relayed through the device, one channel each.

use std::time::Duration;

use anyhow::Context as _;
use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::{ForwardSpec, session_spec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Context;
use super::shell::{self, Control};
use crate::args::ForwardArgs;
use crate::client::Api;
use crate::session::{self, Attach, Attacher, Channel, Event};

/// Bytes read from a local connection at a time; the protocol allows 256 KiB
/// per frame, and with the channel's 8-frame queue this bounds what one
/// connection can have in flight.
const TCP_CHUNK: usize = 128 * 1024;
const _: () = assert!(
    TCP_CHUNK <= crate::session::MAX_FRAME_BYTES,
    "input frames must fit the protocol's frame limit"
);

pub async fn run(
    args: ForwardArgs,
    ctx: &Context,
    ui: &mut crate::output::Ui<'_>,
) -> anyhow::Result<()> {
    let target = &args.target;
    if !args.bind.is_loopback() {
        // Said first, before anything can fail: the admin must know.
        writeln!(
            ui.err,
            "warning: listening on {}: anyone who can reach this machine over the network \
             can use the forward to {}:{} through the device",
            args.bind,
            for_terminal(&target.host),
            target.port
        )?;
    }
    let api = Api::connect_for_sessions(&ctx.profile()?).await?;
    // Bind first: a busy port should fail before the device's user is asked.
    let listener = TcpListener::bind((args.bind, target.local_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (choose another LOCALPORT, or 0 for any free port)",
                args.bind, target.local_port
            )
        })?;
    let local = listener.local_addr()?;
    let kind = session_spec::Kind::Forward(ForwardSpec {
        host: target.host.clone(),
        port: target.port.into(),
    });
    let session = shell::start(&api, &args.device, &args.purpose, kind, ui).await?;
    let device = if session.hostname().is_empty() {
        args.device.clone()
    } else {
        session.hostname().to_owned()
    };
    writeln!(
        ui.err,
        "Forwarding {local} -> {}:{} on {} (session {}); Ctrl-C ends it.",
        if target.host.contains(':') {
            format!("[{}]", for_terminal(&target.host))
        } else {
            for_terminal(&target.host).into_owned()
        },
        target.port,
        for_terminal(&device),
        for_terminal(session.id()),
    )?;

    let attacher = Attacher {
        api: api.clone(),
        session_id: session.id().to_owned(),
    };
    let mut controls = shell::watch_signals(false)?;
    let mut ended = session.watch_end();
    let (notes_tx, mut notes) = mpsc::channel::<String>(16);
    let mut connections = JoinSet::new();
    let result = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (attacher, notes) = (attacher.clone(), notes_tx.clone());
                    connections.spawn(async move {
                        let server = attacher.api.server().to_owned();
                        if let Err(problem) = relay_connection(&attacher, stream, &server).await {
                            let note = format!("connection from {peer}: {problem}");
                            let _ = notes.send(note).await;
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: say so, wait a
                    // little, keep serving the connections that exist.
                    writeln!(ui.err, "cannot accept a connection: {e}")?;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            Some(note) = notes.recv() => writeln!(ui.err, "{}", for_terminal(&note))?,
            Some(control) = controls.recv() => if let Control::Stop(signal) = control {
                writeln!(ui.err, "Stopped by {signal}; ending the session.")?;
                break Ok(());
            },
            changed = ended.changed() => {
                let reason = match changed {
                    Ok(()) => ended.borrow().as_ref().map(|e| e.reason.clone()),
                    Err(_) => Some("lost track of the session".into()),
                };
                if let Some(reason) = reason {
                    break Err(anyhow::anyhow!("the session ended: {}", for_terminal(&reason)));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };
    connections.shutdown().await;
    drop(session);
    result
}

/// One accepted connection: attach a channel, wait until the device has
/// connected to the target, then relay. Errors are for the person (they
/// may quote the device, so print them through `for_terminal`).
pub async fn relay_connection(
    attacher: &impl Attach,
    stream: TcpStream,
    server: &str,
) -> Result<(), String> {
    let mut channel = attacher.attach(0).await.map_err(|e| format!("{e:#}"))?;
    let early_output = loop {
        match session::next_event(&mut channel.frames, server).await {
            Event::Ready(_) => break None,
            // Data before `ready` would be odd, but it is data.
            Event::Output(bytes) => break Some(bytes),
            Event::Failed(failure) => return Err(failure.to_string()),
            Event::Exit(_) => return Ok(()),
            Event::Stderr(_) | Event::Eof => {}
        }
    };
    relay(stream, channel, early_output, server).await
}

/// Pumps both directions with half-close: local EOF becomes `eof` for the
/// device, the device's `eof` shuts down our write side. Ends with the
/// device's `exit` (both directions done) or its error.
pub async fn relay(
    stream: TcpStream,
    channel: Channel,
    early_output: Option<Vec<u8>>,
    server: &str,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let Channel {
        input: to_device,
        mut frames,
    } = channel;

    let upstream = async {
        let mut buf = vec![0u8; TCP_CHUNK];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => return Err(format!("local connection: {e}")),
            };
            let frame = if n == 0 {
                session::eof_frame()
            } else {
                session::input_frame(buf[..n].to_vec())
            };
            if to_device.send(frame).await.is_err() {
                // The channel is over; downstream reports why.
                break;
            }
            if n == 0 {
                break;
            }
        }
        // Keep the request stream open until the device is done: closing it
        // would tell the server this side went away.
        std::future::pending::<Result<(), String>>().await
    };

    let downstream = async {
        if let Some(bytes) = early_output {
            writer
                .write_all(&bytes)
                .await
                .map_err(|e| format!("local connection: {e}"))?;
        }
        loop {
            match session::next_event(&mut frames, server).await {
                Event::Output(bytes) => {
                    writer
                        .write_all(&bytes)
                        .await
                        .map_err(|e| format!("local connection: {e}"))?;
                }
                Event::Eof => {
                    let _ = writer.shutdown().await;
                }
                Event::Exit(_) => return Ok(()),
                Event::Failed(failure) => return Err(failure.to_string()),
                Event::Ready(_) | Event::Stderr(_) => {}
            }
        }
    };

    tokio::select! {
        result = upstream => result,
        result = downstream => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::fake;
    use schoolfleet_proto::v1::{ChannelErrorCode, ClientFrame, DeviceFrame, client_frame};
    use tokio_stream::wrappers::ReceiverStream;

    /// A device we script: frames we push, frames the CLI sent.
    struct FakeDevice {
        push: mpsc::Sender<Result<DeviceFrame, tonic::Status>>,
        sent: mpsc::Receiver<ClientFrame>,
    }

    fn fake_channel() -> (Channel, FakeDevice) {
        let (push, frames) = mpsc::channel(8);
        let (input, sent) = mpsc::channel(8);
        (
            Channel {
                input,
                frames: Box::pin(ReceiverStream::new(frames)),
            },
            FakeDevice { push, sent },
        )
    }

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn relays_both_ways_with_half_close() {
        let (mut app, accepted) = tcp_pair().await;
        let (channel, mut device) = fake_channel();
        let relay = tokio::spawn(relay(accepted, channel, None, "s"));

        // The local app sends and closes its write side.
        app.write_all(b"ping").await.unwrap();
        app.shutdown().await.unwrap();
        let mut received = Vec::new();
        loop {
            match device.sent.recv().await.unwrap().body.unwrap() {
                client_frame::Body::Input(bytes) => received.extend(bytes),
                client_frame::Body::Eof(_) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, b"ping");

        // The device answers, closes, exits.
        for frame in [fake::output(b"pong"), fake::eof(), fake::exit(0)] {
            device.push.send(Ok(frame)).await.unwrap();
        }
        let mut answer = Vec::new();
        app.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"pong");
        assert_eq!(relay.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn device_error_ends_the_connection_with_its_message() {
        let (mut app, accepted) = tcp_pair().await;
        let (channel, device) = fake_channel();
        device
            .push
            .send(Ok(fake::error(
                ChannelErrorCode::Failed,
                "connection to 127.0.0.1:5900 refused",
            )))
            .await
            .unwrap();
        let result = relay(accepted, channel, None, "s").await;
        assert_eq!(result, Err("connection to 127.0.0.1:5900 refused".into()));
        // The local side sees the connection closed.
        let mut rest = Vec::new();
        assert_eq!(app.read_to_end(&mut rest).await.unwrap_or(0), 0);
    }

    #[tokio::test]
    async fn a_slow_device_bounds_what_is_read_locally() {
        let (mut app, accepted) = tcp_pair().await;
        let (channel, mut device) = fake_channel();
        let _relay = tokio::spawn(relay(accepted, channel, None, "s"));
        // Offer far more than the queue holds; the device reads nothing yet.
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; 1024 * 1024];
            for _ in 0..64 {
                if app.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        // At most the queue's 8 frames were taken from the socket.
        let mut queued = 0;
        while let Ok(frame) = device.sent.try_recv() {
            if let Some(client_frame::Body::Input(bytes)) = frame.body {
                assert!(bytes.len() <= TCP_CHUNK);
                queued += 1;
            }
        }
        assert!(queued <= 8 + 1, "{queued} frames queued");
        assert!(!writer.is_finished(), "the writer was never slowed down");
        writer.abort();
    }
}
