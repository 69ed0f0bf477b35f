//! The audit hash chain: every entry carries the SHA-256 of the one before
//! it, so an edited, removed or reordered entry breaks the chain from there.
//!
//! `hash = hex(sha256(prev_hash_hex + "\n" + canonical))`, where `canonical`
//! is the JSON array `[seq, at_millis, actor, action, target, county_id or
//! "", outcome, details]`. Pure functions; the store appends and the
//! verifier walks what the store returns.
//!
//! Two anchors hold the chain against someone who can write the database:
//! - the head (seq, hash and the prune anchor) carries an HMAC-SHA256 whose
//!   key is a file outside the database (`audit.head_key_file`), written
//!   with every append; rewriting entries or the anchor without the key
//!   breaks it. `audit verify` shows the head with its MAC, for an external
//!   log; the server also logs it hourly.
//! - every prune is itself a chained `audit.pruned` entry saying up to when
//!   it deleted (`before=`) and where the chain now starts
//!   (`kept_from_seq=`); verification finds it and checks `before` against
//!   the retention setting, so "entries removed by the retention policy"
//!   cannot be claimed for entries minutes old.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::storage::{AuditEntryRecord, AuditEvent, Store};

/// `prev_hash` of the very first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of entry `seq` with content `event`, chained to `prev_hash`.
pub fn entry_hash(prev_hash: &str, seq: i64, event: &AuditEvent) -> String {
    let mut fields = vec![
        serde_json::json!(seq),
        serde_json::json!(event.at),
        serde_json::json!(event.actor),
        serde_json::json!(event.action),
        serde_json::json!(event.target),
        serde_json::json!(event.county_id.as_deref().unwrap_or("")),
        serde_json::json!(event.outcome),
        serde_json::json!(event.details),
    ];
    // The school (migration 0013) is a ninth field only when set, so that
    // every entry written before keeps its hash.
    if let Some(school) = event.school_id.as_deref().filter(|s| !s.is_empty()) {
        fields.push(serde_json::json!(school));
    }
    let canonical = serde_json::Value::Array(fields).to_string();
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

/// The key of the head's MAC, set once at start. `Debug` never shows it.
#[derive(Default)]
pub struct HeadKey(std::sync::OnceLock<Vec<u8>>);

impl HeadKey {
    pub fn set(&self, key: Vec<u8>) {
        let _ = self.0.set(key);
    }

    pub fn get(&self) -> Option<&[u8]> {
        self.0.get().map(Vec::as_slice)
    }
}

impl std::fmt::Debug for HeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "HeadKey(<redacted>)"
        } else {
            "HeadKey(<unset>)"
        })
    }
}

/// `hex(HMAC-SHA256(key, "schoolfleet-audit-head/v1\n{seq}\n{head_hash}\n
/// {pruned_before_seq}\n{pruned_anchor_hash}"))`.
pub fn head_mac(
    key: &[u8],
    seq: i64,
    head_hash: &str,
    pruned_before_seq: i64,
    pruned_anchor_hash: &str,
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(
        format!(
            "schoolfleet-audit-head/v1\n{seq}\n{head_hash}\n{pruned_before_seq}\n{pruned_anchor_hash}"
        )
        .as_bytes(),
    );
    hex::encode(mac.finalize().into_bytes())
}

/// Where the stored chain starts and ends (the `audit_chain` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the last entry (0: none yet).
    pub seq: i64,
    pub head_hash: String,
    /// Entries before this seq were pruned (0: never pruned).
    pub pruned_before_seq: i64,
    /// `prev_hash` of the entry at `pruned_before_seq`.
    pub pruned_anchor_hash: String,
    /// HMAC of the above (see `head_mac`); empty before the first append
    /// with a key.
    pub head_mac: String,
}

