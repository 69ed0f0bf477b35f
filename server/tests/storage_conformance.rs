//! One conformance suite for every storage backend: SQLite always,
//! PostgreSQL whenever `SCHOOLFLEET_TEST_DATABASE_URL` is set (CI sets it).

mod common;

use std::sync::Arc;

use schoolfleet_server::storage::*;

fn county(id: &str) -> County {
    County {
        id: id.into(),
        name: format!("Landkreis {id}"),
        created_at: 1,
    }
}

fn school(id: &str, county_id: &str) -> School {
    School {
        id: id.into(),
        county_id: county_id.into(),
        name: format!("Schule {id}"),
        created_at: 2,
    }
}

async fn seed_tenants(store: &Arc<dyn Store>) {
    for c in ["kus", "kl"] {
        store.create_county(&county(c)).await.unwrap();
    }
    store.create_school(&school("kus012", "kus")).await.unwrap();
    store.create_school(&school("kus013", "kus")).await.unwrap();
    store.create_school(&school("kl001", "kl")).await.unwrap();
}

fn token(id: &str, school_id: &str, county_id: &str, max_uses: i64) -> EnrollmentToken {
    EnrollmentToken {
        id: id.into(),
        secret_hash: "h".repeat(64),
        county_id: county_id.into(),
        school_id: school_id.into(),
        device_class: "schueler-pc".into(),
        description: String::new(),
        max_uses,
        uses: 0,
        expires_at: now_millis() + 3_600_000,
        created_by: "admin".into(),
        created_at: now_millis(),
        revoked_at: None,
        reinstall_device_id: None,
    }
}

fn device(id: &str, hostname: &str, school_id: &str, county_id: &str) -> DeviceRecord {
    DeviceRecord {
        id: id.into(),
        county_id: county_id.into(),
        school_id: school_id.into(),
        device_class: "schueler-pc".into(),
        status: "active".into(),
        hostname: hostname.into(),
        system_uuid: format!("uuid-{id}"),
        serial_number: format!("serial-{id}"),
        machine_id: format!("machine-{id}"),
        cert_fingerprint: Some(format!("fp-{id}")),
        cert_serial: Some("01".into()),
        cert_not_after: Some(now_millis() + 1_000_000),
        enrolled_at: now_millis(),
        last_seen: None,
        connected: false,
        agent_version: "0.1.0".into(),
        agent_consent_min: None,
        inventory_at: None,
        inventory_hash: None,
        os_name: String::new(),
        os_version: String::new(),
        vendor: String::new(),
        model: String::new(),
        memory_total_bytes: 0,
        ip_addresses: String::new(),
    }
}

async fn enroll(
    store: &Arc<dyn Store>,
    token_id: &str,
    d: DeviceRecord,
    existing: bool,
) -> Result<()> {
    store
        .enroll_device(&Enrolment {
            token_id: token_id.into(),
            now: now_millis(),
            device: d,
            existing,
        })
        .await
}

/// Enrols devices d1 (kus012), d2 (kus013), d3 (kl001).
async fn seed_devices(store: &Arc<dyn Store>) {
    seed_tenants(store).await;
    store
        .create_enrollment_token(&token("tkus", "kus012", "kus", 10))
        .await
        .unwrap();
    store
        .create_enrollment_token(&token("tkus13", "kus013", "kus", 10))
        .await
        .unwrap();
    store
        .create_enrollment_token(&token("tkl", "kl001", "kl", 10))
        .await
        .unwrap();
    enroll(
        store,
        "tkus",
        device("d1", "kus012-sp0101", "kus012", "kus"),
        false,
    )
    .await
    .unwrap();
    enroll(
        store,
        "tkus13",
        device("d2", "kus013-sp0101", "kus013", "kus"),
        false,
    )
    .await
    .unwrap();
    enroll(
        store,
        "tkl",
        device("d3", "kl001-sp0101", "kl001", "kl"),
        false,
    )
    .await
    .unwrap();
}

fn report(
    device_id: &str,
    report_id: &str,
    collected_at: Millis,
    software: &[(&str, &str)],
) -> IngestReport {
    IngestReport {
        device_id: device_id.into(),
        report_id: report_id.into(),
        collected_at,
        received_at: now_millis(),
        content_hash: format!("{collected_at:064}"),
        reason: "test".into(),
        inventory: vec![1, 2, 3],
        summary: DeviceSummary {
            hostname: format!("host-{report_id}"),
            ..Default::default()
        },
        software: SoftwareList::from_rows(
            &software
                .iter()
                .map(|(name, version)| SoftwareRow {
                    source: "dpkg".into(),
                    name: (*name).into(),
                    architecture: "amd64".into(),
                    version: (*version).into(),
                })
                .collect::<Vec<_>>(),
        ),
        changes: vec![InventoryChangeRecord {
            report_id: report_id.into(),
            at: collected_at,
            kind: "software_installed".into(),
            subject: "firefox-esr".into(),
            old_value: String::new(),
            new_value: "140.1".into(),
        }],
    }
}

fn query(filter: TenantFilter) -> DeviceQuery {
    DeviceQuery {
        filter,
        now: now_millis(),
        online_window_ms: 60_000,
        limit: 100,
        ..Default::default()
    }
}

// --- the suite ---

async fn tenants_roundtrip_and_conflicts(store: Arc<dyn Store>) {
    seed_tenants(&store).await;
    assert_eq!(store.get_county("kus").await.unwrap(), Some(county("kus")));
    assert!(matches!(
        store.create_county(&county("kus")).await,
        Err(StorageError::Conflict(_))
    ));
    let kus_schools: Vec<_> = store
        .list_schools(Some("kus"))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(kus_schools, ["kus012", "kus013"]);
    assert_eq!(store.list_schools(None).await.unwrap().len(), 3);
    // The three agreed device classes come with the schema.
    let classes: Vec<_> = store
        .list_device_classes()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(classes, ["lehrer-laptop", "schueler-pc", "verwaltungs-pc"]);
    // A school in a county that does not exist is refused by the database.
    assert!(
        store
            .create_school(&school("x001", "nowhere"))
            .await
            .is_err()
    );
}

async fn users_and_api_tokens(store: Arc<dyn Store>) {
    seed_tenants(&store).await;
    let user = User {
        id: "u1".into(),
        name: "anna".into(),
        county_id: Some("kus".into()),
        created_at: 5,
        bindings: vec![
            RoleBindingRecord::new("technician", "county:kus"),
            RoleBindingRecord::new("viewer", "cooperation"),
        ],
    };
    store.create_user(&user).await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 1);
    let mut loaded = store.get_user("anna").await.unwrap().unwrap();
    loaded.bindings.sort();
    let mut expected = user.clone();
    expected.bindings.sort();
    assert_eq!(loaded, expected);
    assert_eq!(store.get_user("u1").await.unwrap().unwrap().name, "anna");
    assert!(matches!(
        store
            .create_user(&User {
                id: "u2".into(),
                ..user.clone()
            })
            .await,
        Err(StorageError::Conflict(_))
    ));

    let api = ApiToken {
        id: "t1".into(),
        user_id: "u1".into(),
        secret_hash: "s".repeat(64),
        description: "laptop".into(),
        created_at: 1,
        expires_at: Some(99),
        revoked_at: None,
    };
    store.create_api_token(&api).await.unwrap();
    assert_eq!(store.get_api_token("t1").await.unwrap(), Some(api));
    store.revoke_api_token("t1", 50).await.unwrap();
    assert_eq!(
        store.get_api_token("t1").await.unwrap().unwrap().revoked_at,
        Some(50)
    );
    assert!(matches!(
        store.revoke_api_token("nope", 1).await,
        Err(StorageError::NotFound(_))
    ));
}

