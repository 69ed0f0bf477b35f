//! Recordings at rest: every chunk sealed with the current data key
//! (`keyring.rs`), bound to its session and chunk number, so the database
//! file (and its WAL, and a backup of either) never holds a shell's screen
//! in clear. The key id travels in each chunk, so keys rotate without
//! rewriting old recordings.

use tonic::Status;

use crate::keyring::Keyring;
use crate::service::{AppError, AppResult};
use crate::storage::StorageError;

fn context(session_id: &str, chunk_no: i64) -> Vec<u8> {
    format!("recording:{session_id}:{chunk_no}").into_bytes()
}

/// The chunk as stored.
pub fn seal_chunk(keys: &Keyring, session_id: &str, chunk_no: i64, plain: &[u8]) -> Vec<u8> {
    keys.seal(&context(session_id, chunk_no), plain)
}

/// A stored chunk opened again; `None` past the last chunk. A chunk that
/// does not open is an error for the reader (the details go to the log).
pub fn open_chunk(
    keys: &Keyring,
    session_id: &str,
    chunk_no: i64,
    stored: Result<Option<Vec<u8>>, StorageError>,
) -> Result<Option<Vec<u8>>, Status> {
    match stored {
        Ok(None) => Ok(None),
        Ok(Some(blob)) => keys
            .open(&context(session_id, chunk_no), &blob)
            .map(Some)
            .map_err(|err| {
                tracing::error!(session = %session_id, chunk_no, error = %err, "cannot open a recording chunk");
                Status::data_loss(format!(
                    "chunk {chunk_no} of the recording cannot be decrypted; see the server log"
                ))
            }),
        Err(err) => Err(crate::api::storage_status(err)),
    }
}

/// Why a recording is read: required, audited with the read.
pub fn read_reason(reason: &str) -> AppResult<String> {
    if reason.trim().is_empty() {
        return Err(AppError::invalid(
            "a reason is required to read a recording (--reason): it is audited",
        ));
    }
    crate::service::input::display_text("reason", reason, 500)
}
