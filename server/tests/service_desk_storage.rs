//! Conformance suite for the service desk (tickets, timeline, knowledge
//! base, full-text search, webhook outbox) on every storage backend.

mod common;

use std::sync::Arc;

use schoolfleet_server::storage::*;

async fn seed(store: &Arc<dyn Store>) {
    for c in ["kus", "kl"] {
        store
            .create_county(&County {
                id: c.into(),
                name: c.into(),
                created_at: 1,
            })
            .await
            .unwrap();
    }
    for (s, c) in [("kus012", "kus"), ("kl001", "kl")] {
        store
            .create_school(&School {
                id: s.into(),
                county_id: c.into(),
                name: s.into(),
                created_at: 1,
            })
            .await
            .unwrap();
        store
            .create_enrollment_token(&EnrollmentToken {
                id: format!("t-{s}"),
                secret_hash: "h".repeat(64),
                county_id: c.into(),
                school_id: s.into(),
                device_class: "schueler-pc".into(),
                description: String::new(),
                max_uses: 10,
                uses: 0,
                expires_at: now_millis() + 3_600_000,
                created_by: "admin".into(),
                created_at: now_millis(),
                revoked_at: None,
                reinstall_device_id: None,
            })
            .await
            .unwrap();
        let id = format!("dev-{s}");
        store
            .enroll_device(&Enrolment {
                token_id: format!("t-{s}"),
                now: now_millis(),
                existing: false,
                device: DeviceRecord {
                    system_uuid: format!("uuid-{id}"),
                    serial_number: format!("serial-{id}"),
                    ..common::device_record(&id, c, s, &format!("{s}-sp0101"))
                },
            })
            .await
            .unwrap();
    }
}

fn ticket(
    title: &str,
    description: &str,
    county: &str,
    school: Option<&str>,
    at: Millis,
) -> TicketRecord {
    TicketRecord {
        id: uuid::Uuid::new_v4().to_string(),
        number: 0,
        title: title.into(),
        description: description.into(),
        status: "new".into(),
        priority: "normal".into(),
        category: "hardware".into(),
        county_id: county.into(),
        school_id: school.map(str::to_owned),
        assignee_id: None,
        reporter: "user:anna".into(),
        created_at: at,
        updated_at: at,
        closed_at: None,
    }
}

async fn create(store: &Arc<dyn Store>, t: TicketRecord, devices: &[&str]) -> TicketRecord {
    store
        .create_ticket(&NewTicket {
            ticket: t,
            device_ids: devices.iter().map(|d| d.to_string()).collect(),
            created_note: String::new(),
            announce: None,
        })
        .await
        .unwrap()
}

fn change_report(device: &str, report: &str, at: Millis, package: &str) -> IngestReport {
    IngestReport {
        device_id: device.into(),
        report_id: report.into(),
        collected_at: at,
        received_at: at,
        content_hash: format!("{at:064}"),
        reason: "test".into(),
        inventory: vec![1],
        summary: DeviceSummary::default(),
        software: Default::default(),
        changes: vec![InventoryChangeRecord {
            report_id: report.into(),
            at,
            kind: "software_installed".into(),
            subject: package.into(),
            old_value: String::new(),
            new_value: "1.0".into(),
        }],
    }
}

fn comment(ticket_id: &str, at: Millis, body: &str) -> TicketChange {
    TicketChange {
        ticket_id: ticket_id.into(),
        at,
        actor: "user:anna".into(),
        kind: "comment".into(),
        body: body.into(),
        ..Default::default()
    }
}

// --- the suite ---

async fn ticket_numbers_are_a_sequence(store: Arc<dyn Store>) {
    seed(&store).await;
    let a = create(&store, ticket("a", "", "kus", None, 10), &[]).await;
    let b = create(&store, ticket("b", "", "kl", None, 11), &[]).await;
    assert_eq!(a.number, 1001);
    assert_eq!(b.number, 1002);
    assert_eq!(a.key(), "SUP-1001");
    assert_eq!(parse_ticket_key("sup-1002"), Some(1002));
    assert_eq!(store.get_ticket(1002).await.unwrap().unwrap(), b);
    assert_eq!(store.get_ticket(999).await.unwrap(), None);
}

async fn concurrent_ticket_numbers_never_collide(store: Arc<dyn Store>) {
    seed(&store).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            create(&store, ticket(&format!("t{i}"), "", "kus", None, i), &[])
                .await
                .number
        }));
    }
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (1001..=1008).collect::<Vec<_>>());
}