async fn user_id_wins_over_a_name_that_looks_like_it(store: Arc<dyn Store>) {
    seed_tenants(&store).await;
    let admin_id = "0190aaaa-0000-7000-8000-0000000000ad";
    // Created first, so a scan in insertion order meets it first.
    let impostor = User {
        id: "u-impostor".into(),
        name: admin_id.into(),
        county_id: Some("kus".into()),
        created_at: 1,
        bindings: vec![RoleBindingRecord::new("viewer", "school:kus012")],
    };
    store.create_user(&impostor).await.unwrap();
    let admin = User {
        id: admin_id.into(),
        name: "admin".into(),
        county_id: None,
        created_at: 2,
        bindings: vec![RoleBindingRecord::new("admin", "cooperation")],
    };
    store.create_user(&admin).await.unwrap();
    assert_eq!(store.get_user(admin_id).await.unwrap(), Some(admin));
    assert_eq!(store.get_user("u-impostor").await.unwrap(), Some(impostor));
}

async fn enrolment_uses_tokens_atomically(store: Arc<dyn Store>) {
    seed_tenants(&store).await;
    store
        .create_enrollment_token(&token("t", "kus012", "kus", 3))
        .await
        .unwrap();
    // Six agents race for three uses: exactly three win.
    let attempts = (0..6).map(|i| {
        let store = store.clone();
        async move {
            enroll(
                &store,
                "t",
                device(&format!("d{i}"), &format!("pc{i}"), "kus012", "kus"),
                false,
            )
            .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 3, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(StorageError::TokenUnusable(_))))
    );
    assert_eq!(
        store.get_enrollment_token("t").await.unwrap().unwrap().uses,
        3
    );

    // Revoked and expired tokens are unusable too.
    store
        .create_enrollment_token(&token("r", "kus012", "kus", 9))
        .await
        .unwrap();
    store
        .revoke_enrollment_token("r", now_millis())
        .await
        .unwrap();
    assert!(matches!(
        enroll(&store, "r", device("x", "x", "kus012", "kus"), false).await,
        Err(StorageError::TokenUnusable(_))
    ));
    let mut expired = token("e", "kus012", "kus", 9);
    expired.expires_at = now_millis() - 1;
    store.create_enrollment_token(&expired).await.unwrap();
    assert!(matches!(
        enroll(&store, "e", device("y", "y", "kus012", "kus"), false).await,
        Err(StorageError::TokenUnusable(_))
    ));
    // A failed enrolment leaves no device behind.
    assert!(store.get_device("x").await.unwrap().is_none());
}

async fn reenrolment_replaces_certificate_without_duplicate(store: Arc<dyn Store>) {
    seed_devices(&store).await;
    let hw = |uuid: &str, serial: &str, machine: &str| HardwareIdentity {
        system_uuid: uuid.into(),
        serial_number: serial.into(),
        machine_id: machine.into(),
    };
    let found = store
        .find_device_by_hardware("kus", &hw("uuid-d1", "serial-d1", ""))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, "d1");
    // Without a firmware UUID the machine id links the device...
    let by_machine = store
        .find_device_by_hardware("kus", &hw("", "", "machine-d1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_machine.id, "d1");
    // ...but a firmware UUID that differs is a different machine.
    assert!(
        store
            .find_device_by_hardware("kus", &hw("uuid-other", "serial-d1", "machine-d1"))
            .await
            .unwrap()
            .is_none()
    );
    // Empty identities never match, and hardware is not matched across counties.
    assert!(
        store
            .find_device_by_hardware("kus", &hw("", "", ""))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_device_by_hardware("kl", &hw("uuid-d1", "serial-d1", ""))
            .await
            .unwrap()
            .is_none()
    );

    let mut again = found.clone();
    again.cert_fingerprint = Some("fp-new".into());
    again.hostname = "renamed".into();
    enroll(&store, "tkus", again, true).await.unwrap();
    assert!(
        store.get_device_by_cert("fp-d1").await.unwrap().is_none(),
        "old certificate still maps"
    );
    let renewed = store.get_device_by_cert("fp-new").await.unwrap().unwrap();
    assert_eq!(
        (renewed.id.as_str(), renewed.hostname.as_str()),
        ("d1", "renamed")
    );
    let all = store
        .list_devices(&query(TenantFilter::everything()))
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "re-enrolment created a duplicate");

    // A revoked device cannot be re-enrolled.
    store
        .set_device_status("d1", DeviceStatus::Revoked)
        .await
        .unwrap();
    assert!(enroll(&store, "tkus", renewed, true).await.is_err());
}

