//! The real binary's `exec` fan-out, `forward` and `cp` against a scripted
//! TLS server whose "devices" answer like agents would.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schoolfleet_proto::v1::audit_service_server::{AuditService, AuditServiceServer};
use schoolfleet_proto::v1::device_service_server::{DeviceService, DeviceServiceServer};
use schoolfleet_proto::v1::session_service_server::{SessionService, SessionServiceServer};
use schoolfleet_proto::v1::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

mod common;
use common::schoolfleet;

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
type Reply<T> = Result<Response<T>, Status>;

/// The file every device offers for download.
fn report() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// pc01 and pc02 run commands; pc03 is offline; at pc04 the user says no;
/// pc05 never answers; pc06 is retired.
#[derive(Clone, Default)]
struct Fleet {
    specs: Arc<Mutex<HashMap<String, session_spec::Kind>>>,
    uploaded: Arc<Mutex<Vec<u8>>>,
    /// Each session's update stream, for the end notice that the real
    /// server sends once it has recorded an exit.
    updates: Arc<Mutex<HashMap<String, UpdateTx>>>,
}

type UpdateTx = mpsc::Sender<Result<SessionUpdate, Status>>;

fn frame(body: device_frame::Body) -> Result<DeviceFrame, Status> {
    Ok(DeviceFrame { body: Some(body) })
}

