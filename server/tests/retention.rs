//! Retention (issue 12, part 2): every table with personal data loses its
//! old rows and keeps its new ones, on both backends. Rows are written with
//! plain SQL so that they can carry old times.

mod common;

use std::sync::Arc;

use common::RawDb;
use schoolfleet_server::storage::*;

const DAY: i64 = 86_400_000;

fn now() -> Millis {
    now_millis()
}

/// Old rows are 400 days old, new ones an hour; the cut-off is 30 days.
fn old() -> Millis {
    now() - 400 * DAY
}
fn new() -> Millis {
    now() - 3_600_000
}
fn cutoff() -> Millis {
    now() - 30 * DAY
}

async fn seed(store: &Arc<dyn Store>, raw: &RawDb) {
    store
        .create_county(&County {
            id: "kus".into(),
            name: "Kusel".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    store
        .create_school(&School {
            id: "kus012".into(),
            county_id: "kus".into(),
            name: "Schule".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    for (id, host, class) in [
        ("d-pupil", "pc-1", "schueler-pc"),
        ("d-admin", "verw-1", "verwaltungs-pc"),
    ] {
        raw.execute(&format!(
            "INSERT INTO devices (id, county_id, school_id, device_class, status, hostname, \
             system_uuid, serial_number, enrolled_at) VALUES ('{id}', 'kus', 'kus012', '{class}', \
             'active', '{host}', '', '', 1)"
        ))
        .await;
    }
}

async fn count(raw: &RawDb, table: &str) -> i64 {
    raw.scalar(&format!("SELECT COUNT(*) FROM {table}")).await
}

fn only(cutoffs: impl FnOnce(&mut RetentionCutoffs)) -> RetentionCutoffs {
    let mut c = RetentionCutoffs::default();
    cutoffs(&mut c);
    c
}

fn session_sql(id: &str, ended_at: Option<Millis>) -> String {
    let ended = ended_at.map_or("NULL".to_string(), |t| t.to_string());
    let state = if ended_at.is_some() {
        "ended"
    } else {
        "active"
    };
    format!(
        "INSERT INTO sessions (id, kind, state, device_id, county_id, school_id, user_id, actor, \
         reason, ticket, summary, spec, consent, started_at, ended_at) VALUES ('{id}', 'exec', \
         '{state}', 'd-pupil', 'kus', 'kus012', 'u1', 'user:anna', 'Passwort zurücksetzen', '', \
         'chpasswd max.mustermann', '{{}}', 'prompt', {}, {ended})",
        old() - DAY
    )
}

async fn sessions_and_their_recordings_go(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    raw.execute(&session_sql("s-old", Some(old()))).await;
    raw.execute(&session_sql("s-new", Some(new()))).await;
    // Started long ago and still live: never deleted by retention.
    raw.execute(&session_sql("s-live", None)).await;
    for s in ["s-old", "s-new"] {
        store.append_recording_chunk(s, 0, b"output").await.unwrap();
    }
    let n = store
        .delete_expired(&only(|c| c.sessions_ended_before = Some(cutoff())))
        .await
        .unwrap();
    assert_eq!(n.sessions, 1);
    assert_eq!(n.total(), 1);
    assert!(store.get_session("s-old").await.unwrap().is_none());
    assert!(store.get_session("s-new").await.unwrap().is_some());
    assert!(store.get_session("s-live").await.unwrap().is_some());
    assert!(store.recording_chunk("s-old", 0).await.unwrap().is_none());
    assert!(store.recording_chunk("s-new", 0).await.unwrap().is_some());
}

fn change_sql(device: &str, kind: &str, at: Millis) -> String {
    format!(
        "INSERT INTO inventory_changes (device_id, report_id, at, kind, subject, old_value, \
         new_value) VALUES ('{device}', 'r', {at}, '{kind}', 'eth0', '10.0.0.1', '10.0.0.2')"
    )
}

async fn inventory_history_goes(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    raw.execute(&change_sql("d-pupil", "software_installed", old()))
        .await;
    raw.execute(&change_sql("d-pupil", "software_installed", new()))
        .await;
    let n = store
        .delete_expired(&only(|c| c.inventory_history_before = Some(cutoff())))
        .await
        .unwrap();
    assert_eq!(n.inventory_history, 1);
    assert_eq!(count(&raw, "inventory_changes").await, 1);
    let left = store.list_inventory_changes("d-pupil", 10).await.unwrap();
    assert!(left[0].at > cutoff());
}

async fn network_history_is_kept_only_for_opted_in_classes(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    for device in ["d-pupil", "d-admin"] {
        raw.execute(&change_sql(device, "network_changed", old()))
            .await;
        raw.execute(&change_sql(device, "network_changed", new()))
            .await;
        raw.execute(&change_sql(device, "os_changed", old())).await;
    }
    let n = store
        .delete_expired(&only(|c| {
            c.network_history_before = Some(cutoff());
            c.network_history_classes = vec!["verwaltungs-pc".into()];
        }))
        .await
        .unwrap();
    // The pupil PC's class did not opt in: both its rows go; the admin
    // PC's old row goes, its new one stays. Other kinds are not touched.
    assert_eq!(n.network_history, 3);
    assert_eq!(
        raw.scalar(
            "SELECT COUNT(*) FROM inventory_changes WHERE kind = 'network_changed' \
             AND device_id = 'd-admin'"
        )
        .await,
        1
    );
    assert_eq!(
        raw.scalar("SELECT COUNT(*) FROM inventory_changes WHERE kind = 'os_changed'")
            .await,
        2
    );
}

async fn the_report_log_goes(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    for (id, at) in [("r-old", old()), ("r-new", new())] {
        raw.execute(&format!(
            "INSERT INTO inventory_reports (device_id, report_id, collected_at, received_at, \
             content_hash, reason) VALUES ('d-pupil', '{id}', {at}, {at}, 'h', 'timer')"
        ))
        .await;
    }
    let n = store
        .delete_expired(&only(|c| c.report_log_before = Some(cutoff())))
        .await
        .unwrap();
    assert_eq!(n.report_log, 1);
    let left = store.list_inventory_reports("d-pupil", 10).await.unwrap();
    assert_eq!(left.len(), 1);
}

fn ticket_sql(id: &str, number: i64, status: &str, closed_at: Option<Millis>) -> String {
    let closed = closed_at.map_or("NULL".to_string(), |t| t.to_string());
    format!(
        "INSERT INTO tickets (id, number, title, description, status, priority, category, \
         county_id, school_id, reporter, created_at, updated_at, closed_at) VALUES ('{id}', \
         {number}, 'Drucker', 'Frau Müller kann nicht drucken', '{status}', 'normal', 'sonstiges', \
         'kus', 'kus012', 'anna', {o}, {o}, {closed})",
        o = old() - DAY
    )
}

async fn resolved_tickets_go_with_their_timeline(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    raw.execute(&ticket_sql("t-old", 2001, "closed", Some(old())))
        .await;
    raw.execute(&ticket_sql("t-new", 2002, "resolved", Some(new())))
        .await;
    // Open for a long time: an open ticket is still being worked on.
    raw.execute(&ticket_sql("t-open", 2003, "open", None)).await;
    for t in ["t-old", "t-new", "t-open"] {
        raw.execute(&format!(
            "INSERT INTO ticket_events (ticket_id, at, actor, kind, body, old_value, new_value) \
             VALUES ('{t}', {}, 'anna', 'comment', 'Toner getauscht', '', '')",
            old()
        ))
        .await;
        raw.execute(&format!(
            "INSERT INTO ticket_devices (ticket_id, device_id, linked_at) VALUES ('{t}', 'd-pupil', 1)"
        ))
        .await;
    }
    let n = store
        .delete_expired(&only(|c| c.tickets_closed_before = Some(cutoff())))
        .await
        .unwrap();
    assert_eq!(n.tickets, 1);
    assert!(store.get_ticket(2001).await.unwrap().is_none());
    assert!(store.get_ticket(2002).await.unwrap().is_some());
    assert!(store.get_ticket(2003).await.unwrap().is_some());
    assert_eq!(count(&raw, "ticket_events").await, 2);
    assert_eq!(count(&raw, "ticket_devices").await, 2);
}

async fn superseded_compliance_results_go(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    for revision in [1, 2] {
        raw.execute(&format!(
            "INSERT INTO standard_versions (revision, standard_id, version, content, rules, \
             waivers, applied_by, applied_at) VALUES ({revision}, 'std', '{revision}', '', 1, 0, \
             'admin', 1)"
        ))
        .await;
    }
    for (device, revision, at) in [
        ("d-pupil", 1, old()),
        ("d-admin", 1, new()),
        ("d-pupil", 2, old()),
    ] {
        raw.execute(&format!(
            "INSERT INTO compliance_results (device_id, revision, rule_id, status, counted, \
             expected, actual, reason, waiver_id, evaluated_at) VALUES ('{device}', {revision}, \
             'r1', 'pass', TRUE, '', '', '', '', {at})"
        ))
        .await;
    }
    let n = store
        .delete_expired(&only(|c| c.compliance_results_before = Some(cutoff())))
        .await
        .unwrap();
    // Only the old result of the superseded revision 1; the current
    // revision's result stays however old it is.
    assert_eq!(n.compliance_results, 1);
    assert_eq!(
        store
            .list_compliance_results("d-pupil", 2)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .list_compliance_results("d-pupil", 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .list_compliance_results("d-admin", 1)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn compliance_history_goes(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    for at in [old(), new()] {
        raw.execute(&format!(
            "INSERT INTO compliance_changes (device_id, revision, rule_id, at, old_status, \
             new_status, actual) VALUES ('d-pupil', 1, 'r1', {at}, 'pass', 'fail', 'x')"
        ))
        .await;
    }
    let n = store
        .delete_expired(&only(|c| c.compliance_history_before = Some(cutoff())))
        .await
        .unwrap();
    assert_eq!(n.compliance_history, 1);
    assert_eq!(count(&raw, "compliance_changes").await, 1);
}

async fn compliance_snapshots_go(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    for day in ["2024-01-31", "2026-12-01"] {
        raw.execute(&format!(
            "INSERT INTO compliance_snapshots (day, revision, county_id, school_id, devices, \
             compliant) VALUES ('{day}', 1, 'kus', 'kus012', 10, 9)"
        ))
        .await;
    }
    let n = store
        .delete_expired(&only(|c| {
            c.compliance_snapshots_before = Some("2025-01-01".into())
        }))
        .await
        .unwrap();
    assert_eq!(n.compliance_snapshots, 1);
    assert!(
        store
            .compliance_snapshot("2024-01-31")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.compliance_snapshot("2026-12-01").await.unwrap().len(),
        1
    );
}

async fn webhook_events_go(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    for (id, at, delivered) in [
        ("e-old-delivered", old(), "1"),
        ("e-old-undelivered", old(), "NULL"),
        ("e-new", new(), "NULL"),
    ] {
        raw.execute(&format!(
            "INSERT INTO webhook_outbox (event_id, kind, payload, created_at, next_attempt_at, \
             delivered_at) VALUES ('{id}', 'ticket.created', '{{\"reporter\":\"anna\"}}', {at}, \
             {at}, {delivered})"
        ))
        .await;
    }
    let n = store
        .delete_expired(&only(|c| c.webhook_outbox_before = Some(cutoff())))
        .await
        .unwrap();
    assert_eq!(n.webhook_outbox, 2);
    assert_eq!(count(&raw, "webhook_outbox").await, 1);
}

async fn expired_enrolment_tokens_go(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    for (id, expires, revoked) in [
        ("et-expired", old(), "NULL".to_string()),
        ("et-revoked", now() + DAY, old().to_string()),
        ("et-valid", now() + DAY, "NULL".to_string()),
        ("et-just-expired", new(), "NULL".to_string()),
    ] {
        raw.execute(&format!(
            "INSERT INTO enrollment_tokens (id, secret_hash, county_id, school_id, device_class, \
             description, max_uses, uses, expires_at, created_by, created_at, revoked_at) VALUES \
             ('{id}', 'h', 'kus', 'kus012', 'schueler-pc', 'Raum 12', 1, 0, {expires}, 'anna', 1, \
             {revoked})"
        ))
        .await;
    }
    let n = store
        .delete_expired(&only(|c| c.enrollment_tokens_before = Some(cutoff())))
        .await
        .unwrap();
    assert_eq!(n.enrollment_tokens, 2);
    assert!(
        store
            .get_enrollment_token("et-valid")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get_enrollment_token("et-just-expired")
            .await
            .unwrap()
            .is_some()
    );
}

async fn expired_api_tokens_go(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    store
        .create_user(&User {
            id: "u1".into(),
            name: "anna".into(),
            county_id: None,
            created_at: 1,
            bindings: vec![RoleBindingRecord::new("viewer", "cooperation")],
        })
        .await
        .unwrap();
    for (id, expires, revoked) in [
        ("at-expired", old().to_string(), "NULL".to_string()),
        ("at-revoked", "NULL".to_string(), old().to_string()),
        ("at-valid", (now() + DAY).to_string(), "NULL".to_string()),
        ("at-forever", "NULL".to_string(), "NULL".to_string()),
    ] {
        raw.execute(&format!(
            "INSERT INTO api_tokens (id, user_id, secret_hash, description, created_at, \
             expires_at, revoked_at) VALUES ('{id}', 'u1', 'h', '', 1, {expires}, {revoked})"
        ))
        .await;
    }
    let n = store
        .delete_expired(&only(|c| c.api_tokens_before = Some(cutoff())))
        .await
        .unwrap();
    assert_eq!(n.api_tokens, 2);
    assert!(store.get_api_token("at-valid").await.unwrap().is_some());
    assert!(store.get_api_token("at-forever").await.unwrap().is_some());
    assert!(store.get_api_token("at-expired").await.unwrap().is_none());
}

/// Nothing is deleted when no cut-off is set, and compaction works on an
/// empty pass (PostgreSQL: VACUUM outside a transaction).
async fn an_empty_pass_deletes_nothing(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    raw.execute(&session_sql("s-old", Some(old()))).await;
    let n = store
        .delete_expired(&RetentionCutoffs::default())
        .await
        .unwrap();
    assert_eq!(n, RetentionCounts::default());
    store.compact().await.unwrap();
    assert_eq!(count(&raw, "sessions").await, 1);
}

on_both_backends_raw!(
    sessions_and_their_recordings_go,
    inventory_history_goes,
    network_history_is_kept_only_for_opted_in_classes,
    the_report_log_goes,
    resolved_tickets_go_with_their_timeline,
    superseded_compliance_results_go,
    compliance_history_goes,
    compliance_snapshots_go,
    webhook_events_go,
    expired_enrolment_tokens_go,
    expired_api_tokens_go,
    an_empty_pass_deletes_nothing,
);
