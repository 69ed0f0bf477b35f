//! One simulated agent: enrolment as the real agent does it, then one
//! mTLS stream held until the run ends. A stream that breaks (the server
//! was killed, say) is opened again after the real agent's backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use schoolfleet_agent::backoff::Backoff;
use schoolfleet_proto::tokens::parse_enrollment_token;
use schoolfleet_proto::transport::{self, ChannelOptions, ClientIdentity, ServerTrust};
use schoolfleet_proto::v1::agent_message::Body as AgentBody;
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::server_message::Body as ServerBody;
use schoolfleet_proto::v1::*;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::Args;
use crate::stats::{Counters, Latencies, record};
use crate::templates::{Change, Rng, inventory, inventory_report};

/// What all simulated agents share.
pub struct Shared {
    /// False while a fan-out `exec` runs: the agents stay past the end of
    /// the run until it is done, so that none is missing from it.
    pub fanout_done: AtomicBool,
    pub args: Args,
    pub counters: Counters,
    pub latencies: Latencies,
    pub deadline: Instant,
    /// Every agent connected and no storm, fan-out or kill yet: heartbeat
    /// latencies are taken only then.
    pub steady: AtomicBool,
    /// Bumped when a boot storm starts: every agent sends its startup
    /// report at once.
    pub storm: watch::Receiver<u32>,
}

impl Shared {
    fn run_over(&self) -> bool {
        Instant::now() >= self.deadline && self.fanout_done.load(Ordering::Relaxed)
    }
}

/// How long the end of a run waits for acknowledgements still owed.
const DRAIN: Duration = Duration::from_secs(60);

/// The state of one simulated PC that outlives its streams.
struct Pc {
    n: usize,
    generation: u64,
    /// Content hash of the inventory last sent.
    hash: String,
    rng: Rng,
    /// Prepared before the boot storm, so that building 10,000 inventories
    /// does not compete with the server when it starts.
    storm_report: Option<(InventoryReport, String)>,
    /// When the last stream broke, for the reconnect latency.
    lost_at: Option<Instant>,
}

/// How a stream ended.
enum Ended {
    /// It never opened (connection refused, no Welcome).
    NotOpened,
    /// It broke while the run went on.
    Lost,
    /// The run is over.
    RunOver,
}