impl ChainHead {
    /// The MAC this head must carry under `key`.
    pub fn expected_mac(&self, key: &[u8]) -> String {
        head_mac(
            key,
            self.seq,
            &self.head_hash,
            self.pruned_before_seq,
            &self.pruned_anchor_hash,
        )
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verification {
    pub entries_checked: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The first broken entry and why, when the chain is broken.
    pub broken: Option<(u64, String)>,
}

/// Walks the entries in seq order, a page at a time; stops at the first
/// break.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    expected_prev: String,
    result: Verification,
    /// The prune entries seen: (seq, at, kept_from_seq, before).
    prunes: Vec<(i64, i64, Option<i64>, Option<i64>)>,
}

/// The value of `key=` among the words of a prune entry's details.
fn detail(details: &str, key: &str) -> Option<i64> {
    details
        .split([' ', ';'])
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

impl Verifier {
    pub fn new(head: &ChainHead) -> Self {
        let (expected_seq, expected_prev) = if head.pruned_before_seq > 0 {
            (head.pruned_before_seq, head.pruned_anchor_hash.clone())
        } else {
            (1, GENESIS_HASH.to_owned())
        };
        Verifier {
            expected_seq,
            expected_prev,
            result: Verification::default(),
            prunes: Vec::new(),
        }
    }

    pub fn is_broken(&self) -> bool {
        self.result.broken.is_some()
    }

    fn fail(&mut self, seq: i64, problem: String) {
        if self.result.broken.is_none() {
            self.result.broken = Some((seq.max(0) as u64, problem));
        }
    }

    /// Checks the next entry. Returns false once the chain is broken.
    pub fn check(&mut self, entry: &AuditEntryRecord) -> bool {
        if self.is_broken() {
            return false;
        }
        if entry.seq != self.expected_seq {
            let problem = if entry.seq > self.expected_seq {
                format!("entry {} is missing", self.expected_seq)
            } else {
                format!("entry {} appears twice or out of order", entry.seq)
            };
            self.fail(self.expected_seq.min(entry.seq), problem);
            return false;
        }
        if entry.prev_hash != self.expected_prev {
            let problem = if entry.seq > 1 {
                format!(
                    "entry {} does not follow entry {} (one of them was changed or replaced)",
                    entry.seq,
                    entry.seq - 1
                )
            } else {
                format!("entry {} does not start the chain", entry.seq)
            };
            self.fail(entry.seq, problem);
            return false;
        }
        if entry_hash(&entry.prev_hash, entry.seq, &entry.event) != entry.hash {
            self.fail(entry.seq, format!("entry {} was changed", entry.seq));
            return false;
        }
        if entry.event.action == PRUNE_ACTION {
            self.prunes.push((
                entry.seq,
                entry.event.at,
                detail(&entry.event.details, "kept_from_seq"),
                detail(&entry.event.details, "before"),
            ));
        }
        if self.result.entries_checked == 0 {
            self.result.first_seq = entry.seq as u64;
        }
        self.result.entries_checked += 1;
        self.result.last_seq = entry.seq as u64;
        self.expected_seq = entry.seq + 1;
        self.expected_prev = entry.hash.clone();
        true
    }

    /// Ends the walk like `finish`, and then checks the anchors: the head's
    /// MAC under `key`, and that a prune, if any, is a chained entry that
    /// deleted only entries older than `retention` (zero: not checked).
    pub fn finish_anchored(
        mut self,
        head: &ChainHead,
        key: Option<&[u8]>,
        retention: std::time::Duration,
    ) -> Verification {
        let prunes = std::mem::take(&mut self.prunes);
        let mut result = self.finish(head);
        if result.broken.is_some() {
            return result;
        }
        let fresh = head.seq == 0 && head.pruned_before_seq == 0;
        if let Some(key) = key
            && !fresh
            && head.head_mac != head.expected_mac(key)
        {
            result.broken = Some((
                head.seq.max(0) as u64,
                "the chain head does not match its MAC: entries or the prune anchor were \
                 changed outside the server (or replicas use different audit.head_key_file)"
                    .into(),
            ));
            return result;
        }
        if head.pruned_before_seq > 0 {
            let kept_from = head.pruned_before_seq;
            let Some(&(seq, at, _, before)) = prunes
                .iter()
                .rev()
                .find(|(_, _, k, _)| *k == Some(kept_from))
            else {
                result.broken = Some((
                    kept_from as u64,
                    format!(
                        "entries before {kept_from} were removed without a prune entry in the chain"
                    ),
                ));
                return result;
            };
            let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            match before {
                None => {
                    result.broken = Some((
                        seq as u64,
                        format!("prune entry {seq} does not say up to when it deleted"),
                    ));
                }
                Some(before) if retention_ms > 0 && before > at.saturating_sub(retention_ms) => {
                    result.broken = Some((
                        seq as u64,
                        format!(
                            "prune entry {seq} deleted entries newer than audit.retention ({})",
                            humantime::format_duration(retention)
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        result
    }

    /// Ends the walk: the last entry must be the chain's head, or entries
    /// at the end were removed.
    pub fn finish(mut self, head: &ChainHead) -> Verification {
        if !self.is_broken() {
            if self.expected_seq <= head.seq {
                self.fail(
                    self.expected_seq,
                    format!("entry {} is missing", self.expected_seq),
                );
            } else if self.expected_seq - 1 == head.seq && self.expected_prev != head.head_hash {
                self.fail(
                    head.seq,
                    format!("entry {} does not match the chain head", head.seq),
                );
            }
        }
        self.result
    }
}

/// Entries read per query while verifying.
const VERIFY_PAGE: i64 = 1000;

/// `action` of the entry each prune appends.
pub const PRUNE_ACTION: &str = "audit.pruned";

/// Verifies the whole stored chain, a page at a time, and its anchors (the
/// head's MAC under the store's key, prunes against `retention`). Entries
/// appended after the head was read are left for the next verification.
pub async fn verify(
    store: &dyn Store,
    retention: std::time::Duration,
) -> crate::storage::Result<(Verification, ChainHead)> {
    let head = store.audit_chain_head().await?;
    let mut verifier = Verifier::new(&head);
    let mut after = 0;
    'pages: loop {
        let page = store.audit_chain_page(after, VERIFY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in &page {
            if entry.seq > head.seq || !verifier.check(entry) {
                break 'pages;
            }
        }
    }
    let key = store.audit_key();
    Ok((
        verifier.finish_anchored(&head, key.as_deref(), retention),
        head,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_mac_covers_every_field_and_the_key() {
        let mac = head_mac(b"k", 5, "h", 2, "a");
        assert_eq!(mac.len(), 64);
        for other in [
            head_mac(b"x", 5, "h", 2, "a"),
            head_mac(b"k", 6, "h", 2, "a"),
            head_mac(b"k", 5, "g", 2, "a"),
            head_mac(b"k", 5, "h", 3, "a"),
            head_mac(b"k", 5, "h", 2, "b"),
        ] {
            assert_ne!(mac, other);
        }
        assert_eq!(format!("{:?}", HeadKey::default()), "HeadKey(<unset>)");
        let key = HeadKey::default();
        key.set(b"geheim".to_vec());
        assert!(!format!("{key:?}").contains("geheim"));
    }

    #[test]
    fn prune_details_are_read() {
        let d = "retention=730days; deleted=3 kept_from_seq=4 before=5000";
        assert_eq!(detail(d, "kept_from_seq"), Some(4));
        assert_eq!(detail(d, "before"), Some(5000));
        assert_eq!(detail(d, "after"), None);
    }

    fn event(n: i64) -> AuditEvent {
        AuditEvent {
            at: 1_700_000_000_000 + n,
            actor: "user:admin".into(),
            action: "session.start".into(),
            target: format!("session:{n}"),
            county_id: Some("kus".into()),
            outcome: "ok".into(),
            details: format!("kind=shell n={n}"),
            school_id: None,
        }
    }

    fn chain(n: i64) -> (Vec<AuditEntryRecord>, ChainHead) {
        let mut prev = GENESIS_HASH.to_owned();
        let mut entries = Vec::new();
        for seq in 1..=n {
            let e = event(seq);
            let hash = entry_hash(&prev, seq, &e);
            entries.push(AuditEntryRecord {
                seq,
                event: e,
                prev_hash: prev.clone(),
                hash: hash.clone(),
            });
            prev = hash;
        }
        let head = ChainHead {
            seq: n,
            head_hash: prev,
            pruned_before_seq: 0,
            pruned_anchor_hash: GENESIS_HASH.into(),
            head_mac: String::new(),
        };
        (entries, head)
    }

    fn verify(entries: &[AuditEntryRecord], head: &ChainHead) -> Verification {
        let mut v = Verifier::new(head);
        for e in entries {
            if !v.check(e) {
                break;
            }
        }
        v.finish(head)
    }

    #[test]
    fn hash_is_the_documented_formula() {
        let e = event(1);
        let canonical = r#"[1,1700000000001,"user:admin","session.start","session:1","kus","ok","kind=shell n=1"]"#;
        let expected = hex::encode(Sha256::digest(format!("{GENESIS_HASH}\n{canonical}")));
        assert_eq!(entry_hash(GENESIS_HASH, 1, &e), expected);
    }

    #[test]
    fn the_school_is_hashed_when_set() {
        let mut e = event(1);
        e.school_id = Some("kus012".into());
        let canonical = r#"[1,1700000000001,"user:admin","session.start","session:1","kus","ok","kind=shell n=1","kus012"]"#;
        let expected = hex::encode(Sha256::digest(format!("{GENESIS_HASH}\n{canonical}")));
        assert_eq!(entry_hash(GENESIS_HASH, 1, &e), expected);
        // Moving an entry to another school breaks its hash.
        let mut moved = e.clone();
        moved.school_id = Some("kus013".into());
        assert_ne!(entry_hash(GENESIS_HASH, 1, &moved), expected);
    }

    #[test]
    fn intact_chain_verifies() {
        let (entries, head) = chain(5);
        let v = verify(&entries, &head);
        assert_eq!(v.broken, None);
        assert_eq!((v.entries_checked, v.first_seq, v.last_seq), (5, 1, 5));
        let empty = chain(0);
        assert_eq!(verify(&empty.0, &empty.1).broken, None);
    }

    #[test]
    fn edited_entry_is_found() {
        let (mut entries, head) = chain(5);
        entries[2].event.details = "kind=exec".into();
        let v = verify(&entries, &head);
        assert_eq!(v.broken, Some((3, "entry 3 was changed".into())));
    }

    #[test]
    fn rehashed_entry_breaks_the_next_link() {
        let (mut entries, head) = chain(5);
        entries[2].event.details = "kind=exec".into();
        entries[2].hash = entry_hash(&entries[2].prev_hash, 3, &entries[2].event);
        assert_eq!(verify(&entries, &head).broken.unwrap().0, 4);
    }

    #[test]
    fn removed_entries_are_found() {
        let (mut entries, head) = chain(5);
        entries.remove(1);
        assert_eq!(
            verify(&entries, &head).broken,
            Some((2, "entry 2 is missing".into()))
        );
        let (mut entries, head) = chain(5);
        entries.pop();
        assert_eq!(
            verify(&entries, &head).broken,
            Some((5, "entry 5 is missing".into()))
        );
    }

    #[test]
    fn pruned_chain_verifies_from_its_anchor() {
        let (entries, mut head) = chain(6);
        head.pruned_before_seq = 4;
        head.pruned_anchor_hash = entries[3].prev_hash.clone();
        let v = verify(&entries[3..], &head);
        assert_eq!(v.broken, None);
        assert_eq!((v.first_seq, v.last_seq), (4, 6));
        // Without a prune entry in the chain, the anchor is not believed.
        let mut v = Verifier::new(&head);
        for e in &entries[3..] {
            v.check(e);
        }
        let anchored = v.finish_anchored(&head, None, std::time::Duration::ZERO);
        assert_eq!(
            anchored.broken,
            Some((
                4,
                "entries before 4 were removed without a prune entry in the chain".into()
            ))
        );
        // A wrong anchor is a break at the first kept entry.
        head.pruned_anchor_hash = GENESIS_HASH.into();
        assert_eq!(verify(&entries[3..], &head).broken.unwrap().0, 4);
    }
}
