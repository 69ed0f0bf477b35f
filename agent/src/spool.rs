//! The offline spool: reports wait on disk until the server acknowledges
//! them, so a report made while the server is unreachable is delivered on
//! reconnect. Bounded in size: the oldest reports go first, because the
//! newest inventory matters most.

use std::path::{Path, PathBuf};

use prost::Message;
use schoolfleet_proto::files::{Existing, write_durably};
use schoolfleet_proto::v1::InventoryReport;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O at {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
}

/// One queued report on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub report_id: String,
    pub path: PathBuf,
}

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|e| SpoolError::Io(dir.to_owned(), e))?;
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
        })
    }

    /// Writes a report durably (temp file, fsync, rename), then trims the
    /// spool to its size limit.
    pub fn push(&self, report: &InventoryReport) -> Result<(), SpoolError> {
        let collected = report
            .collected_at
            .as_ref()
            .map(|t| t.seconds)
            .unwrap_or_default();
        // Names sort by collection time, so delivery keeps the order.
        let name = format!("{collected:012}-{}.pb", report.report_id);
        let path = self.dir.join(&name);
        // Reports hold inventory only, but nobody else needs to read them.
        write_durably(&path, &report.encode_to_vec(), 0o600, Existing::Replace)
            .map_err(|e| SpoolError::Io(path.clone(), e))?;
        self.trim()
    }

    /// Queued reports, oldest first.
    pub fn entries(&self) -> Result<Vec<SpoolEntry>, SpoolError> {
        let io = |e| SpoolError::Io(self.dir.clone(), e);
        let mut entries = Vec::new();
        for item in std::fs::read_dir(&self.dir).map_err(io)? {
            let item = item.map_err(io)?;
            let name = item.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".pb") else {
                continue;
            };
            let Some((_, report_id)) = stem.split_once('-') else {
                continue;
            };
            entries.push(SpoolEntry {
                report_id: report_id.to_owned(),
                path: item.path(),
            });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// Reads a queued report. A file that does not decode is removed: it
    /// can never be delivered.
    pub fn load(&self, entry: &SpoolEntry) -> Result<Option<InventoryReport>, SpoolError> {
        let bytes =
            std::fs::read(&entry.path).map_err(|e| SpoolError::Io(entry.path.clone(), e))?;
        match InventoryReport::decode(bytes.as_slice()) {
            Ok(report) => Ok(Some(report)),
            Err(err) => {
                tracing::warn!(path = %entry.path.display(), error = %err, "dropping unreadable spooled report");
                self.remove_path(&entry.path)?;
                Ok(None)
            }
        }
    }

    /// Removes an acknowledged report.
    pub fn remove(&self, report_id: &str) -> Result<bool, SpoolError> {
        for entry in self.entries()? {
            if entry.report_id == report_id {
                self.remove_path(&entry.path)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn len(&self) -> usize {
        self.entries().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove_path(&self, path: &Path) -> Result<(), SpoolError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SpoolError::Io(path.to_owned(), e)),
        }
    }

    fn trim(&self) -> Result<(), SpoolError> {
        let entries = self.entries()?;
        let sizes: Vec<u64> = entries
            .iter()
            .map(|e| std::fs::metadata(&e.path).map(|m| m.len()).unwrap_or(0))
            .collect();
        let mut total: u64 = sizes.iter().sum();
        // Always keep the newest report, even if it alone is over the limit.
        for (entry, size) in entries
            .iter()
            .zip(sizes)
            .take(entries.len().saturating_sub(1))
        {
            if total <= self.max_bytes {
                break;
            }
            tracing::warn!(report = %entry.report_id, "spool full: dropping oldest undelivered report");
            self.remove_path(&entry.path)?;
            total -= size;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, seconds: i64, payload: usize) -> InventoryReport {
        InventoryReport {
            report_id: id.into(),
            collected_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            content_hash: "0".repeat(64),
            inventory: vec![7; payload],
            reason: "test".into(),
            inventory_size: 0,
        }
    }

    #[test]
    fn keeps_order_survives_reopen_and_removes_on_ack() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.push(&report("b", 200, 10)).unwrap();
        spool.push(&report("a", 100, 10)).unwrap();
        let reopened = Spool::open(dir.path(), 1 << 20).unwrap();
        let ids: Vec<_> = reopened
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.report_id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        let first = reopened.entries().unwrap().remove(0);
        assert_eq!(reopened.load(&first).unwrap().unwrap().report_id, "a");
        assert!(reopened.remove("a").unwrap());
        assert!(!reopened.remove("a").unwrap());
        assert_eq!(reopened.len(), 1);
    }

    #[test]
    fn drops_oldest_when_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 2500).unwrap();
        for (i, id) in ["r1", "r2", "r3"].iter().enumerate() {
            spool.push(&report(id, i as i64, 1000)).unwrap();
        }
        let ids: Vec<_> = spool
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.report_id)
            .collect();
        assert_eq!(ids, ["r2", "r3"]);
    }

    #[test]
    fn unreadable_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        std::fs::write(dir.path().join("000000000001-bad.pb"), b"\xff\xff\xff").unwrap();
        let entry = spool.entries().unwrap().remove(0);
        assert_eq!(spool.load(&entry).unwrap(), None);
        assert!(spool.is_empty());
    }
}