async fn timeline_joins_inventory_changes_in_order(store: Arc<dyn Store>) {
    seed(&store).await;
    // A change before the ticket existed does not belong to it.
    store
        .ingest_report(&change_report("dev-kus012", "r0", 50, "before-ticket"))
        .await
        .unwrap();
    let t = create(
        &store,
        ticket("Beamer", "kein Bild", "kus", Some("kus012"), 100),
        &["dev-kus012"],
    )
    .await;
    store
        .apply_ticket_change(&comment(&t.id, 200, "erste Notiz"))
        .await
        .unwrap();
    store
        .ingest_report(&change_report("dev-kus012", "r1", 300, "firefox-esr"))
        .await
        .unwrap();
    // Another device's change is not in this ticket's timeline.
    store
        .ingest_report(&change_report("dev-kl001", "r2", 350, "other-device"))
        .await
        .unwrap();
    store
        .apply_ticket_change(&comment(&t.id, 400, "zweite Notiz"))
        .await
        .unwrap();
    store
        .apply_ticket_change(&TicketChange {
            ticket_id: t.id.clone(),
            at: 500,
            actor: "user:anna".into(),
            kind: "status".into(),
            old_value: "new".into(),
            new_value: "resolved".into(),
            set_status: Some("resolved".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // After resolving, changes are outside the window.
    store
        .ingest_report(&change_report("dev-kus012", "r3", 600, "after-resolve"))
        .await
        .unwrap();

    let timeline = store.ticket_timeline(&t.id).await.unwrap();
    let summary: Vec<String> = timeline
        .iter()
        .map(|e| match e {
            TimelineEntry::Event(e) => format!("{}:{}{}", e.kind, e.body, e.new_value),
            TimelineEntry::Inventory { device_id, change } => {
                format!("inventory:{device_id}:{}", change.subject)
            }
            TimelineEntry::Compliance(c) => {
                format!(
                    "compliance:{}:{}:{}->{}",
                    c.device_id, c.rule_id, c.old_status, c.new_status
                )
            }
            TimelineEntry::Session(s) => format!("session:{}", s.id),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "created:new",
            "comment:erste Notiz",
            "inventory:dev-kus012:firefox-esr",
            "comment:zweite Notiz",
            "status:resolved",
        ]
    );
    let resolved = store.get_ticket(t.number).await.unwrap().unwrap();
    assert_eq!(resolved.status, "resolved");
    assert_eq!(resolved.closed_at, Some(500));
    assert!(
        store
            .open_tickets_for_device("dev-kus012")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn ticket_lists_respect_tenants_and_filters(store: Arc<dyn Store>) {
    seed(&store).await;
    let kus = create(
        &store,
        ticket("kus", "", "kus", Some("kus012"), 1),
        &["dev-kus012"],
    )
    .await;
    let kl = create(
        &store,
        ticket("kl", "", "kl", Some("kl001"), 2),
        &["dev-kl001"],
    )
    .await;
    let list = |q: TicketQuery| {
        let store = store.clone();
        async move {
            store
                .list_tickets(&TicketQuery { limit: 100, ..q })
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.number)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(TicketQuery::default()).await,
        Vec::<i64>::new(),
        "empty filter matches nothing"
    );
    assert_eq!(
        list(TicketQuery {
            filter: TenantFilter::everything(),
            ..Default::default()
        })
        .await,
        [kl.number, kus.number]
    );
    let kus_only = TenantFilter {
        counties: vec!["kus".into()],
        ..Default::default()
    };
    assert_eq!(
        list(TicketQuery {
            filter: kus_only,
            ..Default::default()
        })
        .await,
        [kus.number]
    );
    let school_only = TenantFilter {
        schools: vec!["kl001".into()],
        ..Default::default()
    };
    assert_eq!(
        list(TicketQuery {
            filter: school_only,
            ..Default::default()
        })
        .await,
        [kl.number]
    );
    assert_eq!(
        list(TicketQuery {
            filter: TenantFilter::everything(),
            device_id: Some("dev-kl001".into()),
            ..Default::default()
        })
        .await,
        [kl.number]
    );
    assert_eq!(
        list(TicketQuery {
            filter: TenantFilter::everything(),
            statuses: vec!["closed".into()],
            ..Default::default()
        })
        .await,
        Vec::<i64>::new()
    );
    // Linking a second device; linking it twice is a conflict.
    let link = TicketChange {
        ticket_id: kus.id.clone(),
        at: 5,
        actor: "user:anna".into(),
        kind: "device".into(),
        new_value: "dev-kl001".into(),
        link_device: Some("dev-kl001".into()),
        ..Default::default()
    };
    store.apply_ticket_change(&link).await.unwrap();
    assert!(matches!(
        store.apply_ticket_change(&link).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(
        store.ticket_devices(&kus.id).await.unwrap(),
        ["dev-kus012", "dev-kl001"]
    );
    // The queue reads all tickets' devices in one query, with the same
    // order per ticket; a ticket without devices is absent.
    let mut ids = Vec::new();
    for t in store
        .list_tickets(&TicketQuery {
            filter: TenantFilter::everything(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
    {
        ids.push(t.id);
    }
    ids.push("no-such-ticket".into());
    let many = store.devices_of_tickets(&ids).await.unwrap();
    for id in &ids {
        let one = store.ticket_devices(id).await.unwrap();
        assert_eq!(
            many.get(id).cloned().unwrap_or_default(),
            one,
            "ticket {id}"
        );
    }
    assert_eq!(many[&kus.id], ["dev-kus012", "dev-kl001"]);
    assert_eq!(many[&kl.id], ["dev-kl001"]);
    assert!(store.devices_of_tickets(&[]).await.unwrap().is_empty());
    assert_eq!(
        store
            .open_tickets_for_device("dev-kl001")
            .await
            .unwrap()
            .len(),
        2
    );
}

fn article(id: &str, title: &str, body: &str, at: Millis) -> (KbArticle, KbVersion) {
    (
        KbArticle {
            id: id.into(),
            title: title.into(),
            body: body.into(),
            tags: "beamer,hardware".into(),
            category: "howto".into(),
            county_id: "don".into(),
            visibility: "team".into(),
            version: 1,
            published_at: None,
            created_at: at,
            updated_at: at,
        },
        KbVersion {
            article_id: id.into(),
            version: 1,
            title: title.into(),
            body: body.into(),
            author: "user:anna".into(),
            at,
        },
    )
}

async fn kb_articles_keep_versions(store: Arc<dyn Store>) {
    seed(&store).await;
    store
        .create_county(&County {
            id: "don".into(),
            name: "Donnersbergkreis".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    let (a, v1) = article("a1", "WLAN", "Zeile 1\n", 10);
    store.create_article(&a, &v1, None).await.unwrap();
    let mut a2 = a.clone();
    a2.version = 2;
    a2.body = "Zeile 1\nZeile 2\n".into();
    a2.updated_at = 20;
    a2.published_at = Some(20);
    let v2 = KbVersion {
        version: 2,
        body: a2.body.clone(),
        at: 20,
        ..v1.clone()
    };
    let event = OutboxEvent::new("kb.article_published", "{}".into(), 20);
    store.update_article(&a2, &v2, Some(&event)).await.unwrap();
    // Saving version 2 again (a lost update) is a conflict.
    assert!(matches!(
        store.update_article(&a2, &v2, None).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(store.get_article("a1").await.unwrap().unwrap(), a2);
    let versions = store.list_article_versions("a1").await.unwrap();
    assert_eq!(versions, [v1, v2]);
    assert_eq!(store.list_articles_changed(15, 10).await.unwrap().len(), 1);
    assert!(
        store
            .list_articles_changed(21, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.due_outbox(20, 10).await.unwrap().len(), 1);
}

async fn full_text_search_finds_german_words(store: Arc<dyn Store>) {
    seed(&store).await;
    store
        .create_county(&County {
            id: "don".into(),
            name: "Donnersbergkreis".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    let printer = create(
        &store,
        ticket(
            "Drucker im Lehrerzimmer druckt nicht",
            "Papierstau gemeldet",
            "kus",
            Some("kus012"),
            1,
        ),
        &[],
    )
    .await;
    let pupils = create(
        &store,
        ticket(
            "Raum 12",
            "Alle Schülerrechner starten neu",
            "kl",
            Some("kl001"),
            2,
        ),
        &[],
    )
    .await;
    let (a, v) = article("a1", "Beamer: Überhitzung vermeiden", "Lüfter reinigen.", 3);
    store.create_article(&a, &v, None).await.unwrap();

    let search = |text: &str, filter: TenantFilter, articles: bool| {
        let store = store.clone();
        let text = text.to_owned();
        async move {
            store
                .search(&SearchQuery {
                    text,
                    ticket_filter: filter,
                    include_articles: articles,
                    limit: 50,
                })
                .await
                .unwrap()
                .into_iter()
                .map(|h| (h.kind, h.ref_id))
                .collect::<Vec<_>>()
        }
    };
    let all = TenantFilter::everything;
    assert_eq!(
        search("Drucker", all(), true).await,
        [("ticket".into(), printer.id.clone())]
    );
    assert_eq!(
        search("drucker", all(), true).await,
        [("ticket".into(), printer.id.clone())]
    );
    assert_eq!(
        search("Schülerrechner", all(), true).await,
        [("ticket".into(), pupils.id.clone())]
    );
    // Comments are searched as part of their ticket (one hit per ticket).
    let note = |body: &str| TicketChange {
        ticket_id: printer.id.clone(),
        at: 5,
        actor: "user:anna".into(),
        kind: "comment".into(),
        body: body.into(),
        ..Default::default()
    };
    store
        .apply_ticket_change(&note("Tonerkartusche getauscht"))
        .await
        .unwrap();
    store
        .apply_ticket_change(&note("Drucker läuft, Toner voll"))
        .await
        .unwrap();
    assert_eq!(
        search("Tonerkartusche", all(), false).await,
        [("ticket".into(), printer.id.clone())]
    );
    assert_eq!(
        search("Toner", all(), false).await,
        [("ticket".into(), printer.id.clone())]
    );
    // A prefix of a compound word is found too.
    assert_eq!(
        search("Schüler", all(), true).await,
        [("ticket".into(), pupils.id.clone())]
    );
    assert_eq!(
        search("Überhitzung", all(), true).await,
        [("article".into(), "a1".to_string())]
    );
    assert_eq!(
        search("Überhitzung", all(), false).await,
        Vec::<(String, String)>::new()
    );
    // Tickets of other tenants are not found.
    let kl_only = TenantFilter {
        counties: vec!["kl".into()],
        ..Default::default()
    };
    assert!(search("Drucker", kl_only.clone(), false).await.is_empty());
    assert!(
        search("Drucker", TenantFilter::default(), false)
            .await
            .is_empty()
    );
    // Query syntax is text, not syntax.
    assert!(
        search("\" OR * NEAR( ) : & | !", all(), true)
            .await
            .is_empty()
    );
    assert!(search("Drucker\" OR \"x", kl_only, false).await.is_empty());
    // An edited article is found under its new words only.
    let mut edited = a.clone();
    edited.version = 2;
    edited.title = "Beamer: Lüfter".into();
    edited.body = "Staub entfernen.".into();
    let v2 = KbVersion {
        version: 2,
        title: edited.title.clone(),
        body: edited.body.clone(),
        ..v
    };
    store.update_article(&edited, &v2, None).await.unwrap();
    assert!(search("Überhitzung", all(), true).await.is_empty());
    assert_eq!(
        search("Staub", all(), true).await,
        [("article".into(), "a1".to_string())]
    );
}

async fn outbox_delivers_and_retries(store: Arc<dyn Store>) {
    let a = OutboxEvent::new("ticket.created", "{\"a\":1}".into(), 100);
    let b = OutboxEvent::new("ticket.assigned", "{\"b\":2}".into(), 101);
    store.enqueue_outbox(&a).await.unwrap();
    store.enqueue_outbox(&b).await.unwrap();
    let due = store.due_outbox(200, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>(),
        [a.event_id.clone(), b.event_id.clone()]
    );
    store
        .mark_outbox_failed(due[0].id, 1000, "connection refused")
        .await
        .unwrap();
    store.mark_outbox_delivered(due[1].id, 201).await.unwrap();
    assert!(store.due_outbox(999, 10).await.unwrap().is_empty());
    let retry = store.due_outbox(1000, 10).await.unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].attempts, 1);
    assert_eq!(retry[0].last_error, "connection refused");
    assert_eq!(retry[0].payload, "{\"a\":1}");
}

on_both_backends!(
    ticket_numbers_are_a_sequence,
    concurrent_ticket_numbers_never_collide,
    timeline_joins_inventory_changes_in_order,
    ticket_lists_respect_tenants_and_filters,
    kb_articles_keep_versions,
    full_text_search_finds_german_words,
    outbox_delivers_and_retries,
);
