use super::*;
use crate::session::channel::Stop;
use schoolfleet_proto::v1::client_frame::Body as ClientBody;
use schoolfleet_proto::v1::{ClientFrame, DeviceFrame};
use tokio::sync::mpsc;

use crate::session::channel::test_pair;

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

struct Run {
    input: mpsc::Sender<Result<ClientFrame, tonic::Status>>,
    output: mpsc::Receiver<DeviceFrame>,
    worker: tokio::task::JoinHandle<Finish>,
}

fn start(request: CopyRequest, roots: Vec<PathBuf>) -> Run {
    let (mut io, input, output) = test_pair(Stop::default());
    let worker = tokio::spawn(async move {
        let finish = run(&request, &roots, &mut io).await;
        drop(io);
        finish
    });
    Run {
        input,
        output,
        worker,
    }
}

async fn ready(output: &mut mpsc::Receiver<DeviceFrame>) -> ChannelReady {
    match output.recv().await.and_then(|f| f.body) {
        Some(DeviceBody::Ready(ready)) => ready,
        other => panic!("expected ready, got {other:?}"),
    }
}

async fn send(input: &mpsc::Sender<Result<ClientFrame, tonic::Status>>, body: ClientBody) {
    input
        .send(Ok(ClientFrame { body: Some(body) }))
        .await
        .unwrap();
}

fn upload_request(path: &std::path::Path, content: &[u8]) -> CopyRequest {
    CopyRequest {
        upload: true,
        path: path.to_str().unwrap().to_owned(),
        size: content.len() as u64,
        sha256: sha(content),
        offset: 0,
        max_file_bytes: 1 << 20,
    }
}

fn partial_path(target: &std::path::Path, content: &[u8]) -> PathBuf {
    let name = target.file_name().unwrap().to_owned();
    target
        .parent()
        .unwrap()
        .join(partial_name(&name, &sha(content)))
}

#[tokio::test]
async fn upload_resumes_after_a_broken_channel_and_lands_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let roots = vec![root.path().to_owned()];
    let target = root.path().join("treiber.bin");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();

    // First attempt: part of the file, then the admin side breaks.
    let mut first = start(upload_request(&target, &content), roots.clone());
    assert_eq!(ready(&mut first.output).await.offset, 0);
    send(&first.input, ClientBody::Input(content[..100_000].to_vec())).await;
    drop(first.input);
    assert_eq!(first.worker.await.unwrap(), Finish::Gone);
    assert!(!target.exists());
    let partial = partial_path(&target, &content);
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 100_000);
    assert_eq!(
        std::fs::metadata(&partial).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Second attempt continues where the partial file ends.
    let mut second = start(upload_request(&target, &content), roots);
    let offset = ready(&mut second.output).await.offset;
    assert_eq!(offset, 100_000);
    for chunk in content[offset as usize..].chunks(64 * 1024) {
        send(&second.input, ClientBody::Input(chunk.to_vec())).await;
    }
    send(
        &second.input,
        ClientBody::Eof(schoolfleet_proto::v1::Eof {}),
    )
    .await;
    assert_eq!(second.worker.await.unwrap(), Finish::Exit(0));
    assert_eq!(std::fs::read(&target).unwrap(), content);
    assert!(!partial.exists());
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn upload_keeps_the_mode_of_an_existing_target() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("script.sh");
    std::fs::write(&target, b"old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    let content = b"#!/bin/sh\necho neu\n";
    let mut run = start(
        upload_request(&target, content),
        vec![root.path().to_owned()],
    );
    ready(&mut run.output).await;
    send(&run.input, ClientBody::Input(content.to_vec())).await;
    send(&run.input, ClientBody::Eof(schoolfleet_proto::v1::Eof {})).await;
    assert_eq!(run.worker.await.unwrap(), Finish::Exit(0));
    assert_eq!(std::fs::read(&target).unwrap(), content);
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

#[tokio::test]
async fn upload_over_a_strangers_file_does_not_take_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("fix.sh");
    std::fs::write(&target, b"planted").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o4777)).unwrap();
    // Owned by someone else: chown needs root (the agent runs as root).
    let stranger = if nix::unistd::geteuid().is_root() {
        nix::unistd::Uid::from_raw(65534)
    } else {
        // Elsewhere the check cannot run; in CI (root) it must.
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs root in CI"
        );
        return;
    };
    nix::unistd::chown(&target, Some(stranger), None).unwrap();
    let content = b"#!/bin/sh\necho neu\n";
    let mut run = start(
        upload_request(&target, content),
        vec![root.path().to_owned()],
    );
    ready(&mut run.output).await;
    send(&run.input, ClientBody::Input(content.to_vec())).await;
    send(&run.input, ClientBody::Eof(schoolfleet_proto::v1::Eof {})).await;
    assert_eq!(run.worker.await.unwrap(), Finish::Exit(0));
    assert_eq!(std::fs::read(&target).unwrap(), content);
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
        0o600
    );
}