fn device(hostname: &str, status: DeviceStatus) -> Device {
    Device {
        id: format!("id-{hostname}"),
        hostname: hostname.into(),
        school_id: "kus012".into(),
        status: status as i32,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl DeviceService for Fleet {
    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Reply<ListDevicesResponse> {
        assert_eq!(request.into_inner().school_id, "kus012");
        let mut devices: Vec<Device> = ["pc01", "pc02", "pc03", "pc04", "pc05"]
            .into_iter()
            .map(|h| device(h, DeviceStatus::Active))
            .collect();
        devices.push(device("pc06", DeviceStatus::Retired));
        Ok(Response::new(ListDevicesResponse {
            devices,
            next_page_token: String::new(),
        }))
    }
    async fn get_device(&self, _: Request<GetDeviceRequest>) -> Reply<DeviceDetail> {
        Err(Status::unimplemented(""))
    }
    async fn retire_device(&self, _: Request<DeviceRef>) -> Reply<Device> {
        Err(Status::unimplemented(""))
    }
    async fn revoke_device(&self, _: Request<DeviceRef>) -> Reply<Device> {
        Err(Status::unimplemented(""))
    }
    async fn adopt_device(&self, _: Request<AdoptDeviceRequest>) -> Reply<Device> {
        Err(Status::unimplemented(""))
    }
    async fn delete_device(&self, _: Request<DeviceRef>) -> Reply<DeleteDeviceResponse> {
        Err(Status::unimplemented(""))
    }
    async fn list_inventory_changes(
        &self,
        _: Request<ListInventoryChangesRequest>,
    ) -> Reply<ListInventoryChangesResponse> {
        Err(Status::unimplemented(""))
    }
    async fn list_inventory_reports(
        &self,
        _: Request<ListInventoryReportsRequest>,
    ) -> Reply<ListInventoryReportsResponse> {
        Err(Status::unimplemented(""))
    }
    async fn request_inventory(&self, _: Request<DeviceRef>) -> Reply<RequestInventoryResponse> {
        Err(Status::unimplemented(""))
    }
}

#[tonic::async_trait]
impl SessionService for Fleet {
    type StartSessionStream = Boxed<SessionUpdate>;
    async fn start_session(
        &self,
        request: Request<StartSessionRequest>,
    ) -> Reply<Self::StartSessionStream> {
        let request = request.into_inner();
        let host = request.device.trim_start_matches("id-").to_owned();
        match host.as_str() {
            "pc03" => return Err(Status::unavailable("device pc03 is not connected")),
            "pc04" => {
                return Err(Status::failed_precondition(
                    "the local user at pc04 declined",
                ));
            }
            _ => {}
        }
        if let Some(kind) = request.spec.and_then(|s| s.kind) {
            self.specs.lock().unwrap().insert(host.clone(), kind);
        }
        let (tx, rx) = mpsc::channel(4);
        self.updates
            .lock()
            .unwrap()
            .insert(host.clone(), tx.clone());
        tokio::spawn(async move {
            let update = if host == "pc05" {
                session_update::Update::WaitingForConsent(WaitingForConsent {
                    session_id: host.clone(),
                    timeout_seconds: 600,
                    hostname: String::new(),
                })
            } else {
                session_update::Update::Started(SessionStarted {
                    session_id: host.clone(),
                    hostname: host.clone(),
                    max_file_bytes: 1_000_000,
                    ..Default::default()
                })
            };
            let _ = tx
                .send(Ok(SessionUpdate {
                    update: Some(update),
                }))
                .await;
            tx.closed().await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type AttachStream = Boxed<DeviceFrame>;
    async fn attach(&self, request: Request<Streaming<ClientFrame>>) -> Reply<Self::AttachStream> {
        let mut frames = request.into_inner();
        let Some(Ok(ClientFrame {
            body: Some(client_frame::Body::Open(open)),
        })) = frames.next().await
        else {
            return Err(Status::invalid_argument("open first"));
        };
        let kind = self
            .specs
            .lock()
            .unwrap()
            .get(&open.session_id)
            .cloned()
            .ok_or_else(|| Status::not_found("no such session"))?;
        let (tx, rx) = mpsc::channel(8);
        let uploaded = self.uploaded.clone();
        let updates = self.updates.lock().unwrap().get(&open.session_id).cloned();
        tokio::spawn(async move {
            match kind {
                session_spec::Kind::Exec(_) => {
                    let code = exec(&open.session_id, frames, tx).await;
                    if let Some(updates) = updates {
                        let ended = SessionEndedNotice {
                            reason: format!("exit {code}"),
                            exit_code: Some(code),
                        };
                        let _ = updates
                            .send(Ok(SessionUpdate {
                                update: Some(session_update::Update::Ended(ended)),
                            }))
                            .await;
                    }
                }
                session_spec::Kind::Forward(spec) => forward(spec, frames, tx).await,
                session_spec::Kind::Copy(spec) => {
                    copy(spec, open.offset, frames, tx, uploaded).await
                }
                session_spec::Kind::Shell(_) => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Reply<ListSessionsResponse> {
        assert_eq!(request.into_inner().state, "live");
        Ok(Response::new(ListSessionsResponse {
            sessions: vec![Session {
                id: "s1".into(),
                kind: SessionKind::Shell as i32,
                state: SessionState::Active as i32,
                hostname: "pc01\u{1b}]0;pwned\u{7}".into(),
                actor: "user:m.mueller".into(),
                reason: "Drucker hängt".into(),
                ..Default::default()
            }],
        }))
    }
    async fn get_session(&self, _: Request<GetSessionRequest>) -> Reply<Session> {
        Err(Status::unimplemented(""))
    }
    async fn end_session(&self, _: Request<EndSessionRequest>) -> Reply<EndSessionResponse> {
        Err(Status::unimplemented(""))
    }
    async fn approve_playback(
        &self,
        _: Request<ApprovePlaybackRequest>,
    ) -> Reply<ApprovePlaybackResponse> {
        Err(Status::unimplemented(""))
    }
    type GetRecordingStream = Boxed<RecordingChunk>;
    async fn get_recording(
        &self,
        request: Request<GetRecordingRequest>,
    ) -> Reply<Self::GetRecordingStream> {
        if request.into_inner().session_id != "s1" {
            return Err(Status::not_found("session s9 has no recording"));
        }
        // Chunks need not end at line ends.
        let (a, b) = CAST.split_at(100);
        let chunks = [a, b].map(|part| {
            Ok(RecordingChunk {
                data: part.as_bytes().to_vec(),
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
    async fn set_consent_policy(
        &self,
        _: Request<SetConsentPolicyRequest>,
    ) -> Reply<ConsentPolicy> {
        Err(Status::unimplemented(""))
    }
    async fn list_consent_policies(
        &self,
        _: Request<ListConsentPoliciesRequest>,
    ) -> Reply<ListConsentPoliciesResponse> {
        Err(Status::unimplemented(""))
    }
    async fn enroll_totp(
        &self,
        _: Request<EnrollTotpRequest>,
    ) -> Result<Response<EnrollTotpResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn confirm_totp(
        &self,
        _: Request<ConfirmTotpRequest>,
    ) -> Result<Response<ConfirmTotpResponse>, Status> {
        Err(Status::unimplemented(""))
    }
}

type Tx = mpsc::Sender<Result<DeviceFrame, Status>>;

/// Runs the fake command; returns its exit code.
async fn exec(host: &str, mut frames: Streaming<ClientFrame>, tx: Tx) -> i32 {
    let _ = tx
        .send(frame(device_frame::Body::Ready(ChannelReady::default())))
        .await;
    // Like a command: runs after stdin is closed.
    while let Some(Ok(f)) = frames.next().await {
        if matches!(f.body, Some(client_frame::Body::Eof(_))) {
            break;
        }
    }
    let (out, err, code) = match host {
        "pc01" => ("hallo\nwelt\n", "", 0),
        _ => ("fehler\n", "kaputt\n", 2),
    };
    let _ = tx.send(frame(device_frame::Body::Output(out.into()))).await;
    if !err.is_empty() {
        let _ = tx.send(frame(device_frame::Body::Stderr(err.into()))).await;
    }
    let _ = tx
        .send(frame(device_frame::Body::Exit(ChannelExit { code })))
        .await;
    code
}

async fn forward(spec: ForwardSpec, mut frames: Streaming<ClientFrame>, tx: Tx) {
    let Ok(stream) = tokio::net::TcpStream::connect((spec.host.as_str(), spec.port as u16)).await
    else {
        let error = ChannelError {
            code: ChannelErrorCode::Failed as i32,
            message: format!("connection to {}:{} refused", spec.host, spec.port),
        };
        let _ = tx.send(frame(device_frame::Body::Error(error))).await;
        return;
    };
    let _ = tx
        .send(frame(device_frame::Body::Ready(ChannelReady::default())))
        .await;
    let (mut reader, mut writer) = stream.into_split();
    let up = async {
        while let Some(Ok(f)) = frames.next().await {
            match f.body {
                Some(client_frame::Body::Input(bytes)) => writer.write_all(&bytes).await.unwrap(),
                Some(client_frame::Body::Eof(_)) => {
                    writer.shutdown().await.unwrap();
                    break;
                }
                _ => {}
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = reader.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                let _ = tx.send(frame(device_frame::Body::Eof(Eof {}))).await;
                return;
            }
            let _ = tx
                .send(frame(device_frame::Body::Output(buf[..n].to_vec())))
                .await;
        }
    };
    tokio::join!(up, down);
    let _ = tx
        .send(frame(device_frame::Body::Exit(ChannelExit { code: 0 })))
        .await;
}

async fn copy(
    spec: CopySpec,
    offset: u64,
    mut frames: Streaming<ClientFrame>,
    tx: Tx,
    uploaded: Arc<Mutex<Vec<u8>>>,
) {
    if spec.direction == CopyDirection::FromDevice as i32 {
        let data = report();
        let ready = ChannelReady {
            size: data.len() as u64,
            sha256: sha256(&data),
            offset,
        };
        let _ = tx.send(frame(device_frame::Body::Ready(ready))).await;
        for chunk in data[offset as usize..].chunks(64 * 1024) {
            let _ = tx
                .send(frame(device_frame::Body::Output(chunk.to_vec())))
                .await;
        }
        let _ = tx.send(frame(device_frame::Body::Eof(Eof {}))).await;
        let _ = tx
            .send(frame(device_frame::Body::Exit(ChannelExit { code: 0 })))
            .await;
        return;
    }
    let _ = tx
        .send(frame(device_frame::Body::Ready(ChannelReady::default())))
        .await;
    let mut received = Vec::new();
    while let Some(Ok(f)) = frames.next().await {
        match f.body {
            Some(client_frame::Body::Input(bytes)) => received.extend(bytes),
            Some(client_frame::Body::Eof(_)) => break,
            _ => {}
        }
    }
    let last = if received.len() as u64 == spec.size && sha256(&received) == spec.sha256 {
        *uploaded.lock().unwrap() = received;
        device_frame::Body::Exit(ChannelExit { code: 0 })
    } else {
        device_frame::Body::Error(ChannelError {
            code: ChannelErrorCode::Failed as i32,
            message: "checksum mismatch".into(),
        })
    };
    let _ = tx.send(frame(last)).await;
}

#[tonic::async_trait]
impl AuditService for Fleet {
    async fn list_audit_events(
        &self,
        _: Request<ListAuditEventsRequest>,
    ) -> Reply<ListAuditEventsResponse> {
        Err(Status::unimplemented(""))
    }
    async fn verify_audit_chain(
        &self,
        _: Request<VerifyAuditChainRequest>,
    ) -> Reply<VerifyAuditChainResponse> {
        Ok(Response::new(VerifyAuditChainResponse {
            ok: false,
            entries_checked: 20,
            first_seq: 1,
            last_seq: 20,
            broken_at_seq: 17,
            problem: "entry 17 was changed".into(),
            pruned_before_seq: 0,
            ..Default::default()
        }))
    }
}

const CAST: &str = "{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": 1795000000}\n\
    [0.1, \"o\", \"$ ls\\r\\n\"]\n\
    [0.2, \"r\", \"100x30\"]\n\
    [30.0, \"o\", \"a.txt  b.txt\\r\\n\"]\n";

fn start(fleet: Fleet) -> Vec<(String, String)> {
    common::start_tls(
        tonic::service::Routes::new(SessionServiceServer::new(fleet.clone()))
            .add_service(DeviceServiceServer::new(fleet.clone()))
            .add_service(AuditServiceServer::new(fleet)),
    )
}

#[test]
fn fan_out_reports_every_device_and_never_waits_forever() {
    let env = start(Fleet::default());
    let began = Instant::now();
    let output = schoolfleet(&env)
        .args([
            "exec",
            "--school",
            "kus012",
            "--timeout",
            "3s",
            "--concurrency",
            "2",
            "--reason",
            "Test",
            "--",
            "echo",
            "hallo",
        ])
        .output()
        .unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "{:?}",
        began.elapsed()
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    for line in ["pc01 | hallo\n", "pc01 | welt\n", "pc02 | fehler\n"] {
        assert!(stdout.contains(line), "{line:?} missing in {stdout}");
    }
    assert!(stderr.contains("pc02 ! kaputt\n"), "{stderr}");
    let summary: Vec<&str> = stderr.lines().filter(|l| l.starts_with("pc0")).collect();
    let result_of = |host: &str| {
        summary
            .iter()
            .find(|l| l.starts_with(host) && !l.contains(" ! "))
            .unwrap_or_else(|| panic!("{host} missing in {stderr}"))
            .to_string()
    };
    assert!(result_of("pc01").contains(" ok "), "{stderr}");
    assert!(result_of("pc02").contains("exit 2"), "{stderr}");
    assert!(result_of("pc03").contains("offline"), "{stderr}");
    assert!(
        result_of("pc04").contains("denied: the local user at pc04 declined"),
        "{stderr}"
    );
    assert!(result_of("pc05").contains("timeout"), "{stderr}");
    assert!(
        !stderr.contains("pc06"),
        "a retired device was asked: {stderr}"
    );
    assert!(stderr.contains("5 devices:"), "{stderr}");
}

#[test]
fn fan_out_as_json() {
    let env = start(Fleet::default());
    let output = schoolfleet(&env)
        .args([
            "exec",
            "--school",
            "kus012",
            "--timeout",
            "2s",
            "--reason",
            "Test",
            "-o",
            "json",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0]["hostname"], "pc01");
    assert_eq!(rows[0]["result"], "ok");
    assert_eq!(rows[0]["exit_code"], 0);
    assert_eq!(rows[0]["stdout"], "hallo\nwelt\n");
    assert_eq!(rows[1]["stderr"], "kaputt\n");
    assert_eq!(rows[2]["result"], "offline");
}

/// A TCP echo server on the "device's network".
fn echo_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
                let _ = writer.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

#[test]
fn forward_relays_concurrent_connections_with_half_close() {
    let env = start(Fleet::default());
    let echo = echo_server();
    let mut child = schoolfleet(&env)
        .args([
            "forward",
            "pc01",
            &format!("0:127.0.0.1:{echo}"),
            "--reason",
            "Test",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("Forwarding 127.0.0.1:"), "{line}");
    assert!(
        line.contains(&format!(
            "-> 127.0.0.1:{echo} on pc01 (session pc01); Ctrl-C ends it."
        )),
        "{line}"
    );
    let port: u16 = line["Forwarding 127.0.0.1:".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let clients: Vec<_> = (0..20u8)
        .map(|n| {
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..200_000u32).map(|i| (i as u8) ^ n).collect();
                let mut stream = StdTcpStream::connect(("127.0.0.1", port)).unwrap();
                let mut reader = stream.try_clone().unwrap();
                let expected = data.clone();
                let writer = std::thread::spawn(move || {
                    stream.write_all(&data).unwrap();
                    stream.shutdown(std::net::Shutdown::Write).unwrap();
                });
                let mut echoed = Vec::new();
                reader.read_to_end(&mut echoed).unwrap();
                writer.join().unwrap();
                assert!(echoed == expected, "connection {n}: wrong bytes");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }

    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "forward did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn forward_to_a_closed_port_says_so_per_connection() {
    let env = start(Fleet::default());
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = schoolfleet(&env)
        .args([
            "forward",
            "pc01",
            &format!("0:127.0.0.1:{closed}"),
            "--reason",
            "Test",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let port: u16 = line["Forwarding 127.0.0.1:".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut stream = StdTcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    line.clear();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.contains(&format!("connection to 127.0.0.1:{closed} refused")),
        "{line}"
    );
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn cp_downloads_into_a_directory_and_uploads_with_checksum() {
    let fleet = Fleet::default();
    let env = start(fleet.clone());
    let dir = tempfile::tempdir().unwrap();
    let output = schoolfleet(&env)
        .args(["cp", "pc01:/var/tmp/report.bin"])
        .arg(dir.path())
        .args(["--reason", "Logs holen"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("report.bin")).unwrap(),
        report()
    );
    assert!(!dir.path().join("report.bin.sfpart").exists());

    // A partial file from an earlier run is continued, not restarted.
    let target = dir.path().join("again.bin");
    std::fs::write(dir.path().join("again.bin.sfpart"), &report()[..123_456]).unwrap();
    let output = schoolfleet(&env)
        .args(["cp", "pc01:/var/tmp/report.bin"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(std::fs::read(&target).unwrap(), report());

    let src = dir.path().join("setup.sh");
    std::fs::write(&src, b"#!/bin/sh\necho Hallo\n").unwrap();
    let output = schoolfleet(&env)
        .arg("cp")
        .arg(&src)
        .args(["pc01:/tmp/", "--reason", "Skript verteilen"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(*fleet.uploaded.lock().unwrap(), b"#!/bin/sh\necho Hallo\n");
    let spec = fleet.specs.lock().unwrap().get("pc01").cloned();
    assert!(
        matches!(&spec, Some(session_spec::Kind::Copy(c)) if c.path == "/tmp/setup.sh" && c.size == 21),
        "{spec:?}"
    );
}

#[test]
fn sessions_list_play_and_audit_verify() {
    let env = start(Fleet::default());
    let output = schoolfleet(&env)
        .args(["sessions", "list", "--live"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("pc01\\x1b]0;pwned\\x07"), "{stdout}");
    assert!(
        stdout.contains("Drucker hängt") && stdout.contains("active"),
        "{stdout}"
    );

    let output = schoolfleet(&env)
        .args([
            "sessions", "play", "s1", "--reason", "Prüfung", "--cast", "-",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        CAST,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // 30 s of idle time shrink to 0.2 s with --idle-limit and --speed.
    let began = Instant::now();
    let output = schoolfleet(&env)
        .args([
            "sessions",
            "play",
            "s1",
            "--reason",
            "Prüfung",
            "--idle-limit",
            "1s",
            "--speed",
            "5",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "$ ls\r\na.txt  b.txt\r\n\n"
    );

    let output = schoolfleet(&env)
        .args(["sessions", "play", "s9", "--reason", "Prüfung"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("has no recording"));

    let output = schoolfleet(&env)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "audit chain broken at entry 17: entry 17 was changed\n"
    );
}