async fn device_lists_respect_tenants_and_filters(store: Arc<dyn Store>) {
    seed_devices(&store).await;
    let ids = |devices: Vec<DeviceRecord>| devices.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let kus = TenantFilter {
        counties: vec!["kus".into()],
        ..Default::default()
    };
    assert_eq!(
        ids(store.list_devices(&query(kus)).await.unwrap()),
        ["d1", "d2"]
    );
    let school = TenantFilter {
        schools: vec!["kl001".into()],
        ..Default::default()
    };
    assert_eq!(
        ids(store.list_devices(&query(school)).await.unwrap()),
        ["d3"]
    );
    // An empty filter matches nothing: the store fails closed.
    assert!(
        store
            .list_devices(&query(TenantFilter::default()))
            .await
            .unwrap()
            .is_empty()
    );

    let mut q = query(TenantFilter::everything());
    q.school_id = Some("kus013".into());
    assert_eq!(ids(store.list_devices(&q).await.unwrap()), ["d2"]);

    let mut q = query(TenantFilter::everything());
    q.hostname_contains = Some("KL001".into());
    assert_eq!(ids(store.list_devices(&q).await.unwrap()), ["d3"]);
    let mut q = query(TenantFilter::everything());
    q.hostname_contains = Some("%".into());
    assert!(
        store.list_devices(&q).await.unwrap().is_empty(),
        "LIKE wildcard not escaped"
    );

    // Online: connected and seen within the window.
    assert!(
        store
            .record_agent_seen(
                "d1",
                now_millis(),
                &stream("s1", "r1"),
                Some(&AgentHello {
                    version: "0.2.0",
                    consent_min: Some("prompt"),
                })
            )
            .await
            .unwrap()
    );
    let mut q = query(TenantFilter::everything());
    q.online = Some(true);
    assert_eq!(ids(store.list_devices(&q).await.unwrap()), ["d1"]);
    q.online = Some(false);
    assert_eq!(ids(store.list_devices(&q).await.unwrap()), ["d3", "d2"]);
    let d1 = store.get_device("d1").await.unwrap().unwrap();
    assert_eq!(d1.agent_version, "0.2.0");
    assert_eq!(d1.agent_consent_min.as_deref(), Some("prompt"));
    // A heartbeat keeps what the Hello said; the next Hello replaces it.
    let again = |hello: Option<AgentHello<'static>>| {
        let store = store.clone();
        async move {
            store
                .record_agent_seen("d1", now_millis(), &stream("s1", "r1"), hello.as_ref())
                .await
                .unwrap();
            store.get_device("d1").await.unwrap().unwrap()
        }
    };
    let d1 = again(None).await;
    assert_eq!(
        (d1.agent_version.as_str(), d1.agent_consent_min.as_deref()),
        ("0.2.0", Some("prompt"))
    );
    let d1 = again(Some(AgentHello {
        version: "0.3.0",
        consent_min: None,
    }))
    .await;
    assert_eq!(
        (d1.agent_version.as_str(), d1.agent_consent_min.as_deref()),
        ("0.3.0", None)
    );
    let d1 = again(Some(AgentHello {
        version: "0.2.0",
        consent_min: Some("prompt"),
    }))
    .await;
    assert_eq!(d1.agent_consent_min.as_deref(), Some("prompt"));
    assert!(d1.is_online(now_millis(), 60_000));

    // Keyset paging visits every device once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let mut q = query(TenantFilter::everything());
        q.limit = 2;
        q.after = after.clone();
        let page = store.list_devices(&q).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|d| (d.hostname.clone(), d.id.clone()));
        seen.extend(page.into_iter().map(|d| d.id));
    }
    assert_eq!(seen, ["d3", "d1", "d2"]);

    // Retired devices drop out of the default list; revoked ones stop heartbeating.
    store
        .set_device_status("d2", DeviceStatus::Retired)
        .await
        .unwrap();
    assert_eq!(
        ids(store
            .list_devices(&query(TenantFilter::everything()))
            .await
            .unwrap()),
        ["d3", "d1"]
    );
    store
        .set_device_status("d3", DeviceStatus::Revoked)
        .await
        .unwrap();
    assert!(
        !store
            .record_agent_seen("d3", now_millis(), &stream("s3", "r1"), None)
            .await
            .unwrap()
    );
}

fn stream<'a>(id: &'a str, replica: &'a str) -> AgentStream<'a> {
    AgentStream { id, replica }
}

async fn is_connected(store: &Arc<dyn Store>, id: &str) -> bool {
    store.get_device(id).await.unwrap().unwrap().connected
}

/// The agent reconnected to replica B while its old stream on replica A
/// was still waiting for its keepalive to time out: when the old stream
/// finally ends, the device stays connected.
async fn only_the_current_stream_disconnects_a_device(store: Arc<dyn Store>) {
    seed_devices(&store).await;
    let (on_a, on_b) = (
        stream("stream-a", "replica-a"),
        stream("stream-b", "replica-b"),
    );
    assert!(
        store
            .record_agent_seen("d1", 1_000, &on_a, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_agent_seen("d1", 2_000, &on_b, None)
            .await
            .unwrap()
    );

    assert!(!store.record_agent_gone("d1", 3_000, on_a.id).await.unwrap());
    assert!(
        is_connected(&store, "d1").await,
        "a stale stream disconnected the device"
    );

    assert!(store.record_agent_gone("d1", 4_000, on_b.id).await.unwrap());
    assert!(!is_connected(&store, "d1").await);
    // Once gone, a second end of the same stream changes nothing.
    assert!(!store.record_agent_gone("d1", 5_000, on_b.id).await.unwrap());
    assert_eq!(
        store.get_device("d1").await.unwrap().unwrap().last_seen,
        Some(4_000)
    );
}

/// The heartbeats' group commit answers each write as a write of its own
/// would: in order, false for a device that is no longer active.
async fn agents_seen_in_one_group(store: Arc<dyn Store>) {
    seed_devices(&store).await;
    store
        .set_device_status("d2", DeviceStatus::Retired)
        .await
        .unwrap();
    let seen = |device: &str, at| {
        AgentSeen::new(
            device,
            at,
            &stream("stream-1", "replica-a"),
            Some(&AgentHello {
                version: "9.9",
                consent_min: Some("prompt"),
            }),
        )
    };
    let batch = [
        seen("d1", 1_000),
        seen("d2", 1_000),
        seen("nobody", 1_000),
        seen("d1", 2_000),
    ];
    assert_eq!(
        store.record_agents_seen(&batch).await.unwrap(),
        vec![true, false, false, true]
    );
    let d1 = store.get_device("d1").await.unwrap().unwrap();
    assert_eq!(d1.last_seen, Some(2_000));
    assert!(is_connected(&store, "d1").await);
    assert_eq!(d1.agent_version, "9.9");
    assert!(!is_connected(&store, "d2").await);
    assert!(store.record_agents_seen(&[]).await.unwrap().is_empty());

    // A heartbeat with the stored inventory's hash confirms it current;
    // another hash confirms nothing.
    let inventory = report("d1", "r1", 1_500, &[("bash", "5.2")]);
    store.ingest_report(&inventory).await.unwrap();
    let heartbeat = |at, hash: &str| {
        AgentSeen::new("d1", at, &stream("stream-1", "replica-a"), None).confirming(hash.into())
    };
    let confirmed = || async {
        store
            .list_device_inventories("", 10)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.id == "d1")
            .unwrap()
            .inventory_confirmed_at
    };
    assert_eq!(confirmed().await, None);
    store
        .record_agents_seen(&[heartbeat(3_000, &format!("{:064}", 9))])
        .await
        .unwrap();
    assert_eq!(
        confirmed().await,
        None,
        "another hash confirmed the inventory"
    );
    store
        .record_agents_seen(&[heartbeat(4_000, &inventory.content_hash)])
        .await
        .unwrap();
    assert_eq!(confirmed().await, Some(4_000));
    assert_eq!(
        store.get_device("d1").await.unwrap().unwrap().agent_version,
        "9.9",
        "a heartbeat keeps the Hello's version"
    );
}

