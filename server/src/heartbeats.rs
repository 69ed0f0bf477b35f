//! "Agent seen" writes, committed in groups.
//!
//! Every stream open and every heartbeat records on the device row that the
//! agent is alive and which stream speaks for it. One transaction per
//! heartbeat costs one fsync each: at 10,000 agents and the default 60 s
//! interval that is about 170 commits a second, and on SQLite each of them
//! waits behind inventory reports for the one write lock.
//!
//! One writer task takes every write that queued while its last
//! transaction ran and commits them together. With few agents a group is a
//! single write and nothing waits longer than before; with many, the
//! commits per second stay flat while the heartbeats grow. The answer per
//! device (still active or not) is the same as a write of its own.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::storage::{AgentSeen, StorageError, Store};

/// Most writes in one transaction, so one group cannot hold the database's
/// write lock for long.
const MAX_GROUP: usize = 500;
/// Writes waiting for the writer; a stream waits (back-pressure) beyond it.
const QUEUE: usize = 8192;

type Answer = oneshot::Sender<Result<bool, StorageError>>;

/// Hands "agent seen" writes to the group-commit task.
#[derive(Debug, Clone)]
pub struct SeenWriter {
    queue: mpsc::Sender<(AgentSeen, Answer)>,
}

impl SeenWriter {
    /// Starts the writer task on the current runtime. It ends when the last
    /// `SeenWriter` is dropped, after writing what was queued.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, received) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(store, received));
        SeenWriter { queue }
    }

    /// Records that the device's stream is alive; false when the device is
    /// no longer active (revoked or retired), so its stream must end.
    pub async fn record(&self, seen: AgentSeen) -> Result<bool, StorageError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send((seen, answer))
            .await
            .map_err(|_| StorageError::Unavailable("the heartbeat writer has stopped".into()))?;
        answered
            .await
            .map_err(|_| StorageError::Unavailable("the heartbeat writer has stopped".into()))?
    }
}

async fn write_groups(store: Arc<dyn Store>, mut received: mpsc::Receiver<(AgentSeen, Answer)>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while received.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (writes, answers): (Vec<AgentSeen>, Vec<Answer>) = group.drain(..).unzip();
        match store.record_agents_seen(&writes).await {
            Ok(active) => {
                for (answer, active) in answers.into_iter().zip(active) {
                    let _ = answer.send(Ok(active));
                }
            }
            Err(err) => {
                tracing::warn!(writes = writes.len(), error = %err, "cannot record heartbeats");
                let text = err.to_string();
                for answer in answers {
                    let _ = answer.send(Err(StorageError::Unavailable(text.clone())));
                }
            }
        }
    }
}
