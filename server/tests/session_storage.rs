//! Remote-session storage on both backends: the audit hash chain (append,
//! verify, tamper, pruning, pre-chain rows), sessions, recordings and the
//! consent policy.

mod common;

use std::sync::Arc;

use common::RawDb;
use schoolfleet_server::audit;
use schoolfleet_server::sessions::policy::resolve_consent;
use schoolfleet_server::storage::*;

fn event(at: Millis, n: usize) -> AuditEvent {
    AuditEvent {
        at,
        actor: "user:admin".into(),
        action: "session.start".into(),
        target: format!("session:s{n}"),
        county_id: Some("kus".into()),
        outcome: "ok".into(),
        details: format!("kind=shell reason=\"Drucker {n}\""),
        school_id: None,
    }
}

async fn chain_appends_and_verifies(store: Arc<dyn Store>, _raw: RawDb) {
    for n in 1..=5 {
        assert_eq!(
            store
                .append_audit(&event(1000 + n as i64, n))
                .await
                .unwrap(),
            n as i64
        );
    }
    let (v, head) = audit::verify(store.as_ref(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(v.broken, None);
    assert_eq!((v.entries_checked, v.first_seq, v.last_seq), (5, 1, 5));
    assert_eq!(head.seq, 5);
    let entries = store.audit_chain_page(0, 100).await.unwrap();
    assert_eq!(entries[0].prev_hash, audit::GENESIS_HASH);
    assert_eq!(entries[1].prev_hash, entries[0].hash);
    assert_eq!(entries[4].hash, head.head_hash);
}

async fn edited_entry_breaks_verification(store: Arc<dyn Store>, raw: RawDb) {
    for n in 1..=5 {
        store.append_audit(&event(1000, n)).await.unwrap();
    }
    raw.execute("UPDATE audit_events SET details = 'harmless' WHERE seq = 3")
        .await;
    let (v, _) = audit::verify(store.as_ref(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(v.broken, Some((3, "entry 3 was changed".into())));
}

async fn deleted_entry_breaks_verification(store: Arc<dyn Store>, raw: RawDb) {
    for n in 1..=5 {
        store.append_audit(&event(1000, n)).await.unwrap();
    }
    raw.execute("DELETE FROM audit_events WHERE seq = 4").await;
    let (v, _) = audit::verify(store.as_ref(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(v.broken, Some((4, "entry 4 is missing".into())));
}

async fn pruning_keeps_the_chain_verifiable(store: Arc<dyn Store>, raw: RawDb) {
    for n in 1..=6 {
        // Three old entries, three new ones.
        let at = if n <= 3 { 1_000 } else { 9_000 };
        store.append_audit(&event(at, n)).await.unwrap();
    }
    let pruned = AuditEvent {
        action: "audit.pruned".into(),
        actor: "server".into(),
        county_id: None,
        ..event(10_000, 0)
    };
    assert_eq!(store.prune_audit(5_000, &pruned).await.unwrap(), 3);
    let (v, head) = audit::verify(store.as_ref(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(v.broken, None, "{v:?}");
    assert_eq!((v.first_seq, v.last_seq), (4, 7));
    assert_eq!(head.pruned_before_seq, 4);
    let newest = store
        .list_audit_entries(&AuditQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(newest[0].event.action, "audit.pruned");
    assert!(newest[0].event.details.contains("deleted=3"));
    // Nothing older left: a second pass does nothing.
    assert_eq!(store.prune_audit(5_000, &pruned).await.unwrap(), 0);
    // Removing the first kept entry is still noticed.
    raw.execute("DELETE FROM audit_events WHERE seq = 4").await;
    let (v, _) = audit::verify(store.as_ref(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(v.broken, Some((4, "entry 4 is missing".into())));
}

async fn rows_from_before_the_chain_are_chained(store: Arc<dyn Store>, raw: RawDb) {
    store.append_audit(&event(1, 1)).await.unwrap();
    // A row as 0001-0003 wrote it, without seq or hashes.
    raw.execute(
        "INSERT INTO audit_events (at, actor, action, target, county_id, outcome, details) \
         VALUES (2, 'user:admin', 'county.create', 'county:kus', NULL, 'ok', 'old')",
    )
    .await;
    assert_eq!(store.chain_unsequenced_audit().await.unwrap(), 1);
    assert_eq!(store.chain_unsequenced_audit().await.unwrap(), 0);
    let (v, _) = audit::verify(store.as_ref(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(v.broken, None);
    assert_eq!(v.entries_checked, 2);
}

async fn audit_listing_filters(store: Arc<dyn Store>, _raw: RawDb) {
    store.append_audit(&event(1, 1)).await.unwrap();
    store
        .append_audit(&AuditEvent {
            county_id: Some("kl".into()),
            action: "device.enroll".into(),
            target: "device:d1".into(),
            ..event(2, 2)
        })
        .await
        .unwrap();
    store
        .append_audit(&AuditEvent {
            county_id: None,
            ..event(3, 3)
        })
        .await
        .unwrap();
    let q = |counties: Option<Vec<&str>>, prefix: Option<&str>, targets: Vec<&str>| AuditQuery {
        counties: counties.map(|c| c.into_iter().map(String::from).collect()),
        schools: Vec::new(),
        action_prefix: prefix.map(String::from),
        targets: targets.into_iter().map(String::from).collect(),
        since: None,
        limit: 10,
    };
    let seqs = |v: Vec<AuditEntryRecord>| v.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(
            store
                .list_audit_entries(&q(None, None, vec![]))
                .await
                .unwrap()
        ),
        [3, 2, 1]
    );
    assert_eq!(
        seqs(
            store
                .list_audit_entries(&q(Some(vec!["kus"]), None, vec![]))
                .await
                .unwrap()
        ),
        [1]
    );
    assert!(
        store
            .list_audit_entries(&q(Some(vec![]), None, vec![]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        seqs(
            store
                .list_audit_entries(&q(None, Some("session."), vec![]))
                .await
                .unwrap()
        ),
        [3, 1]
    );
    assert_eq!(
        seqs(
            store
                .list_audit_entries(&q(None, None, vec!["device:d1", "d1"]))
                .await
                .unwrap()
        ),
        [2]
    );
    // Entries about a school (0013): a school-scoped reader gets those of
    // its school only, a county reader all of the county, and the school
    // is part of the hash.
    for (seq_at, school) in [(4, "kus012"), (5, "kus013")] {
        store
            .append_audit(&AuditEvent {
                school_id: Some(school.into()),
                ..event(seq_at, seq_at as usize)
            })
            .await
            .unwrap();
    }
    let by_school = |schools: Vec<&str>| AuditQuery {
        counties: Some(Vec::new()),
        schools: schools.into_iter().map(String::from).collect(),
        limit: 10,
        ..Default::default()
    };
    let entries = store
        .list_audit_entries(&by_school(vec!["kus012"]))
        .await
        .unwrap();
    assert_eq!(seqs(entries.clone()), [4]);
    assert_eq!(entries[0].event.school_id.as_deref(), Some("kus012"));
    assert!(
        store
            .list_audit_entries(&by_school(vec![]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        seqs(
            store
                .list_audit_entries(&q(Some(vec!["kus"]), None, vec![]))
                .await
                .unwrap()
        ),
        [5, 4, 1]
    );
    let (v, _) = audit::verify(store.as_ref(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(v.broken, None);
}

fn session(id: &str, device: &str, started_at: Millis) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        kind: "shell".into(),
        state: SESSION_PENDING.into(),
        device_id: device.into(),
        county_id: "kus".into(),
        school_id: "kus012".into(),
        user_id: "u1".into(),
        actor: "user:anna".into(),
        reason: "Drucker geht nicht".into(),
        ticket: "SUP-1".into(),
        summary: "shell".into(),
        spec: r#"{"shell":{}}"#.into(),
        consent: "prompt".into(),
        started_at,
        ended_at: None,
        end_reason: String::new(),
        bytes_to_device: 0,
        bytes_from_device: 0,
        exit_code: None,
        has_recording: false,
        channels: 0,
        end_requested_at: None,
        end_requested_reason: String::new(),
        step_up: String::new(),
    }
}

async fn sessions_lifecycle(store: Arc<dyn Store>, _raw: RawDb) {
    store
        .insert_session(&session("s1", "d1", 10))
        .await
        .unwrap();
    store
        .insert_session(&session("s2", "d2", 20))
        .await
        .unwrap();
    store.activate_session("s1", "none").await.unwrap();
    let s1 = store.get_session("s1").await.unwrap().unwrap();
    assert_eq!(
        (s1.state.as_str(), s1.consent.as_str()),
        (SESSION_ACTIVE, "none")
    );
    assert!(
        store
            .request_session_end("s1", 30, "ended by user:b")
            .await
            .unwrap()
    );
    assert!(!store.request_session_end("s1", 31, "again").await.unwrap());
    let end = SessionEnd {
        state: SESSION_ENDED.into(),
        ended_at: 40,
        end_reason: "exit 3".into(),
        bytes_to_device: 5,
        bytes_from_device: 1 << 40,
        exit_code: Some(3),
        has_recording: true,
        channels: 1,
    };
    assert!(store.finish_session("s1", &end).await.unwrap());
    // Only the first end counts.
    assert!(
        !store
            .finish_session(
                "s1",
                &SessionEnd {
                    end_reason: "late".into(),
                    ..end.clone()
                }
            )
            .await
            .unwrap()
    );
    let s1 = store.get_session("s1").await.unwrap().unwrap();
    assert_eq!(s1.end_reason, "exit 3");
    assert_eq!(s1.exit_code, Some(3));
    assert_eq!(s1.bytes_from_device, 1 << 40);
    assert_eq!(s1.end_requested_reason, "ended by user:b");
    assert!(!store.request_session_end("s1", 50, "over").await.unwrap());

    let all = |filter, live_only| SessionQuery {
        filter,
        device_id: None,
        live_only,
        limit: 10,
    };
    let ids = |v: Vec<SessionRecord>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .list_sessions(&all(TenantFilter::everything(), false))
            .await
            .unwrap()),
        ["s2", "s1"]
    );
    assert_eq!(
        ids(store
            .list_sessions(&all(TenantFilter::everything(), true))
            .await
            .unwrap()),
        ["s2"]
    );
    // An empty filter fails closed.
    assert!(
        store
            .list_sessions(&all(TenantFilter::default(), false))
            .await
            .unwrap()
            .is_empty()
    );
    let kl = TenantFilter {
        counties: vec!["kl".into()],
        ..Default::default()
    };
    assert!(
        store
            .list_sessions(&all(kl, false))
            .await
            .unwrap()
            .is_empty()
    );
    // s2 (started at 20) is left over from a crashed replica.
    assert!(
        store
            .end_stale_sessions(20, 60, "gone")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.end_stale_sessions(21, 60, "gone").await.unwrap(),
        ["s2"]
    );
    let s2 = store.get_session("s2").await.unwrap().unwrap();
    assert_eq!(
        (s2.state.as_str(), s2.end_reason.as_str()),
        (SESSION_DENIED, "gone")
    );
    assert_eq!(s2.ended_at, Some(60));
}

async fn recordings_and_retention(store: Arc<dyn Store>, _raw: RawDb) {
    store
        .insert_session(&session("s1", "d1", 10))
        .await
        .unwrap();
    store
        .append_recording_chunk("s1", 0, b"{\"version\":2}\n")
        .await
        .unwrap();
    store
        .append_recording_chunk("s1", 1, &[0xff, 0, 1])
        .await
        .unwrap();
    assert!(matches!(
        store.append_recording_chunk("s1", 1, b"dup").await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(
        store.recording_chunk("s1", 1).await.unwrap().unwrap(),
        [0xff, 0, 1]
    );
    assert_eq!(store.recording_chunk("s1", 2).await.unwrap(), None);
    let end = SessionEnd {
        state: SESSION_ENDED.into(),
        ended_at: 100,
        end_reason: "exit 0".into(),
        bytes_to_device: 0,
        bytes_from_device: 0,
        exit_code: Some(0),
        has_recording: true,
        channels: 1,
    };
    store.finish_session("s1", &end).await.unwrap();
    assert_eq!(store.delete_recordings_before(100).await.unwrap(), 0);
    assert_eq!(store.delete_recordings_before(101).await.unwrap(), 1);
    assert_eq!(store.recording_chunk("s1", 0).await.unwrap(), None);
    assert!(
        !store
            .get_session("s1")
            .await
            .unwrap()
            .unwrap()
            .has_recording
    );
}

async fn consent_policy_resolution(store: Arc<dyn Store>, _raw: RawDb) {
    let policy = |school: &str, class: &str, consent: &str| ConsentPolicyRecord {
        school_id: school.into(),
        device_class: class.into(),
        consent: consent.into(),
        updated_by: "user:admin".into(),
        updated_at: 1,
    };
    let s = store.as_ref();
    assert_eq!(
        resolve_consent(s, "kus012", "schueler-pc", "prompt")
            .await
            .unwrap(),
        "prompt"
    );
    store
        .set_consent_policy(&policy("kus012", "", "notify"))
        .await
        .unwrap();
    assert_eq!(
        resolve_consent(s, "kus012", "schueler-pc", "prompt")
            .await
            .unwrap(),
        "notify"
    );
    store
        .set_consent_policy(&policy("kus012", "schueler-pc", "none"))
        .await
        .unwrap();
    assert_eq!(
        resolve_consent(s, "kus012", "schueler-pc", "prompt")
            .await
            .unwrap(),
        "none"
    );
    assert_eq!(
        resolve_consent(s, "kus012", "lehrer-laptop", "prompt")
            .await
            .unwrap(),
        "notify"
    );
    assert_eq!(
        resolve_consent(s, "kus013", "schueler-pc", "prompt")
            .await
            .unwrap(),
        "prompt"
    );
    // Setting again replaces.
    store
        .set_consent_policy(&policy("kus012", "schueler-pc", "prompt"))
        .await
        .unwrap();
    assert_eq!(
        resolve_consent(s, "kus012", "schueler-pc", "none")
            .await
            .unwrap(),
        "prompt"
    );
    let listed = store
        .list_consent_policies(Some(&["kus012".to_string()]))
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        store
            .list_consent_policies(Some(&[]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list_consent_policies(None).await.unwrap().len(), 2);
}

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const RETENTION: std::time::Duration = std::time::Duration::from_secs(730 * 86_400);

/// Issue 9: deleting entries 1-20 and setting the prune anchor made verify
/// report "removed by the retention policy" for entries minutes old.
async fn a_forged_prune_fails_verification(store: Arc<dyn Store>, raw: RawDb) {
    store.set_audit_key(KEY.to_vec());
    let now = now_millis();
    for n in 1..=25 {
        store.append_audit(&event(now - 60_000, n)).await.unwrap();
    }
    let (v, head) = audit::verify(store.as_ref(), RETENTION).await.unwrap();
    assert_eq!(v.broken, None);
    assert_eq!(head.head_mac, head.expected_mac(KEY));
    // The forgery of the issue, in the database alone.
    raw.execute("DELETE FROM audit_events WHERE seq <= 20")
        .await;
    raw.execute(
        "UPDATE audit_chain SET pruned_before_seq = 21, pruned_anchor_hash =          (SELECT prev_hash FROM audit_events WHERE seq = 21) WHERE id = 1",
    )
    .await;
    let (v, head) = audit::verify(store.as_ref(), RETENTION).await.unwrap();
    let (_, problem) = v.broken.expect("the forged prune was believed");
    assert!(problem.contains("does not match its MAC"), "{problem}");
    // Even with the key stolen as well, the prune has no entry in the chain.
    raw.execute(&format!(
        "UPDATE audit_chain SET head_mac = '{}' WHERE id = 1",
        head.expected_mac(KEY)
    ))
    .await;
    let (v, _) = audit::verify(store.as_ref(), RETENTION).await.unwrap();
    assert_eq!(
        v.broken,
        Some((
            21,
            "entries before 21 were removed without a prune entry in the chain".into()
        ))
    );
    // And a forged prune entry cannot claim minutes-old entries were due.
    store
        .append_audit(&AuditEvent {
            action: audit::PRUNE_ACTION.into(),
            actor: "server".into(),
            county_id: None,
            details: format!("retention=730days; deleted=20 kept_from_seq=21 before={now}"),
            ..event(now, 0)
        })
        .await
        .unwrap();
    let (v, _) = audit::verify(store.as_ref(), RETENTION).await.unwrap();
    let (seq, problem) = v.broken.expect("a prune of fresh entries was believed");
    assert_eq!(seq, 26);
    assert!(problem.contains("newer than audit.retention"), "{problem}");
}

/// A prune by the retention sweep, past the retention, verifies; so does
/// the chain after it, with its MAC.
async fn a_real_prune_verifies_against_the_retention(store: Arc<dyn Store>, _raw: RawDb) {
    store.set_audit_key(KEY.to_vec());
    let now = now_millis();
    let day = 86_400_000;
    for n in 1..=6 {
        let at = if n <= 3 { now - 800 * day } else { now - day };
        store.append_audit(&event(at, n)).await.unwrap();
    }
    let before = now - RETENTION.as_millis() as i64;
    let pruned = AuditEvent {
        action: audit::PRUNE_ACTION.into(),
        actor: "server".into(),
        county_id: None,
        details: "retention=730days".into(),
        ..event(now, 0)
    };
    assert_eq!(store.prune_audit(before, &pruned).await.unwrap(), 3);
    let (v, head) = audit::verify(store.as_ref(), RETENTION).await.unwrap();
    assert_eq!(v.broken, None, "{v:?}");
    assert_eq!(head.pruned_before_seq, 4);
    assert_eq!(head.head_mac, head.expected_mac(KEY));
    // A longer retention than the one the prune kept is reported.
    let (v, _) = audit::verify(store.as_ref(), RETENTION * 2).await.unwrap();
    assert!(v.broken.is_some());
}

on_both_backends_raw!(
    a_forged_prune_fails_verification,
    a_real_prune_verifies_against_the_retention,
    chain_appends_and_verifies,
    edited_entry_breaks_verification,
    deleted_entry_breaks_verification,
    pruning_keeps_the_chain_verifiable,
    rows_from_before_the_chain_are_chained,
    audit_listing_filters,
    sessions_lifecycle,
    recordings_and_retention,
    consent_policy_resolution,
);
