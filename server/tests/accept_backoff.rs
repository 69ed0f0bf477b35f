//! When `accept` fails because the descriptors are used up (EMFILE), the
//! server pauses instead of retrying at once: tonic's own loop spun a core
//! at 100 % and the server stayed unreachable. Its own test binary: it
//! lowers the descriptor limit of the whole process.

mod common;

use std::time::Duration;

use common::server::InProcessServer;
use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
use schoolfleet_proto::v1::*;

fn cpu_time() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_failures_pause_instead_of_spinning() {
    let server = InProcessServer::start().await;
    let addr = server.url.trim_start_matches("https://").to_owned();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, open_descriptors() + 40, hard).unwrap();
    // Client connections until no descriptor is left: the last ones wait
    // in the listen backlog, and the server's accept fails with EMFILE.
    let mut clients = Vec::new();
    while let Ok(Ok(stream)) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    {
        clients.push(stream);
        if clients.len() > 1000 {
            break;
        }
    }
    assert!(clients.len() < 1000, "the descriptor limit did not apply");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = cpu_time();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time() - before;
    // Spinning costs a whole core (about 2 s here); pausing next to none.
    assert!(
        spent < Duration::from_millis(250),
        "CPU time while descriptors were used up: {spent:?}"
    );
    // With descriptors back, the server answers again.
    drop(clients);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    admin
        .tenants
        .list_counties(ListCountiesRequest {})
        .await
        .unwrap();
}