#[tokio::test]
async fn upload_with_a_wrong_checksum_is_refused_and_the_partial_file_removed() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("x.txt");
    let announced = b"the real content";
    let mut run = start(
        upload_request(&target, announced),
        vec![root.path().to_owned()],
    );
    ready(&mut run.output).await;
    send(&run.input, ClientBody::Input(b"the fake content".to_vec())).await;
    send(&run.input, ClientBody::Eof(schoolfleet_proto::v1::Eof {})).await;
    match run.worker.await.unwrap() {
        Finish::Error(code, message) => {
            assert_eq!(code, schoolfleet_proto::v1::ChannelErrorCode::Failed);
            assert!(message.contains("checksum mismatch"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(!target.exists());
    assert!(!partial_path(&target, announced).exists());
}

#[tokio::test]
async fn upload_of_more_bytes_than_announced_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("y.txt");
    let mut run = start(
        upload_request(&target, b"1234"),
        vec![root.path().to_owned()],
    );
    ready(&mut run.output).await;
    send(&run.input, ClientBody::Input(b"12345".to_vec())).await;
    assert!(matches!(run.worker.await.unwrap(), Finish::Error(_, m) if m.contains("more bytes")));
    assert!(!target.exists());
}

#[tokio::test]
async fn download_sends_size_checksum_and_resumes_from_an_offset() {
    let root = tempfile::tempdir().unwrap();
    let source = root.path().join("log.txt");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8 + b'a').collect();
    std::fs::write(&source, &content).unwrap();
    for offset in [0u64, 150_000] {
        let request = CopyRequest {
            upload: false,
            path: source.to_str().unwrap().to_owned(),
            size: 0,
            sha256: String::new(),
            offset,
            max_file_bytes: 1 << 20,
        };
        let mut run = start(request, vec![root.path().to_owned()]);
        let ready = ready(&mut run.output).await;
        assert_eq!(ready.size, content.len() as u64);
        assert_eq!(ready.sha256, sha(&content));
        assert_eq!(ready.offset, offset);
        let (mut received, mut eof) = (Vec::new(), false);
        while let Some(frame) = run.output.recv().await {
            match frame.body {
                Some(DeviceBody::Output(data)) => {
                    assert!(data.len() <= crate::session::channel::MAX_FRAME);
                    received.extend(data)
                }
                Some(DeviceBody::Eof(_)) => eof = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(eof);
        assert_eq!(received, content[offset as usize..]);
        assert_eq!(run.worker.await.unwrap(), Finish::Exit(0));
    }
}

#[tokio::test]
async fn download_refuses_outside_paths_directories_and_big_files() {
    let root = tempfile::tempdir().unwrap();
    let roots = vec![root.path().to_owned()];
    std::fs::create_dir(root.path().join("dir")).unwrap();
    std::fs::write(root.path().join("big"), vec![0u8; 2048]).unwrap();
    let cases = [
        ("/etc/hostname".to_owned(), "is outside the transfer roots"),
        (
            format!("{}/dir", root.path().display()),
            "is not a regular file",
        ),
        (format!("{}/big", root.path().display()), "above the limit"),
        (
            format!("{}/missing", root.path().display()),
            "does not exist",
        ),
    ];
    for (path, expected) in cases {
        let request = CopyRequest {
            upload: false,
            path,
            size: 0,
            sha256: String::new(),
            offset: 0,
            max_file_bytes: 1024,
        };
        let run = start(request, roots.clone());
        match run.worker.await.unwrap() {
            Finish::Error(_, message) => assert!(message.contains(expected), "{message}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_partial_file_that_is_not_private_is_not_resumed() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("setup.sh");
    let content = b"echo echt\n";
    // Someone planted a readable, writable "partial file" with other content.
    let partial = partial_path(&target, content);
    std::fs::write(&partial, b"rm -rf").unwrap();
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut run = start(
        upload_request(&target, content),
        vec![root.path().to_owned()],
    );
    assert_eq!(ready(&mut run.output).await.offset, 0);
    send(&run.input, ClientBody::Input(content.to_vec())).await;
    send(&run.input, ClientBody::Eof(schoolfleet_proto::v1::Eof {})).await;
    assert_eq!(run.worker.await.unwrap(), Finish::Exit(0));
    assert_eq!(std::fs::read(&target).unwrap(), content);
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn partial_names_cannot_be_guessed_from_the_target_and_checksum() {
    let name = OsString::from("treiber.sh");
    let sha256 = sha(b"echo hallo\n");
    let with = |key: [u8; 32]| partial_name_with_key(&key, &name, &sha256);
    let one = with([1; 32]);
    let text = one.to_string_lossy();
    assert!(
        text.starts_with(".treiber.sh.") && text.ends_with(".sfpart"),
        "{text}"
    );
    // Nothing of the announced checksum, and another key gives another name.
    assert!(!text.contains(&sha256[..8]), "{text}");
    assert_ne!(one, with([2; 32]));
    // Stable within one key, so an upload can resume.
    assert_eq!(one, with([1; 32]));
    assert_eq!(
        partial_name(&name, &sha256),
        partial_name(&name, &sha256),
        "one agent process must find its partial file again"
    );
}

#[tokio::test]
async fn a_symlink_at_the_partial_name_is_replaced_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("boot.sh");
    let content = b"echo boot\n";
    let victim = root.path().join("victim");
    std::fs::write(&victim, b"unchanged").unwrap();
    std::os::unix::fs::symlink(&victim, partial_path(&target, content)).unwrap();
    let mut run = start(
        upload_request(&target, content),
        vec![root.path().to_owned()],
    );
    assert_eq!(ready(&mut run.output).await.offset, 0);
    send(&run.input, ClientBody::Input(content.to_vec())).await;
    send(&run.input, ClientBody::Eof(schoolfleet_proto::v1::Eof {})).await;
    assert_eq!(run.worker.await.unwrap(), Finish::Exit(0));
    assert_eq!(std::fs::read(&target).unwrap(), content);
    assert_eq!(std::fs::read(&victim).unwrap(), b"unchanged");
}

#[tokio::test]
async fn an_upload_into_a_directory_a_pupil_owns_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let pupil_dir = root.path().join("x");
    std::fs::create_dir(&pupil_dir).unwrap();
    // What `mkdir /tmp/x; chmod 777 /tmp/x` gives a pupil without root.
    std::fs::set_permissions(&pupil_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = pupil_dir.join("treiber.sh");
    let run = start(
        upload_request(&target, b"echo admin\n"),
        vec![root.path().to_owned()],
    );
    match run.worker.await.unwrap() {
        Finish::Error(_, message) => {
            assert!(
                message.contains("is not a safe place to write"),
                "{message}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(std::fs::read_dir(&pupil_dir).unwrap().next().is_none());
}
