//! Forward channels: one TCP connection from the device to the session's
//! target, bytes pumped both ways, half-close carried by `eof`.

use std::time::Duration;

use schoolfleet_proto::v1::device_frame::Body as DeviceBody;
use schoolfleet_proto::v1::{ChannelReady, Eof};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::channel::{ChannelIo, Finish, Input, frame};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CHUNK: usize = 64 * 1024;

/// Host name or IP literal (IPv6 optionally in brackets), port 1..65535.
pub fn validate_target(host: &str, port: u32) -> Result<(), String> {
    if host.is_empty() || host.len() > 255 {
        return Err("the forward host must have 1 to 255 bytes".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
    {
        return Err("the forward host contains characters no host name has".into());
    }
    if port == 0 || port > 65535 {
        return Err(format!("port {port} is out of range"));
    }
    Ok(())
}

/// "host:port", with brackets around IPv6 literals.
fn target_text(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub async fn run(host: &str, port: u16, io: &mut ChannelIo) -> Finish {
    let target = target_text(host, port);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let connect = tokio::select! {
        _ = io.cancel.cancelled() => return Finish::ended_because(io.cancel.reason()),
        result = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((bare, port))) => result,
    };
    let stream = match connect {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Finish::failed(format!("connection to {target} refused"));
        }
        Ok(Err(err)) => return Finish::failed(format!("cannot connect to {target}: {err}")),
        Err(_) => return Finish::failed(format!("connection to {target} timed out")),
    };
    let _ = stream.set_nodelay(true);
    if !io.send(DeviceBody::Ready(ChannelReady::default())).await {
        return Finish::Gone;
    }
    let (mut read_half, mut write_half) = stream.into_split();
    let out = io.out.clone();
    // Target -> admin: ends with `eof` when the target closes its side.
    let mut reader = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match read_half.read(&mut buf).await {
                Ok(0) => {
                    return Ok(out.send(frame(DeviceBody::Eof(Eof {}))).await.is_ok());
                }
                Ok(n) => {
                    if out
                        .send(frame(DeviceBody::Output(buf[..n].to_vec())))
                        .await
                        .is_err()
                    {
                        return Ok(false);
                    }
                }
                Err(err) => return Err(err),
            }
        }
    });
    let (mut read_done, mut write_done) = (false, false);
    let finish = loop {
        if read_done && write_done {
            break Finish::Exit(0);
        }
        tokio::select! {
            result = &mut reader, if !read_done => {
                read_done = true;
                match result {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => break Finish::Gone,
                    Ok(Err(err)) => break Finish::failed(format!("connection to {target}: {err}")),
                    Err(_) => break Finish::failed("the forward reader failed"),
                }
            }
            input = io.next_input() => match input {
                Input::Data(data) if !write_done => {
                    if let Err(err) = write_half.write_all(&data).await {
                        break Finish::failed(format!("connection to {target}: {err}"));
                    }
                }
                Input::Data(_) => break Finish::protocol("input after eof"),
                Input::Eof => {
                    if !write_done {
                        write_done = true;
                        let _ = write_half.shutdown().await;
                    }
                }
                Input::Resize(_) => {}
                other => break Finish::stopped(other),
            }
        }
    };
    reader.abort();
    finish
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::channel::Stop;
    use schoolfleet_proto::v1::ClientFrame;
    use schoolfleet_proto::v1::client_frame::Body as ClientBody;
    use tokio::net::TcpListener;

    #[test]
    fn targets_are_checked() {
        assert!(validate_target("127.0.0.1", 5900).is_ok());
        assert!(validate_target("drucker-r101.schule.local", 631).is_ok());
        assert!(validate_target("::1", 22).is_ok());
        assert!(validate_target("", 22).is_err());
        assert!(validate_target("a b", 22).is_err());
        assert!(validate_target("host", 0).is_err());
        assert!(validate_target("host", 70000).is_err());
        assert!(validate_target(&"a".repeat(256), 1).is_err());
        assert_eq!(target_text("::1", 22), "[::1]:22");
    }

    #[tokio::test]
    async fn pumps_both_ways_with_half_close() {
        // An echo server that answers after the client half-closed.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            socket.read_to_end(&mut received).await.unwrap();
            socket.write_all(b"echo:").await.unwrap();
            socket.write_all(&received).await.unwrap();
            // Dropping closes our side: the agent sends eof.
        });
        let (mut io, input, mut rx) = super::super::channel::test_pair(Stop::default());
        let worker = tokio::spawn(async move {
            let finish = run("127.0.0.1", port, &mut io).await;
            drop(io);
            finish
        });
        for body in [
            ClientBody::Input(b"hello ".to_vec()),
            ClientBody::Input(b"world".to_vec()),
            ClientBody::Eof(schoolfleet_proto::v1::Eof {}),
        ] {
            input
                .send(Ok(ClientFrame { body: Some(body) }))
                .await
                .unwrap();
        }
        let (mut output, mut saw_ready, mut saw_eof) = (Vec::new(), false, false);
        while let Some(frame) = rx.recv().await {
            match frame.body {
                Some(DeviceBody::Ready(_)) => saw_ready = true,
                Some(DeviceBody::Output(data)) => {
                    assert!(!saw_eof, "output after eof");
                    output.extend(data)
                }
                Some(DeviceBody::Eof(_)) => saw_eof = true,
                _ => {}
            }
        }
        server.await.unwrap();
        assert!(saw_ready && saw_eof);
        assert_eq!(output, b"echo:hello world");
        assert_eq!(worker.await.unwrap(), Finish::Exit(0));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_clear_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let (mut io, _input, _rx) = super::super::channel::test_pair(Stop::default());
        let finish = run("127.0.0.1", port, &mut io).await;
        assert_eq!(
            finish,
            Finish::failed(format!("connection to 127.0.0.1:{port} refused"))
        );
    }

    #[tokio::test]
    async fn the_admin_side_going_away_closes_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mut io, input, mut rx) = super::super::channel::test_pair(Stop::default());
        let worker = tokio::spawn(async move { run("127.0.0.1", port, &mut io).await });
        let (mut socket, _) = listener.accept().await.unwrap();
        assert!(matches!(
            rx.recv().await.unwrap().body,
            Some(DeviceBody::Ready(_))
        ));
        drop(input);
        assert_eq!(worker.await.unwrap(), Finish::Gone);
        let mut buf = [0u8; 16];
        // The agent closed its connection: the target reads EOF.
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
    }
}
