//! Live agent connections on this server replica.
//!
//! This is the only in-memory state of the server: the open streams
//! themselves. Everything else lives in the store, so replicas can share one
//! PostgreSQL. A request for a device connected to another replica reports
//! "not delivered".

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use schoolfleet_proto::v1::ServerMessage;
use tokio::sync::mpsc;
use tonic::Status;

pub type Outbound = mpsc::Sender<Result<ServerMessage, Status>>;

#[derive(Debug, Default)]
pub struct AgentRegistry {
    next_id: AtomicU64,
    connections: Mutex<HashMap<String, (u64, Outbound)>>,
}

/// Handle of one registered stream; unregisters only itself, so a stale
/// stream ending late cannot remove the device's newer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// Matches no stream (a consent registered before its message is sent).
    pub fn unknown() -> Self {
        ConnectionId(u64::MAX)
    }
}

impl AgentRegistry {
    /// Registers the stream of a device, replacing (and thereby closing) an
    /// older stream of the same device.
    pub fn register(&self, device_id: &str, outbound: Outbound) -> ConnectionId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let previous = self.lock().insert(device_id.to_owned(), (id, outbound));
        if let Some((_, old)) = previous {
            // Dropping the old sender ends the old response stream once
            // its task lets go of its own clone.
            let _ = old.try_send(Err(Status::aborted("replaced by a newer connection")));
        }
        ConnectionId(id)
    }

    /// Removes the device's stream if it is still `connection`. Returns
    /// false when a newer stream replaced it, or `disconnect` removed it:
    /// then this stream no longer speaks for the device's state.
    pub fn unregister(&self, device_id: &str, connection: ConnectionId) -> bool {
        let mut map = self.lock();
        if map
            .get(device_id)
            .is_some_and(|(id, _)| *id == connection.0)
        {
            map.remove(device_id);
            true
        } else {
            false
        }
    }

    /// Whether the device's stream is on this replica.
    pub fn holds(&self, device_id: &str) -> bool {
        self.lock().contains_key(device_id)
    }

    /// Sends a message to a connected device. False when it is not
    /// connected to this replica or its queue is full.
    pub fn send(&self, device_id: &str, message: ServerMessage) -> bool {
        let sender = self.lock().get(device_id).map(|(_, tx)| tx.clone());
        sender.is_some_and(|tx| tx.try_send(Ok(message)).is_ok())
    }

    /// Sends a message to a connected device, waiting (at most `patience`)
    /// for room in its queue: a burst of requests (a forward session's
    /// connections) must not be mistaken for a missing device. Says which
    /// stream got it, so that what was opened on it ends with that stream.
    pub async fn deliver(
        &self,
        device_id: &str,
        message: ServerMessage,
        patience: std::time::Duration,
    ) -> Option<ConnectionId> {
        let (id, sender) = self
            .lock()
            .get(device_id)
            .map(|(id, tx)| (*id, tx.clone()))?;
        sender
            .send_timeout(Ok(message), patience)
            .await
            .is_ok()
            .then_some(ConnectionId(id))
    }

    /// Ends a device's stream (revoked, retired) with the given status.
    pub fn disconnect(&self, device_id: &str, status: Status) {
        if let Some((_, tx)) = self.lock().remove(device_id) {
            let _ = tx.try_send(Err(status));
        }
    }

    pub fn connected_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Outbound)>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (single insert/remove), so poisoning is safe to ignore.
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_connection_cannot_unregister_newer_one() {
        let registry = AgentRegistry::default();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, _rx2) = mpsc::channel(4);
        let first = registry.register("d1", tx1);
        let _second = registry.register("d1", tx2);
        // The first stream was told it was replaced.
        assert!(rx1.recv().await.unwrap().is_err());
        assert!(!registry.unregister("d1", first));
        assert_eq!(registry.connected_count(), 1);
        assert!(registry.send("d1", ServerMessage::default()));
        assert!(!registry.send("d2", ServerMessage::default()));
    }
}
