//! Several replicas on one PostgreSQL: remote sessions through any replica.
//!
//! An agent holds one stream, to one replica; a session's processes and
//! channels live where that stream is. The store records which replica
//! holds each device's stream (`devices.connection_replica`) and the URL
//! each replica announced (`replicas`). A `StartSession` or `Attach` that
//! reaches another replica is relayed there over gRPC with the caller's own
//! API token, so the holding replica authorises, asks for consent and
//! audits exactly as if the caller had reached it directly. No cluster
//! protocol of our own: PostgreSQL is the only shared state.
//!
//! A relayed call carries [`RELAYED_HEADER`] and is never relayed again,
//! so two replicas with stale rows cannot bounce a call between them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schoolfleet_proto::transport::{self, ChannelOptions, Fingerprint, ServerTrust};
use schoolfleet_proto::v1::session_service_client::SessionServiceClient;
use schoolfleet_proto::v1::{ClientFrame, DeviceFrame, SessionUpdate, StartSessionRequest};
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

use crate::storage::{Store, now_millis};

/// Marks a call one replica relayed to another (the value is its id).
pub const RELAYED_HEADER: &str = "x-schoolfleet-relayed-by";
/// How often a replica renews its row.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(20);
/// A replica not renewed for this long is taken for gone.
const ANNOUNCE_VALID_MS: i64 = 3 * 20_000;

#[derive(Debug)]
pub struct Cluster {
    replica_id: Arc<str>,
    /// Empty: this replica neither announces itself nor relays.
    advertise_url: String,
    /// Replicas share one CA: the same pin the agents and CLIs use.
    ca_pin: Fingerprint,
    channels: Mutex<HashMap<String, Channel>>,
}

/// The replica a session call goes to instead of this one.
#[derive(Debug, Clone)]
pub struct RelayTarget {
    pub replica_id: String,
    pub url: String,
}

impl Cluster {
    pub fn new(advertise_url: &str, ca_pin: Fingerprint) -> Cluster {
        Cluster {
            replica_id: uuid::Uuid::now_v7().to_string().into(),
            advertise_url: advertise_url.trim_end_matches('/').to_owned(),
            ca_pin,
            channels: Mutex::default(),
        }
    }

    /// This server process: a new id at every start.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    pub fn relays(&self) -> bool {
        !self.advertise_url.is_empty()
    }

    /// Keeps this replica's row fresh until shutdown, then removes it.
    pub async fn announce(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        if !self.relays() {
            return;
        }
        let mut every = tokio::time::interval(ANNOUNCE_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            if let Err(err) = store
                .announce_replica(&self.replica_id, &self.advertise_url, now_millis())
                .await
            {
                tracing::warn!(error = %err, "cannot announce this replica");
            }
        }
        if let Err(err) = store.withdraw_replica(&self.replica_id).await {
            tracing::warn!(error = %err, "cannot withdraw this replica");
        }
    }

    /// Where a session call on `device_id` must go instead: None when this
    /// replica holds the stream (or nobody does), relaying is off, or the
    /// call was relayed already.
    pub async fn relay_target(
        &self,
        store: &dyn Store,
        device_id: &str,
        metadata: &MetadataMap,
    ) -> Option<RelayTarget> {
        if !self.relays() || metadata.contains_key(RELAYED_HEADER) {
            return None;
        }
        let since = now_millis() - ANNOUNCE_VALID_MS;
        match store.agent_stream_holder(device_id, since).await {
            Ok(Some((replica_id, url))) if replica_id != *self.replica_id => {
                Some(RelayTarget { replica_id, url })
            }
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(error = %err, "cannot look up the replica holding a device");
                None
            }
        }
    }

    /// Starts the session on `target` as the caller, and hands its updates
    /// back unchanged. Dropping the returned stream ends the session there,
    /// as a dropped `StartSession` does on any replica.
    pub async fn start_session(
        &self,
        target: &RelayTarget,
        caller: &MetadataMap,
        request: StartSessionRequest,
    ) -> Result<Streaming<SessionUpdate>, Status> {
        let mut client = self.client(target).await?;
        let request = self.relayed(caller, request)?;
        Ok(client.start_session(request).await?.into_inner())
    }

    /// Attaches a channel on `target` as the caller: `first` (the `open`
    /// frame already read here) and then the rest of `inbound`.
    pub async fn attach(
        &self,
        target: &RelayTarget,
        caller: &MetadataMap,
        first: ClientFrame,
        inbound: Streaming<ClientFrame>,
    ) -> Result<Streaming<DeviceFrame>, Status> {
        let mut client = self.client(target).await?;
        // The admin's stream ends the relayed one: on its end, or at its
        // first error (the holding replica then sees a closed channel).
        let rest = inbound
            .take_while(|frame| frame.is_ok())
            .filter_map(|frame| frame.ok());
        let frames = tokio_stream::once(first).chain(rest);
        let request = self.relayed(caller, frames)?;
        Ok(client.attach(request).await?.into_inner())
    }

    /// The caller's API token and the relay mark, on `message`.
    fn relayed<T>(&self, caller: &MetadataMap, message: T) -> Result<Request<T>, Status> {
        let mut request = Request::new(message);
        let authorization = caller
            .get(schoolfleet_proto::AUTHORIZATION_HEADER)
            .ok_or_else(|| Status::unauthenticated("missing API token"))?;
        let metadata = request.metadata_mut();
        metadata.insert(
            schoolfleet_proto::AUTHORIZATION_HEADER,
            authorization.clone(),
        );
        let me = self
            .replica_id
            .parse()
            .map_err(|_| Status::internal("replica id is not a header value"))?;
        metadata.insert(RELAYED_HEADER, me);
        Ok(request)
    }

    async fn client(&self, target: &RelayTarget) -> Result<SessionServiceClient<Channel>, Status> {
        let cached = self.lock().get(&target.url).cloned();
        let channel = match cached {
            Some(channel) => channel,
            None => {
                let channel = transport::connect(
                    &target.url,
                    ServerTrust::Pinned(self.ca_pin),
                    None,
                    ChannelOptions::default(),
                )
                .await
                .map_err(|err| {
                    tracing::warn!(replica = %target.replica_id, url = %target.url, error = %err,
                        "cannot reach the replica holding a device");
                    Status::unavailable(format!(
                        "the device is connected to replica {}, which cannot be reached",
                        target.url
                    ))
                })?;
                self.lock().insert(target.url.clone(), channel.clone());
                channel
            }
        };
        Ok(SessionServiceClient::new(channel)
            .max_decoding_message_size(schoolfleet_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(schoolfleet_proto::MAX_MESSAGE_BYTES))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A relayed stream, boxed like the service's own responses.
pub fn boxed<T: Send + 'static>(
    stream: Streaming<T>,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>> {
    Box::pin(stream)
}