async fn reports_are_stored_once_and_in_order(store: Arc<dyn Store>) {
    seed_devices(&store).await;
    let first = report(
        "d1",
        "r1",
        1_000,
        &[("firefox-esr", "115.0"), ("bash", "5.2")],
    );
    assert_eq!(
        store.ingest_report(&first).await.unwrap(),
        IngestOutcome::Stored
    );
    assert_eq!(
        store.ingest_report(&first).await.unwrap(),
        IngestOutcome::Duplicate
    );
    let newer = report("d1", "r2", 3_000, &[("firefox-esr", "140.1")]);
    assert_eq!(
        store.ingest_report(&newer).await.unwrap(),
        IngestOutcome::Stored
    );
    // A spooled report collected in between arrives late: kept in the
    // history, but it does not replace the current inventory.
    let late = report("d1", "r3", 2_000, &[("firefox-esr", "128.0")]);
    assert_eq!(
        store.ingest_report(&late).await.unwrap(),
        IngestOutcome::StoredOlder
    );

    let current = store.get_inventory("d1").await.unwrap().unwrap();
    assert_eq!(current.collected_at, 3_000);
    // What offers are compared with: the current inventory's time and hash.
    assert_eq!(
        store.inventory_version("d1").await.unwrap(),
        Some(InventoryVersion {
            collected_at: current.collected_at,
            content_hash: current.content_hash.clone(),
        })
    );
    assert_eq!(store.inventory_version("d2").await.unwrap(), None);
    assert_eq!(
        store.get_device("d1").await.unwrap().unwrap().hostname,
        "host-r2"
    );
    let reports: Vec<_> = store
        .list_inventory_reports("d1", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.report_id)
        .collect();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports.iter().filter(|r| *r == "r1").count(), 1);
    // Report ids are per device: another device may use the same id.
    assert_eq!(
        store
            .ingest_report(&report("d2", "r1", 1_000, &[]))
            .await
            .unwrap(),
        IngestOutcome::Stored
    );

    let changes = store.list_inventory_changes("d1", 10).await.unwrap();
    assert_eq!(
        changes.len(),
        2,
        "only stored-as-current reports add changes: {changes:?}"
    );
    assert_eq!(changes[0].report_id, "r2");

    let everything = TenantFilter::everything();
    let hits = store
        .search_software("FIREFOX", &everything, None, None, 100)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (hits[0].device_id.as_str(), hits[0].version.as_str()),
        ("d1", "140.1")
    );
    let kl_only = TenantFilter {
        counties: vec!["kl".into()],
        ..Default::default()
    };
    assert!(
        store
            .search_software("firefox", &kl_only, None, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn large_software_lists_and_hostile_text(store: Arc<dyn Store>) {
    seed_devices(&store).await;
    let names: Vec<String> = (0..3000).map(|i| format!("pkg-{i:04}")).collect();
    let mut big = report("d1", "big", 1_000, &[]);
    big.software = SoftwareList::from_rows(
        &names
            .iter()
            .map(|n| SoftwareRow {
                source: "dpkg".into(),
                name: n.clone(),
                architecture: "amd64".into(),
                version: "1".into(),
            })
            .collect::<Vec<_>>(),
    );
    // SQL in values is data, not code.
    big.summary.hostname = "x'); DROP TABLE devices; --".into();
    store.ingest_report(&big).await.unwrap();
    let hits = store
        .search_software("pkg-", &TenantFilter::everything(), None, None, 10_000)
        .await
        .unwrap();
    assert_eq!(hits.len(), 3000);
    assert_eq!(
        store.get_device("d1").await.unwrap().unwrap().hostname,
        "x'); DROP TABLE devices; --"
    );

    // Names that JSON escapes are found as they are; text that appears in
    // the list only as a version, architecture or source finds nothing.
    let hostile = [
        r#"say "hi""#,
        r"C:\Program Files\Tool",
        "tab\there",
        "Übersetzer",
    ];
    let mut odd = report("d2", "odd", 1_000, &[]);
    odd.software = SoftwareList::from_rows(
        &hostile
            .iter()
            .map(|n| SoftwareRow {
                source: "msi".into(),
                name: (*n).into(),
                architecture: "x64".into(),
                version: "7.7.7".into(),
            })
            .collect::<Vec<_>>(),
    );
    store.ingest_report(&odd).await.unwrap();
    let names = |needle: &'static str| {
        let store = store.clone();
        async move {
            store
                .search_software(needle, &TenantFilter::everything(), None, None, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|h| h.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names(r#"y "h"#).await, [r#"say "hi""#]);
    assert_eq!(
        names(r"program files\tool").await,
        [r"C:\Program Files\Tool"]
    );
    assert_eq!(names("b\th").await, ["tab\there"]);
    // Case beyond ASCII folds too, on both backends.
    assert_eq!(names("über").await, ["Übersetzer"]);
    assert!(names("7.7.7").await.is_empty());
    assert!(names("x64").await.is_empty());
}

async fn audit_log_appends(store: Arc<dyn Store>) {
    for i in 0..3 {
        store
            .append_audit(&AuditEvent {
                at: i,
                actor: "user:admin".into(),
                action: "county.create".into(),
                target: format!("c{i}"),
                county_id: None,
                outcome: "ok".into(),
                details: "Überhitzung".into(),
                school_id: None,
            })
            .await
            .unwrap();
    }
    let events = store.list_audit(2).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        ["c2", "c1"]
    );
    assert_eq!(events[0].details, "Überhitzung");
}

fn result(rule: &str, status: &str, counted: bool) -> ComplianceResultRecord {
    ComplianceResultRecord {
        rule_id: rule.into(),
        status: status.into(),
        counted,
        expected: "≥ 8 GiB".into(),
        actual: "4.0 GiB".into(),
        reason: "RAM 4.0 GiB < 8 GiB".into(),
        waiver_id: String::new(),
        waiver_expires_at: (status == "waived").then_some(5_000),
        evaluated_at: 1,
    }
}

async fn compliance_results_per_revision(store: Arc<dyn Store>) {
    seed_devices(&store).await;
    let v = |version: &str| StandardVersionRecord {
        revision: 0,
        standard_id: "schul-it-client".into(),
        version: version.into(),
        content: format!("# {version}"),
        rules: 2,
        waivers: 0,
        applied_by: "koordination".into(),
        applied_at: 1,
    };
    assert!(store.get_standard_version(None).await.unwrap().is_none());
    assert_eq!(store.latest_standard_revision().await.unwrap(), None);
    let first = store.insert_standard_version(&v("2025.1.0")).await.unwrap();
    let second = store.insert_standard_version(&v("2025.2.0")).await.unwrap();
    assert!(second.revision > first.revision);
    assert_eq!(
        store.latest_standard_revision().await.unwrap(),
        Some(second.revision)
    );
    assert_eq!(
        store
            .get_standard_version(None)
            .await
            .unwrap()
            .unwrap()
            .version,
        "2025.2.0"
    );
    assert_eq!(
        store
            .get_standard_version(Some(first.revision))
            .await
            .unwrap()
            .unwrap()
            .content,
        "# 2025.1.0"
    );
    assert_eq!(store.list_standard_versions().await.unwrap().len(), 2);

    // d1 fails a counted rule, d2 passes, d3 is waived; beobachten (not
    // counted) failures do not make a device non-compliant.
    let rows = vec![
        (
            "d1".to_string(),
            vec![
                result("HW-RAM-01", "fail", true),
                result("INFO-01", "fail", false),
            ],
        ),
        (
            "d2".to_string(),
            vec![
                result("HW-RAM-01", "pass", true),
                result("INFO-01", "fail", false),
            ],
        ),
        ("d3".to_string(), vec![result("HW-RAM-01", "waived", true)]),
    ];
    store
        .replace_compliance_results(second.revision, &rows)
        .await
        .unwrap();
    // The old revision keeps its own results.
    store
        .replace_compliance_results(
            first.revision,
            &[("d1".to_string(), vec![result("HW-RAM-01", "pass", true)])],
        )
        .await
        .unwrap();
    // Replacing is idempotent per device.
    store
        .replace_compliance_results(second.revision, &rows[..1])
        .await
        .unwrap();
    assert_eq!(
        store
            .list_compliance_results("d1", second.revision)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .list_compliance_results("d1", first.revision)
            .await
            .unwrap()[0]
            .status,
        "pass"
    );

    let everything = TenantFilter::everything();
    let schools = store
        .school_compliance(second.revision, &everything)
        .await
        .unwrap();
    let by_school = |id: &str| schools.iter().find(|s| s.school_id == id).cloned().unwrap();
    assert_eq!(
        (by_school("kus012").devices, by_school("kus012").compliant),
        (1, 0)
    );
    assert_eq!(
        (by_school("kus013").devices, by_school("kus013").compliant),
        (1, 1)
    );
    assert_eq!(
        (by_school("kl001").devices, by_school("kl001").compliant),
        (1, 1)
    );
    let kl = TenantFilter {
        counties: vec!["kl".into()],
        ..Default::default()
    };
    assert_eq!(
        store
            .school_compliance(second.revision, &kl)
            .await
            .unwrap()
            .len(),
        1
    );

    let counts = store
        .rule_status_counts(second.revision, &everything, Some("kus"), None)
        .await
        .unwrap();
    let count = |rule: &str, status: &str| {
        counts
            .iter()
            .find(|c| c.rule_id == rule && c.status == status)
            .map_or(0, |c| c.devices)
    };
    assert_eq!(
        (
            count("HW-RAM-01", "fail"),
            count("HW-RAM-01", "pass"),
            count("INFO-01", "fail")
        ),
        (1, 1, 2)
    );

    // The same counts per school in one query, the filter applied.
    let by_school = store
        .rule_status_counts_by_school(second.revision, &everything, Some("kus"))
        .await
        .unwrap();
    let in_school = |school: &str, rule: &str, status: &str| {
        by_school
            .iter()
            .filter(|c| c.school_id == school && c.rule_id == rule && c.status == status)
            .map(|c| c.devices)
            .sum::<i64>()
    };
    assert_eq!(
        in_school("kus012", "HW-RAM-01", "fail") + in_school("kus013", "HW-RAM-01", "fail"),
        count("HW-RAM-01", "fail")
    );
    assert_eq!(
        by_school.iter().map(|c| c.devices).sum::<i64>(),
        counts.iter().map(|c| c.devices).sum::<i64>()
    );
    assert!(by_school.iter().all(|c| c.county_id == "kus"));
    assert!(
        store
            .rule_status_counts_by_school(second.revision, &kl, Some("kus"))
            .await
            .unwrap()
            .is_empty()
    );

    let failing = store
        .failing_devices(second.revision, "HW-RAM-01", &everything, None, None)
        .await
        .unwrap();
    assert_eq!(failing.len(), 1);
    assert_eq!(
        (failing[0].device_id.as_str(), failing[0].actual.as_str()),
        ("d1", "4.0 GiB")
    );
    assert!(
        store
            .failing_devices(second.revision, "HW-RAM-01", &kl, None, None)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        store
            .devices_with_expired_waivers(second.revision, 4_999)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .devices_with_expired_waivers(second.revision, 5_000)
            .await
            .unwrap(),
        ["d3"]
    );

    store
        .upsert_compliance_snapshot("2026-11-21", second.revision, &schools)
        .await
        .unwrap();
    store
        .upsert_compliance_snapshot("2026-11-21", second.revision, &schools)
        .await
        .unwrap();
    assert_eq!(
        store.compliance_snapshot("2026-11-21").await.unwrap(),
        schools
    );
    // A range of days in one query, by day: the days around are outside.
    store
        .upsert_compliance_snapshot("2026-11-23", second.revision, &schools)
        .await
        .unwrap();
    store
        .upsert_compliance_snapshot("2026-12-01", second.revision, &schools)
        .await
        .unwrap();
    let range = store
        .compliance_snapshots_between("2026-11-21", "2026-11-30")
        .await
        .unwrap();
    assert_eq!(range.len(), 2 * schools.len());
    assert_eq!(range[0].day, "2026-11-21");
    assert_eq!(range.last().unwrap().day, "2026-11-23");
    assert_eq!(
        (range[0].school_id.as_str(), range[0].devices),
        (schools[0].school_id.as_str(), schools[0].devices)
    );

    let page = store.list_device_inventories("", 2).await.unwrap();
    assert_eq!(
        page.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["d1", "d2"]
    );
    let rest = store.list_device_inventories("d2", 2).await.unwrap();
    assert_eq!(
        rest.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["d3"]
    );
}

/// Counts every row written to `device_software` (insert, update, delete)
/// with a trigger, so a test sees writes and not just the end state.
async fn count_software_writes(raw: &common::RawDb) {
    count_row_writes(
        raw,
        "device_software",
        "sw_writes",
        &["INSERT", "UPDATE", "DELETE"],
    )
    .await;
}

/// Counts the rows that `events` write to `table` in table `counter`
/// (column `n`), with a trigger on either backend.
async fn count_row_writes(raw: &common::RawDb, table: &str, counter: &str, events: &[&str]) {
    raw.execute(&format!("CREATE TABLE {counter} (n BIGINT NOT NULL)"))
        .await;
    raw.execute(&format!("INSERT INTO {counter} (n) VALUES (0)"))
        .await;
    match raw {
        common::RawDb::Sqlite(_) => {
            for event in events {
                raw.execute(&format!(
                    "CREATE TRIGGER {counter}_{event} AFTER {event} ON {table} \
                     BEGIN UPDATE {counter} SET n = n + 1; END"
                ))
                .await;
            }
        }
        common::RawDb::Postgres(_) => {
            raw.execute(&format!(
                "CREATE FUNCTION {counter}_count() RETURNS trigger AS $$ \
                 BEGIN UPDATE {counter} SET n = n + 1; RETURN NULL; END $$ LANGUAGE plpgsql"
            ))
            .await;
            raw.execute(&format!(
                "CREATE TRIGGER {counter} AFTER {} ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION {counter}_count()",
                events.join(" OR ")
            ))
            .await;
        }
    }
}

/// Results stored with a report, as a difference: a report that changes no
/// result inserts and deletes no row (the old way deleted and re-inserted
/// every result, touching both indexes each time); a changed status is
/// updated in place and recorded as a compliance change.
async fn compliance_results_are_written_as_a_diff(store: Arc<dyn Store>, raw: common::RawDb) {
    seed_devices(&store).await;
    let revision = store
        .insert_standard_version(&StandardVersionRecord {
            revision: 0,
            standard_id: "schul-it-client".into(),
            version: "2026.1.0".into(),
            content: "# test".into(),
            rules: 3,
            waivers: 0,
            applied_by: "koordination".into(),
            applied_at: 1,
        })
        .await
        .unwrap()
        .revision;
    count_row_writes(
        &raw,
        "compliance_results",
        "cr_writes",
        &["INSERT", "DELETE"],
    )
    .await;
    let writes = || raw.scalar("SELECT n FROM cr_writes");
    let changes = || raw.scalar("SELECT COUNT(*) FROM compliance_changes");
    let result = |rule: &str, status: &str, at: Millis| ComplianceResultRecord {
        rule_id: rule.into(),
        status: status.into(),
        counted: true,
        expected: "ja".into(),
        actual: format!("{rule} {status}"),
        reason: String::new(),
        waiver_id: String::new(),
        waiver_expires_at: None,
        evaluated_at: at,
    };
    let ingest = |id: &'static str, at: Millis, results: Vec<ComplianceResultRecord>| {
        let store = store.clone();
        async move {
            let evaluated = EvaluatedResults { revision, results };
            store
                .ingest_evaluated_report(
                    &report("d1", id, at, &[("bash", "5.2")]),
                    Some(&evaluated),
                )
                .await
                .unwrap()
        }
    };
    let stored = || async { store.list_compliance_results("d1", revision).await.unwrap() };
    let first = vec![
        result("a", "pass", 1_000),
        result("b", "fail", 1_000),
        result("c", "pass", 1_000),
    ];
    assert_eq!(
        ingest("r1", 1_000, first.clone()).await,
        IngestOutcome::Stored
    );
    assert_eq!(stored().await, first);
    assert_eq!(writes().await, 3);

    // The same results at a later evaluation: no row inserted or deleted,
    // every row carries the new time.
    let again = vec![
        result("a", "pass", 2_000),
        result("b", "fail", 2_000),
        result("c", "pass", 2_000),
    ];
    ingest("r2", 2_000, again.clone()).await;
    assert_eq!(stored().await, again);
    assert_eq!(writes().await, 3, "unchanged results were rewritten");
    assert_eq!(changes().await, 0);

    // b passes now, c's rule is gone: b updated in place with its change
    // recorded, c deleted.
    let third = vec![result("a", "pass", 3_000), result("b", "pass", 3_000)];
    ingest("r3", 3_000, third.clone()).await;
    assert_eq!(stored().await, third);
    assert_eq!(writes().await, 4);
    assert_eq!(changes().await, 1);

    // An older spooled report stores no results.
    assert_eq!(
        ingest("r0", 500, vec![result("a", "fail", 500)]).await,
        IngestOutcome::StoredOlder
    );
    assert_eq!(stored().await, third);
}

async fn software_rows(store: &Arc<dyn Store>, device_id: &str) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = store
        .search_software("", &TenantFilter::everything(), None, None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|h| h.device_id == device_id)
        .map(|h| (h.name, h.version))
        .collect();
    rows.sort();
    rows
}

/// A device's programs are one row, written only when they changed: the
/// same programs in another order write nothing; any change rewrites the
/// row once, and the search reads back exactly the new list.
async fn software_is_rewritten_only_when_it_changed(store: Arc<dyn Store>, raw: common::RawDb) {
    seed_devices(&store).await;
    count_software_writes(&raw).await;
    let writes = || raw.scalar("SELECT n FROM sw_writes");
    let packages = [("bash", "5.2"), ("firefox-esr", "115.0"), ("vim", "9.0")];
    store
        .ingest_report(&report("d1", "r1", 1_000, &packages))
        .await
        .unwrap();
    assert_eq!(writes().await, 1);

    // The same programs again, listed in another order (every boot): the
    // row is not written.
    let reordered = [("vim", "9.0"), ("bash", "5.2"), ("firefox-esr", "115.0")];
    assert_eq!(
        store
            .ingest_report(&report("d1", "r2", 2_000, &reordered))
            .await
            .unwrap(),
        IngestOutcome::Stored
    );
    assert_eq!(writes().await, 1, "an unchanged package set was rewritten");

    // One updated, one removed, one added, one listed twice: one write,
    // and the search finds exactly the new list.
    let changed = [
        ("bash", "5.2"),
        ("firefox-esr", "140.1"),
        ("git", "2.39"),
        ("git", "2.39"),
    ];
    store
        .ingest_report(&report("d1", "r3", 3_000, &changed))
        .await
        .unwrap();
    assert_eq!(writes().await, 2);
    let want: Vec<(String, String)> = [("bash", "5.2"), ("firefox-esr", "140.1"), ("git", "2.39")]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(software_rows(&store, "d1").await, want);

    // An older spooled report changes nothing; another device's list is
    // its own.
    assert_eq!(
        store
            .ingest_report(&report("d1", "r0", 500, &[("old", "1")]))
            .await
            .unwrap(),
        IngestOutcome::StoredOlder
    );
    store
        .ingest_report(&report("d2", "r1", 1_000, &[("bash", "5.2")]))
        .await
        .unwrap();
    assert_eq!(writes().await, 3);
    assert_eq!(software_rows(&store, "d1").await, want);

    // Every version moved.
    let moved = [("bash", "5.3"), ("firefox-esr", "140.2"), ("git", "2.40")];
    store
        .ingest_report(&report("d1", "r3b", 3_500, &moved))
        .await
        .unwrap();
    assert_eq!(writes().await, 4);
    let want_moved: Vec<(String, String)> = moved
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(software_rows(&store, "d1").await, want_moved);

    // Everything removed.
    store
        .ingest_report(&report("d1", "r4", 4_000, &[]))
        .await
        .unwrap();
    assert_eq!(writes().await, 5);
    assert!(software_rows(&store, "d1").await.is_empty());
    assert_eq!(software_rows(&store, "d2").await.len(), 1);
}

/// A report with the current inventory's content hash writes the report
/// row and the new collection time only: no software row, no blob; one
/// whose hash no longer matches, or that is older, writes nothing and is
/// left to the full path.
async fn an_unchanged_report_writes_no_inventory(store: Arc<dyn Store>, raw: common::RawDb) {
    seed_devices(&store).await;
    let packages = [("bash", "5.2"), ("vim", "9.0")];
    let first = report("d1", "r1", 1_000, &packages);
    store.ingest_report(&first).await.unwrap();
    count_software_writes(&raw).await;
    count_row_writes(
        &raw,
        "device_inventories",
        "blob_writes",
        &["INSERT", "UPDATE", "DELETE"],
    )
    .await;
    let unchanged = |report_id: &str, collected_at: Millis, content_hash: &str| UnchangedReport {
        device_id: "d1".into(),
        report_id: report_id.into(),
        collected_at,
        received_at: now_millis(),
        content_hash: content_hash.into(),
        reason: "boot".into(),
    };

    let reboot = unchanged("r2", 2_000, &first.content_hash);
    assert_eq!(
        store.ingest_unchanged_report(&reboot, None).await.unwrap(),
        Some(IngestOutcome::Stored)
    );
    let stored = store.get_inventory("d1").await.unwrap().unwrap();
    assert_eq!(
        stored.collected_at, 2_000,
        "the inventory's time moves forward"
    );
    assert_eq!(stored.inventory, first.inventory, "the blob is kept");
    assert_eq!(raw.scalar("SELECT n FROM sw_writes").await, 0);
    // The blob lives apart from the devices row: neither this report nor a
    // heartbeat (which updates the devices row) writes it again.
    store
        .record_agents_seen(&[
            AgentSeen::new("d1", 2_100, &stream("stream-1", "replica-a"), None)
                .confirming(first.content_hash.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(raw.scalar("SELECT n FROM blob_writes").await, 0);
    let reports = store.list_inventory_reports("d1", 10).await.unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports.iter().filter(|r| r.report_id == "r2").count(), 1);

    // The same report again is a duplicate and moves nothing.
    let again = unchanged("r2", 2_500, &first.content_hash);
    assert_eq!(
        store.ingest_unchanged_report(&again, None).await.unwrap(),
        Some(IngestOutcome::Duplicate)
    );
    assert_eq!(
        store
            .get_inventory("d1")
            .await
            .unwrap()
            .unwrap()
            .collected_at,
        2_000
    );

    // Another hash, or an older time: nothing written, the caller decides.
    for other in [
        unchanged("r3", 3_000, &format!("{:064}", 7)),
        unchanged("r4", 1_500, &first.content_hash),
    ] {
        assert_eq!(
            store.ingest_unchanged_report(&other, None).await.unwrap(),
            None
        );
    }
    assert_eq!(
        store.list_inventory_reports("d1", 10).await.unwrap().len(),
        2
    );
    assert_eq!(
        store
            .get_inventory("d1")
            .await
            .unwrap()
            .unwrap()
            .collected_at,
        2_000
    );

    // Results judged at the new time are stored with it.
    let revision = store
        .insert_standard_version(&StandardVersionRecord {
            revision: 0,
            standard_id: "schul-it-client".into(),
            version: "2026.1.0".into(),
            content: "# test".into(),
            rules: 1,
            waivers: 0,
            applied_by: "koordination".into(),
            applied_at: 1,
        })
        .await
        .unwrap()
        .revision;
    let results = EvaluatedResults {
        revision,
        results: vec![ComplianceResultRecord {
            rule_id: "inventory-age".into(),
            status: "pass".into(),
            counted: true,
            expected: "30".into(),
            actual: "inventory 0 days old".into(),
            reason: String::new(),
            waiver_id: String::new(),
            waiver_expires_at: None,
            evaluated_at: 5_000,
        }],
    };
    assert_eq!(
        store
            .ingest_unchanged_report(&unchanged("r5", 5_000, &first.content_hash), Some(&results))
            .await
            .unwrap(),
        Some(IngestOutcome::Stored)
    );
    let stored_results = store.list_compliance_results("d1", revision).await.unwrap();
    assert_eq!(stored_results, results.results);
    assert_eq!(raw.scalar("SELECT n FROM sw_writes").await, 0);
}

/// A web login's code uses its time step once, like a session start's, but
/// leaves the session starts' grace window open.
async fn a_login_step_keeps_the_session_grace_window(store: Arc<dyn Store>) {
    seed_tenants(&store).await;
    store
        .create_user(&User {
            id: "u1".into(),
            name: "anna".into(),
            county_id: Some("kus".into()),
            created_at: 5,
            bindings: vec![RoleBindingRecord::new("technician", "county:kus")],
        })
        .await
        .unwrap();
    store
        .put_user_mfa(&UserMfaRecord {
            user_id: "u1".into(),
            method: "totp".into(),
            secret: vec![1, 2, 3],
            confirmed: false,
            last_step: 0,
            grace_until: 0,
            grace_kind: String::new(),
            grace_reason: String::new(),
            created_at: 1,
        })
        .await
        .unwrap();
    // Not confirmed: no step is used.
    assert!(!store.use_mfa_login_step("u1", 5).await.unwrap());
    assert!(store.confirm_user_mfa("u1", 10).await.unwrap());
    assert!(
        store
            .use_mfa_step("u1", 11, 9_000, "shell", "digest")
            .await
            .unwrap()
    );
    // A later step at a login: used, the grace window unchanged.
    assert!(store.use_mfa_login_step("u1", 12).await.unwrap());
    let record = store.get_user_mfa("u1").await.unwrap().unwrap();
    assert_eq!(record.last_step, 12);
    assert_eq!(
        (
            record.grace_until,
            record.grace_kind.as_str(),
            record.grace_reason.as_str()
        ),
        (9_000, "shell", "digest")
    );
    // The same or an earlier step again: refused, by either kind of use.
    assert!(!store.use_mfa_login_step("u1", 12).await.unwrap());
    assert!(!store.use_mfa_step("u1", 12, 1, "exec", "x").await.unwrap());
    assert!(!store.use_mfa_login_step("nobody", 99).await.unwrap());
}

/// The quarterly report's figures as SQL aggregates: failure reasons of
/// every rule in one query, tickets per county and category over a period
/// (opened, resolved, open at its end) with the resolved rows' durations,
/// sessions per county with their minutes, devices by id in one query;
/// each only within the tenant filter.
async fn quarterly_aggregates_count_in_sql(store: Arc<dyn Store>) {
    seed_devices(&store).await;
    let kus = TenantFilter {
        counties: vec!["kus".into()],
        ..Default::default()
    };
    let everyone = TenantFilter {
        all: true,
        ..Default::default()
    };

    // Devices by id: the order asked for, unknown ids absent.
    let ids: Vec<String> = ["d3", "nope", "d1"].iter().map(|s| s.to_string()).collect();
    let found: Vec<String> = store
        .get_devices(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(found, ["d3", "d1"]);
    assert!(store.get_devices(&[]).await.unwrap().is_empty());

    // Failure reasons, grouped by rule and reason text.
    let revision = store
        .insert_standard_version(&StandardVersionRecord {
            revision: 0,
            standard_id: "schul-it-client".into(),
            version: "2026.1.0".into(),
            content: "# x".into(),
            rules: 2,
            waivers: 0,
            applied_by: "koordination".into(),
            applied_at: 1,
        })
        .await
        .unwrap()
        .revision;
    let failing = |rule: &str, reason: &str| ComplianceResultRecord {
        reason: reason.into(),
        ..result(rule, "fail", true)
    };
    store
        .replace_compliance_results(
            revision,
            &[
                (
                    "d1".to_string(),
                    vec![failing("HW-RAM-01", "ram"), failing("HW-DISK-01", "hdd")],
                ),
                (
                    "d2".to_string(),
                    vec![
                        failing("HW-RAM-01", "ram"),
                        result("HW-DISK-01", "pass", true),
                    ],
                ),
                ("d3".to_string(), vec![failing("HW-RAM-01", "ram")]),
            ],
        )
        .await
        .unwrap();
    let reasons: Vec<(String, String, i64)> = store
        .failure_reason_counts(revision, &kus, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.rule_id, r.reason, r.devices))
        .collect();
    assert_eq!(
        reasons,
        [
            ("HW-DISK-01".into(), "hdd".into(), 1),
            ("HW-RAM-01".into(), "ram".into(), 2)
        ]
    );
    let all = store
        .failure_reason_counts(revision, &everyone, None)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|r| r.devices).sum::<i64>(), 4);
    assert!(
        store
            .failure_reason_counts(revision, &TenantFilter::default(), None)
            .await
            .unwrap()
            .is_empty(),
        "an empty filter reads nothing"
    );

    // Tickets over the period [1000, 2000).
    let (start, end) = (1_000, 2_000);
    let ticket = |county: &str, category: &str, created: Millis, closed: Option<Millis>| {
        let store = store.clone();
        let (county, category) = (county.to_owned(), category.to_owned());
        async move {
            store
                .create_ticket(&NewTicket {
                    ticket: TicketRecord {
                        id: uuid::Uuid::new_v4().to_string(),
                        number: 0,
                        title: "t".into(),
                        description: String::new(),
                        status: if closed.is_some() { "resolved" } else { "new" }.into(),
                        priority: "normal".into(),
                        category,
                        county_id: county,
                        school_id: None,
                        assignee_id: None,
                        reporter: "user:anna".into(),
                        created_at: created,
                        updated_at: created,
                        closed_at: closed,
                    },
                    device_ids: Vec::new(),
                    created_note: String::new(),
                    announce: None,
                })
                .await
                .unwrap();
        }
    };
    ticket("kus", "hardware", 500, None).await; // backlog, from before
    ticket("kus", "hardware", 500, Some(1_500)).await; // resolved in it
    ticket("kus", "hardware", 1_200, Some(1_400)).await; // opened + resolved
    ticket("kus", "hardware", 1_300, Some(2_500)).await; // opened, open at end
    ticket("kus", "hardware", 100, Some(900)).await; // all before: no count
    ticket("kus", "software", 1_100, None).await; // opened, backlog
    ticket("kus", "software", 2_100, None).await; // after: not counted
    ticket("kl", "hardware", 1_100, None).await; // another county
    let counts: Vec<(String, String, i64, i64, i64)> = store
        .ticket_period_counts(&kus, None, start, end)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.county_id, c.category, c.opened, c.resolved, c.backlog))
        .collect();
    assert_eq!(
        counts,
        [
            ("kus".into(), "hardware".into(), 2, 2, 2),
            ("kus".into(), "software".into(), 1, 0, 1)
        ]
    );
    let everywhere = store
        .ticket_period_counts(&everyone, None, start, end)
        .await
        .unwrap();
    assert_eq!(everywhere.len(), 3);
    let only_kl = store
        .ticket_period_counts(&everyone, Some("kl"), start, end)
        .await
        .unwrap();
    assert_eq!(only_kl.len(), 1);
    assert_eq!(only_kl[0].county_id, "kl");
    let mut times: Vec<(String, i64)> = store
        .ticket_resolutions(&kus, None, start, end)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.category, r.millis))
        .collect();
    times.sort();
    assert_eq!(
        times,
        [("hardware".into(), 200), ("hardware".into(), 1_000)],
        "only the rows resolved in the period"
    );
    assert!(
        store
            .ticket_period_counts(&TenantFilter::default(), None, start, end)
            .await
            .unwrap()
            .is_empty()
    );

    // Sessions started in the period, per county, with whole minutes.
    let session =
        |id: &str, device: &str, county: &str, school: &str, at: Millis, end: Option<Millis>| {
            SessionRecord {
                id: id.into(),
                kind: "shell".into(),
                state: if end.is_some() {
                    SESSION_ENDED
                } else {
                    SESSION_ACTIVE
                }
                .into(),
                device_id: device.into(),
                county_id: county.into(),
                school_id: school.into(),
                user_id: "u1".into(),
                actor: "user:anna".into(),
                reason: "Drucker".into(),
                ticket: String::new(),
                summary: "shell".into(),
                spec: r#"{"shell":{}}"#.into(),
                consent: "none".into(),
                started_at: at,
                ended_at: end,
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
        };
    let minute = 60_000;
    let (s0, s1) = (10 * minute, 20 * minute);
    for record in [
        session(
            "s1",
            "d1",
            "kus",
            "kus012",
            s0,
            Some(s0 + 3 * minute + 59_000),
        ),
        session(
            "s2",
            "d2",
            "kus",
            "kus013",
            s0 + minute,
            Some(s0 + 5 * minute),
        ),
        session("s3", "d1", "kus", "kus012", s0 + 2 * minute, None),
        session("s4", "d1", "kus", "kus012", s1, Some(s1 + minute)),
        session("s5", "d3", "kl", "kl001", s0, Some(s0 + 10 * minute)),
    ] {
        store.insert_session(&record).await.unwrap();
    }
    let per_county: Vec<(String, i64, i64)> = store
        .session_period_counts(&everyone, None, s0, s1)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.county_id, c.sessions, c.minutes))
        .collect();
    assert_eq!(per_county, [("kl".into(), 1, 10), ("kus".into(), 3, 3 + 4)]);
    let kus_only = store
        .session_period_counts(&kus, None, s0, s1)
        .await
        .unwrap();
    assert_eq!(kus_only.len(), 1);
    let one_school = TenantFilter {
        schools: vec!["kus013".into()],
        ..Default::default()
    };
    let school_only = store
        .session_period_counts(&one_school, None, s0, s1)
        .await
        .unwrap();
    assert_eq!((school_only[0].sessions, school_only[0].minutes), (1, 4));
}

mod diff {
    use super::software_is_rewritten_only_when_it_changed;
    crate::on_both_backends_raw!(software_is_rewritten_only_when_it_changed);
}

mod unchanged {
    use super::an_unchanged_report_writes_no_inventory;
    crate::on_both_backends_raw!(an_unchanged_report_writes_no_inventory);
}

mod results_diff {
    use super::compliance_results_are_written_as_a_diff;
    crate::on_both_backends_raw!(compliance_results_are_written_as_a_diff);
}

on_both_backends!(
    tenants_roundtrip_and_conflicts,
    users_and_api_tokens,
    user_id_wins_over_a_name_that_looks_like_it,
    enrolment_uses_tokens_atomically,
    reenrolment_replaces_certificate_without_duplicate,
    device_lists_respect_tenants_and_filters,
    reports_are_stored_once_and_in_order,
    large_software_lists_and_hostile_text,
    audit_log_appends,
    compliance_results_per_revision,
    only_the_current_stream_disconnects_a_device,
    agents_seen_in_one_group,
    a_login_step_keeps_the_session_grace_window,
    quarterly_aggregates_count_in_sql,
);