/// One simulated agent from enrolment to the end of the run.
pub async fn agent(n: usize, shared: Arc<Shared>) {
    let args = &shared.args;
    let c = &shared.counters;
    let delay = args.ramp.mul_f64(n as f64 / args.agents.max(1) as f64);
    tokio::time::sleep(delay).await;

    let Some((identity, pin, hostname_hash)) = enrol(n, &shared).await else {
        return;
    };
    let mut pc = Pc {
        n,
        generation: 0,
        hash: hostname_hash,
        rng: Rng(n as u64 + 7),
        storm_report: None,
        lost_at: None,
    };
    let mut backoff = Backoff::default();
    let mut opened_before = false;
    loop {
        match hold_stream(
            &shared,
            &identity,
            pin,
            &mut pc,
            opened_before,
            &mut backoff,
        )
        .await
        {
            Ended::RunOver => return,
            Ended::Lost => {
                opened_before = true;
                pc.lost_at.get_or_insert_with(Instant::now);
                c.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            Ended::NotOpened => {
                c.connect_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        if shared.run_over() {
            c.not_back.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Enrols as the agent does: own key, CSR, pinned first contact. Returns
/// the identity, the CA pin and the startup inventory's hash.
async fn enrol(n: usize, shared: &Shared) -> Option<(ClientIdentity, [u8; 32], String)> {
    let args = &shared.args;
    let c = &shared.counters;
    let Ok(token) = parse_enrollment_token(&args.token) else {
        c.enrol_errors.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let pin = token.ca_pin;
    let inv = inventory(n, 0, Change::OneProgram);
    let hostname = inv
        .system
        .as_ref()
        .map(|s| s.hostname.clone())
        .unwrap_or_default();
    let hash = schoolfleet_agent::inventory::content_hash(&inv);
    drop(inv);

    let started = Instant::now();
    let enrolled = async {
        let (key_pem, csr_pem) = schoolfleet_agent::identity::generate_key_and_csr(&hostname)?;
        let channel = transport::connect(
            &args.server,
            ServerTrust::Pinned(pin),
            None,
            ChannelOptions {
                request_timeout: Some(Duration::from_secs(60)),
                ..Default::default()
            },
        )
        .await?;
        let response = AgentServiceClient::new(channel)
            .enroll(EnrollRequest {
                token: args.token.clone(),
                csr_pem,
                system_uuid: String::new(),
                serial_number: String::new(),
                hostname: hostname.clone(),
                agent_version: "loadgen".into(),
                // Each simulated PC is its own device.
                machine_id: uuid::Uuid::new_v4().simple().to_string(),
            })
            .await?
            .into_inner();
        anyhow::Ok((key_pem, response))
    }
    .await;
    match enrolled {
        Ok((key_pem, response)) => {
            record(&shared.latencies.enrol, started).await;
            c.enrolled.fetch_add(1, Ordering::Relaxed);
            let identity = ClientIdentity {
                cert_chain_pem: response.certificate_pem,
                key_pem,
            };
            Some((identity, pin, hash))
        }
        Err(err) => {
            if c.enrol_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("first enrolment error (agent {n}): {err:#}");
            }
            None
        }
    }
}

/// Keeps `online` true while a stream is open.
struct Online<'a>(&'a Counters);

impl Drop for Online<'_> {
    fn drop(&mut self) {
        self.0.online.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Opens one stream and serves it until it breaks or the run is over.
async fn hold_stream(
    shared: &Arc<Shared>,
    identity: &ClientIdentity,
    pin: [u8; 32],
    pc: &mut Pc,
    opened_before: bool,
    backoff: &mut Backoff,
) -> Ended {
    let args = &shared.args;
    let c = &shared.counters;
    let started = Instant::now();
    let channel = match transport::connect(
        &args.server,
        ServerTrust::Pinned(pin),
        Some(identity.clone()),
        ChannelOptions::default(),
    )
    .await
    {
        Ok(channel) => channel,
        Err(err) => {
            if !opened_before && c.connect_failures.load(Ordering::Relaxed) == 0 {
                eprintln!("first connect error (agent {}): {err:#}", pc.n);
            }
            return Ended::NotOpened;
        }
    };
    let (tx, rx) = mpsc::channel::<AgentMessage>(16);
    let send = |body| AgentMessage { body: Some(body) };
    let _ = tx
        .send(send(AgentBody::Hello(Hello {
            agent_version: "loadgen".into(),
            inventory_hash: pc.hash.clone(),
            spooled_reports: 0,
            consent_min: String::new(),
        })))
        .await;
    let link = SessionLink {
        n: pc.n,
        channel: channel.clone(),
        stream: tx.clone(),
        sessions: Default::default(),
    };
    let mut inbound = match AgentServiceClient::new(channel)
        .open_stream(ReceiverStream::new(rx))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(_) => return Ended::NotOpened,
    };
    let (heartbeat, submit_inventory) = match inbound.message().await {
        Ok(Some(ServerMessage {
            body: Some(ServerBody::Welcome(w)),
        })) => (
            args.heartbeat.unwrap_or(Duration::from_secs(
                u64::from(w.heartbeat_interval_seconds).max(1),
            )),
            w.submit_inventory,
        ),
        _ => return Ended::NotOpened,
    };
    if opened_before {
        if let Some(lost) = pc.lost_at.take() {
            record(&shared.latencies.reconnect, lost).await;
        }
    } else {
        record(&shared.latencies.open, started).await;
    }
    c.connected.fetch_add(1, Ordering::Relaxed);
    c.online.fetch_add(1, Ordering::Relaxed);
    let _online = Online(c);
    backoff.reset();

    let mut open = OpenStream {
        link: &link,
        shared,
        reports: Vec::new(),
        deferred: Vec::new(),
        submit_inventory,
        acks: mpsc::channel(4),
        beats: VecDeque::new(),
    };
    if !opened_before {
        // Every boot sends a full report; a reconnect only says hello.
        let inv = inventory(pc.n, pc.generation, Change::OneProgram);
        let (report, _) = inventory_report(&inv, "startup");
        drop(inv);
        if args.boot_storm.is_some() {
            pc.storm_report = Some(match args.boot_storm_change {
                None => (report.clone(), pc.hash.clone()),
                Some(change) => {
                    let inv = inventory(pc.n, pc.generation + 1, change);
                    inventory_report(&inv, "startup")
                }
            });
        }
        if !open.send_report(report).await {
            return Ended::Lost;
        }
    }

    // Spread the heartbeats of agents that started together.
    let mut next_beat =
        tokio::time::Instant::now() + heartbeat.mul_f64(pc.rng.below(1000) as f64 / 1000.0);
    let next_change = |rng: &mut Rng| {
        (!args.change_every.is_zero()).then(|| {
            tokio::time::Instant::now()
                + args
                    .change_every
                    .mul_f64(0.5 + rng.below(1000) as f64 / 1000.0)
        })
    };
    let mut change_at = next_change(&mut pc.rng);
    let mut storm = shared.storm.clone();
    storm.mark_unchanged();
    let mut sequence = 0u64;
    let deadline = tokio::time::Instant::from_std(shared.deadline);
    loop {
        let change = async {
            match change_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline), if shared.fanout_done.load(Ordering::Relaxed) => break,
            _ = tokio::time::sleep_until(next_beat) => {
                sequence += 1;
                c.heartbeats.fetch_add(1, Ordering::Relaxed);
                open.beats.push_back((sequence, Instant::now()));
                let beat = Heartbeat { sequence, inventory_hash: pc.hash.clone(), uptime_seconds: sequence };
                if tx.send(send(AgentBody::Heartbeat(beat))).await.is_err() {
                    return Ended::Lost;
                }
                next_beat += heartbeat;
            }
            _ = change => {
                pc.generation += 1;
                let (report, hash) =
                    inventory_report(&inventory(pc.n, pc.generation, Change::OneProgram), "changed");
                pc.hash = hash;
                if !open.send_report(report).await {
                    return Ended::Lost;
                }
                change_at = next_change(&mut pc.rng);
            }
            Ok(()) = storm.changed() => {
                if let Some((mut report, hash)) = pc.storm_report.take() {
                    report.report_id = uuid::Uuid::new_v4().to_string();
                    pc.hash = hash;
                    if !open.send_report(report).await {
                        return Ended::Lost;
                    }
                }
            }
            _ = tokio::time::sleep_until(open.next_resend()), if !open.deferred.is_empty() => {
                if !open.resend_due().await {
                    return Ended::Lost;
                }
            }
            Some(ack) = open.acks.1.recv() => {
                open.on_message(Ok(Some(report_ack(ack)))).await;
            }
            message = inbound.message() => {
                if !open.on_message(message).await {
                    return Ended::Lost;
                }
            }
        }
    }
    // The run is over: wait a while for acknowledgements still owed, then
    // count what is left as errors.
    let grace = deadline + DRAIN;
    while !open.reports.is_empty() || !open.deferred.is_empty() {
        tokio::select! {
            _ = tokio::time::sleep_until(grace) => break,
            _ = tokio::time::sleep_until(open.next_resend()), if !open.deferred.is_empty() => {
                if !open.resend_due().await {
                    break;
                }
            }
            Some(ack) = open.acks.1.recv() => {
                open.on_message(Ok(Some(report_ack(ack)))).await;
            }
            message = inbound.message() => {
                if !open.on_message(message).await {
                    break;
                }
            }
        }
    }
    c.report_errors.fetch_add(
        (open.reports.len() + open.deferred.len()) as u64,
        Ordering::Relaxed,
    );
    open.reports.clear();
    open.deferred.clear();
    Ended::RunOver
}

fn report_ack(ack: ReportAck) -> ServerMessage {
    ServerMessage {
        body: Some(ServerBody::ReportAck(ack)),
    }
}

/// One open stream: what it waits for.
struct OpenStream<'a> {
    link: &'a SessionLink,
    shared: &'a Arc<Shared>,
    /// Reports waiting for their acknowledgement: id, when first sent, and
    /// the report, kept to send it again if the server defers it.
    reports: Vec<(String, Instant, InventoryReport)>,
    /// Reports the server deferred: when to send them again, when first
    /// sent, the report (a real agent keeps them in its spool).
    deferred: Vec<(tokio::time::Instant, Instant, InventoryReport)>,
    /// Reports go by `SubmitInventory` (the Welcome said so); their
    /// acknowledgements come back through `acks`.
    submit_inventory: bool,
    acks: (mpsc::Sender<ReportAck>, mpsc::Receiver<ReportAck>),
    /// Heartbeats waiting for theirs, in sequence order.
    beats: VecDeque<(u64, Instant)>,
}

impl Drop for OpenStream<'_> {
    /// Reports unacknowledged when a stream breaks are lost with it (a
    /// real agent would send them again from its spool).
    fn drop(&mut self) {
        let lost = (self.reports.len() + self.deferred.len()) as u64;
        self.shared
            .counters
            .reports_lost
            .fetch_add(lost, Ordering::Relaxed);
    }
}

impl OpenStream<'_> {
    async fn send_report(&mut self, report: InventoryReport) -> bool {
        self.shared.counters.reports.fetch_add(1, Ordering::Relaxed);
        self.send_at(report, Instant::now()).await
    }

    async fn send_at(&mut self, report: InventoryReport, first_sent: Instant) -> bool {
        self.reports
            .push((report.report_id.clone(), first_sent, report.clone()));
        if self.submit_inventory {
            // As the agent does: the offer on the stream, the inventory by
            // its own call once the server asks for it.
            let offer = InventoryReport {
                inventory_size: report.inventory.len() as u64,
                inventory: Vec::new(),
                ..report
            };
            let message = AgentMessage {
                body: Some(AgentBody::InventoryReport(offer)),
            };
            return self.link.stream.send(message).await.is_ok();
        }
        let message = AgentMessage {
            body: Some(AgentBody::InventoryReport(report)),
        };
        self.link.stream.send(message).await.is_ok()
    }

    /// When the next deferred report is due.
    fn next_resend(&self) -> tokio::time::Instant {
        self.deferred
            .iter()
            .map(|(at, _, _)| *at)
            .min()
            .unwrap_or_else(tokio::time::Instant::now)
    }

    /// Sends the deferred reports that are due again.
    async fn resend_due(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.deferred = later;
        for (_, first_sent, report) in due {
            if !self.send_at(report, first_sent).await {
                return false;
            }
        }
        true
    }

    /// Handles one message from the server; false when the stream is over.
    async fn on_message(&mut self, message: Result<Option<ServerMessage>, tonic::Status>) -> bool {
        let shared = self.shared;
        let c = &shared.counters;
        match message {
            Ok(Some(ServerMessage {
                body: Some(ServerBody::ReportAck(ack)),
            })) if ack.send_inventory => {
                // The server has room: the inventory by its own call.
                if let Some((_, _, report)) =
                    self.reports.iter().find(|(id, _, _)| *id == ack.report_id)
                {
                    let mut client = AgentServiceClient::new(self.link.channel.clone());
                    let report = report.clone();
                    let acks = self.acks.0.clone();
                    tokio::spawn(async move {
                        let report_id = report.report_id.clone();
                        let ack = match client.submit_inventory(report).await {
                            Ok(response) => response.into_inner(),
                            Err(status) => ReportAck {
                                report_id,
                                error: status.message().to_owned(),
                                retry: true,
                                ..Default::default()
                            },
                        };
                        let _ = acks.send(ack).await;
                    });
                }
                true
            }
            Ok(Some(ServerMessage {
                body: Some(ServerBody::ReportAck(ack)),
            })) => {
                let pending = self
                    .reports
                    .iter()
                    .position(|(id, _, _)| *id == ack.report_id)
                    .map(|i| self.reports.swap_remove(i));
                if ack.retry {
                    // Sent again when the server said (a real agent jitters
                    // it by 10 %; the server already spread it).
                    c.reports_deferred.fetch_add(1, Ordering::Relaxed);
                    if let Some((_, first_sent, report)) = pending {
                        // No time named: the agent's default of 30 s.
                        let seconds = match ack.retry_after_seconds {
                            0 => 30,
                            n => u64::from(n),
                        };
                        let after = Duration::from_secs(seconds);
                        self.deferred.push((
                            tokio::time::Instant::now() + after,
                            first_sent,
                            report,
                        ));
                    }
                    return true;
                }
                if let Some((_, first_sent, _)) = pending {
                    record(&shared.latencies.report, first_sent).await;
                }
                if ack.error.is_empty() {
                    c.reports_acked.fetch_add(1, Ordering::Relaxed);
                } else if c.report_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!(
                        "first report error (agent {}): {} (retry {})",
                        self.link.n, ack.error, ack.retry
                    );
                }
                true
            }
            Ok(Some(ServerMessage {
                body: Some(ServerBody::HeartbeatAck(ack)),
            })) => {
                while let Some((sequence, sent)) = self.beats.pop_front() {
                    if sequence == ack.sequence {
                        if shared.steady.load(Ordering::Relaxed) {
                            record(&shared.latencies.heartbeat, sent).await;
                        }
                        c.heartbeats_acked.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                true
            }
            Ok(Some(ServerMessage {
                body: Some(ServerBody::OpenSession(open)),
            })) => {
                self.link.open_session(open, c).await;
                true
            }
            Ok(Some(ServerMessage {
                body: Some(ServerBody::OpenChannel(open)),
            })) => {
                self.link.open_channel(open, shared.clone());
                true
            }
            Ok(Some(ServerMessage {
                body: Some(ServerBody::CloseSession(close)),
            })) => {
                self.link.close_session(&close.session_id);
                true
            }
            Ok(Some(_)) => {
                c.requests_unanswered.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(None) | Err(_) => false,
        }
    }
}

/// What a simulated agent needs to answer session requests: its stream
/// (for consent answers) and its connection (to dial channels back).
struct SessionLink {
    n: usize,
    channel: tonic::transport::Channel,
    stream: mpsc::Sender<AgentMessage>,
    /// Accepted sessions by id.
    sessions: std::sync::Mutex<std::collections::HashMap<String, Answer>>,
}

/// The session kinds the load generator answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// One line `loadgen <n>`, exit code 0.
    Exec,
    /// Every byte sent back, as an echo server on the PC would.
    EchoForward,
}

impl SessionLink {
    /// Accepts an exec or a forward at once (as consent `none` would);
    /// refuses the rest.
    async fn open_session(&self, open: OpenSession, counters: &Counters) {
        let answer = match open.spec.and_then(|s| s.kind) {
            Some(session_spec::Kind::Exec(_)) => Some(Answer::Exec),
            Some(session_spec::Kind::Forward(_)) => Some(Answer::EchoForward),
            _ => None,
        };
        let event = match answer {
            Some(answer) => {
                counters.sessions_accepted.fetch_add(1, Ordering::Relaxed);
                self.sessions
                    .lock()
                    .unwrap()
                    .insert(open.session_id.clone(), answer);
                session_event::Event::Accepted(SessionAccepted {})
            }
            None => session_event::Event::Refused(SessionRefused {
                refusal: SessionRefusal::Disabled as i32,
                message: "the load generator answers exec and forward only".into(),
            }),
        };
        let answer = AgentMessage {
            body: Some(AgentBody::SessionEvent(SessionEvent {
                session_id: open.session_id,
                event: Some(event),
            })),
        };
        let _ = self.stream.send(answer).await;
    }

    fn close_session(&self, session_id: &str) {
        self.sessions.lock().unwrap().remove(session_id);
    }

    /// Dials the channel back and answers it as its session's kind.
    fn open_channel(&self, open: OpenChannel, shared: Arc<Shared>) {
        let channel = self.channel.clone();
        let answer = self.sessions.lock().unwrap().get(&open.session_id).copied();
        let line = format!("loadgen {}\n", self.n).into_bytes();
        tokio::spawn(async move {
            use schoolfleet_proto::v1::client_frame::Body as ClientBody;
            use schoolfleet_proto::v1::device_frame::Body as DeviceBody;
            use tokio_stream::StreamExt;
            let c = &shared.counters;
            let answered = async {
                let (out, mut inbound) =
                    schoolfleet_agent::session::channel::dial(channel, &open.channel_id).await?;
                let send = |body| {
                    let out = out.clone();
                    async move {
                        out.send(DeviceFrame { body: Some(body) })
                            .await
                            .map_err(|_| tonic::Status::cancelled("channel closed"))
                    }
                };
                send(DeviceBody::Ready(ChannelReady::default())).await?;
                match answer {
                    Some(Answer::Exec) => send(DeviceBody::Output(line)).await?,
                    Some(Answer::EchoForward) => {
                        while let Some(frame) = inbound.next().await {
                            match frame?.body {
                                Some(ClientBody::Input(data)) => {
                                    send(DeviceBody::Output(data)).await?
                                }
                                Some(ClientBody::Eof(_)) => {
                                    send(DeviceBody::Eof(Eof {})).await?;
                                    break;
                                }
                                _ => {}
                            }
                        }
                    }
                    None => return Err(tonic::Status::not_found("no such session here")),
                }
                send(DeviceBody::Exit(ChannelExit { code: 0 })).await?;
                drop(out);
                // The server closes its side once it has relayed the exit.
                while let Some(Ok(_)) = inbound.next().await {}
                Ok::<_, tonic::Status>(())
            }
            .await;
            match answered {
                Ok(()) => c.channels_answered.fetch_add(1, Ordering::Relaxed),
                Err(status) => {
                    if c.channel_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("first channel error: {status}");
                    }
                    0
                }
            };
        });
    }
}
