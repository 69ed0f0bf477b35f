//! Tenant isolation for every ticket call, as a matrix: every role scoped
//! to Kusel × a Kaiserslautern ticket (and device) is refused with
//! NOT_FOUND or PERMISSION_DENIED, or gets an answer without the object.
//! A cooperation-wide technician is the positive control. Also: who may
//! be assigned, and that viewers read but do not work.

mod common;

use common::server::{Clients, InProcessServer};
use schoolfleet_proto::v1::*;
use schoolfleet_server::storage::{self, Enrolment, now_millis};
use tonic::Code;

const FOREIGN_DEVICE: &str = "0190aaaa-0000-7000-8000-00000000cafe";
const OWN_DEVICE: &str = "0190aaaa-0000-7000-8000-00000000beef";

struct Fixture {
    server: InProcessServer,
    /// Key of the Kaiserslautern ticket.
    foreign_ticket: String,
    /// Key of a Kusel ticket.
    own_ticket: String,
}

fn device(id: &str, county: &str, school: &str) -> storage::DeviceRecord {
    storage::DeviceRecord {
        system_uuid: format!("u-{id}"),
        serial_number: "s".into(),
        cert_fingerprint: Some(format!("f-{id}")),
        ..common::device_record(id, county, school, &format!("{school}-sp0101"))
    }
}

async fn fixture() -> Fixture {
    let server = InProcessServer::start().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    for (id, name) in [
        ("don", "Donnersbergkreis"),
        ("kus", "Landkreis Kusel"),
        ("kl", "Landkreis Kaiserslautern"),
    ] {
        admin
            .tenants
            .create_county(CreateCountyRequest {
                id: id.into(),
                name: name.into(),
            })
            .await
            .unwrap();
    }
    for (id, county, device_id) in [
        ("kus012", "kus", OWN_DEVICE),
        ("kl001", "kl", FOREIGN_DEVICE),
    ] {
        admin
            .tenants
            .create_school(CreateSchoolRequest {
                id: id.into(),
                county_id: county.into(),
                name: id.into(),
            })
            .await
            .unwrap();
        let token = admin
            .enrollment
            .create_enrollment_token(CreateEnrollmentTokenRequest {
                school_id: id.into(),
                device_class: "schueler-pc".into(),
                expires_in_seconds: 3600,
                max_uses: 5,
                description: String::new(),
                reinstall_device: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .token
            .unwrap();
        server
            .store()
            .enroll_device(&Enrolment {
                token_id: token.id,
                now: now_millis(),
                device: device(device_id, county, id),
                existing: false,
            })
            .await
            .unwrap();
    }
    let create = |device: &str, title: &str| CreateTicketRequest {
        title: title.into(),
        description: "Drucker druckt nicht".into(),
        devices: vec![device.into()],
        ..Default::default()
    };
    let foreign_ticket = admin
        .tickets
        .create_ticket(create(FOREIGN_DEVICE, "Drucker kl001"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(foreign_ticket.county_id, "kl");
    assert_eq!(foreign_ticket.school_id, "kl001");
    let own_ticket = admin
        .tickets
        .create_ticket(create(OWN_DEVICE, "Drucker kus012"))
        .await
        .unwrap()
        .into_inner();
    Fixture {
        server,
        foreign_ticket: foreign_ticket.key,
        own_ticket: own_ticket.key,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Refused,
    Hidden,
    Reached,
}

fn outcome<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
    reveals: impl Fn(&T) -> bool,
) -> Outcome {
    match result {
        Err(status) if matches!(status.code(), Code::PermissionDenied | Code::NotFound) => {
            Outcome::Refused
        }
        // "Already linked" tells that the object exists: reached.
        Err(status) if status.code() == Code::AlreadyExists => Outcome::Reached,
        Err(status) => panic!("unexpected error {status:?}"),
        Ok(response) if reveals(response.get_ref()) => Outcome::Reached,
        Ok(_) => Outcome::Hidden,
    }
}

/// Every ticket call against the foreign ticket and device.
async fn every_call(c: &mut Clients, f: &Fixture, assignee: &str) -> Vec<(&'static str, Outcome)> {
    let key = f.foreign_ticket.clone();
    let has_foreign = |tickets: &[Ticket]| tickets.iter().any(|t| t.key == key);
    vec![
        (
            "tickets.create(device)",
            outcome(
                c.tickets
                    .create_ticket(CreateTicketRequest {
                        title: "x".into(),
                        devices: vec![FOREIGN_DEVICE.into()],
                        ..Default::default()
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "tickets.create(county)",
            outcome(
                c.tickets
                    .create_ticket(CreateTicketRequest {
                        title: "x".into(),
                        county_id: "kl".into(),
                        ..Default::default()
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "tickets.create(school)",
            outcome(
                c.tickets
                    .create_ticket(CreateTicketRequest {
                        title: "x".into(),
                        school_id: "kl001".into(),
                        ..Default::default()
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "tickets.list",
            outcome(
                c.tickets.list_tickets(ListTicketsRequest::default()).await,
                |r| has_foreign(&r.tickets),
            ),
        ),
        (
            "tickets.list(county)",
            outcome(
                c.tickets
                    .list_tickets(ListTicketsRequest {
                        county_id: "kl".into(),
                        ..Default::default()
                    })
                    .await,
                |r| has_foreign(&r.tickets),
            ),
        ),
        (
            "tickets.list(device)",
            outcome(
                c.tickets
                    .list_tickets(ListTicketsRequest {
                        device: FOREIGN_DEVICE.into(),
                        ..Default::default()
                    })
                    .await,
                |r| has_foreign(&r.tickets),
            ),
        ),
        (
            "tickets.get",
            outcome(
                c.tickets
                    .get_ticket(TicketRef {
                        ticket: key.clone(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "tickets.comment",
            outcome(
                c.tickets
                    .comment_ticket(CommentTicketRequest {
                        ticket: key.clone(),
                        body: "x".into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "tickets.assign",
            outcome(
                c.tickets
                    .assign_ticket(AssignTicketRequest {
                        ticket: key.clone(),
                        assignee: assignee.into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "tickets.status",
            outcome(
                c.tickets
                    .set_ticket_status(SetTicketStatusRequest {
                        ticket: key.clone(),
                        status: "open".into(),
                        note: String::new(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "tickets.link_device",
            outcome(
                c.tickets
                    .link_ticket_device(LinkTicketDeviceRequest {
                        ticket: key.clone(),
                        device: FOREIGN_DEVICE.into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "tickets.device_tickets",
            outcome(
                c.tickets
                    .list_device_tickets(DeviceTicketsRequest {
                        device: FOREIGN_DEVICE.into(),
                    })
                    .await,
                |r| has_foreign(&r.tickets),
            ),
        ),
        (
            "tickets.search",
            outcome(
                c.tickets
                    .search(SearchRequest {
                        query: "Drucker".into(),
                        include_articles: true,
                        limit: 0,
                    })
                    .await,
                |r| r.hits.iter().any(|h| h.id == key),
            ),
        ),
    ]
}

#[tokio::test]
async fn kusel_roles_never_reach_a_kaiserslautern_ticket() {
    let f = fixture().await;
    // A technician for the assign call, who could work on the ticket.
    let _ = f
        .server
        .user_clients("coop-tech-kl", "kl", "technician", "cooperation")
        .await;
    for role in ["admin", "technician", "coordinator", "viewer"] {
        let mut c = f
            .server
            .user_clients(&format!("kus-{role}"), "kus", role, "county:kus")
            .await;
        for (call, result) in every_call(&mut c, &f, "coop-tech-kl").await {
            assert_ne!(result, Outcome::Reached, "{role}@county:kus reached {call}");
        }
    }
    // The foreign ticket must not even be known to exist: NOT_FOUND, the
    // same answer as for a ticket number nobody ever had.
    let mut kus_admin = f
        .server
        .user_clients("kus-admin2", "kus", "admin", "county:kus")
        .await;
    for key in [f.foreign_ticket.clone(), "SUP-99999".to_string()] {
        let codes = [
            kus_admin
                .tickets
                .get_ticket(TicketRef {
                    ticket: key.clone(),
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            kus_admin
                .tickets
                .comment_ticket(CommentTicketRequest {
                    ticket: key.clone(),
                    body: "x".into(),
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            kus_admin
                .tickets
                .set_ticket_status(SetTicketStatusRequest {
                    ticket: key.clone(),
                    status: "closed".into(),
                    note: String::new(),
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
        ];
        assert_eq!(codes, [Code::NotFound; 3], "{key}");
    }
    let mut school_viewer = f
        .server
        .user_clients("kl002-viewer", "kl", "viewer", "school:kus012")
        .await;
    for (call, result) in every_call(&mut school_viewer, &f, "coop-tech-kl").await {
        assert_ne!(result, Outcome::Reached, "school viewer reached {call}");
    }
}

#[tokio::test]
async fn cooperation_technician_reaches_every_call() {
    let f = fixture().await;
    let _ = f
        .server
        .user_clients("coop-tech-kl", "kl", "technician", "cooperation")
        .await;
    let mut c = f
        .server
        .user_clients("anna", "don", "technician", "cooperation")
        .await;
    for (call, result) in every_call(&mut c, &f, "coop-tech-kl").await {
        assert_eq!(result, Outcome::Reached, "cooperation technician: {call}");
    }
}

#[tokio::test]
async fn assignment_needs_a_role_for_the_tickets_county() {
    let f = fixture().await;
    let mut coordinator_admin = f.server.client(&f.server.bootstrap_token).await;
    let _ = f
        .server
        .user_clients("kus-tech", "kus", "technician", "county:kus")
        .await;
    let _ = f
        .server
        .user_clients("kus-coop-tech", "kus", "technician", "cooperation")
        .await;
    let _ = f
        .server
        .user_clients("kl-viewer", "kl", "viewer", "county:kl")
        .await;
    // A Kusel-only technician cannot be assigned a Kaiserslautern ticket.
    let err = coordinator_admin
        .tickets
        .assign_ticket(AssignTicketRequest {
            ticket: f.foreign_ticket.clone(),
            assignee: "kus-tech".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // Nor a viewer of the right county: viewers do not work tickets.
    let err = coordinator_admin
        .tickets
        .assign_ticket(AssignTicketRequest {
            ticket: f.foreign_ticket.clone(),
            assignee: "kl-viewer".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // A cooperation-wide technician employed by Kusel can be.
    let ticket = coordinator_admin
        .tickets
        .assign_ticket(AssignTicketRequest {
            ticket: f.foreign_ticket.clone(),
            assignee: "kus-coop-tech".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ticket.assignee, "kus-coop-tech");
    // And sees it under --mine.
    let mut tech = f
        .server
        .user_clients("kus-coop-tech2", "kus", "technician", "cooperation")
        .await;
    let mine = tech
        .tickets
        .list_tickets(ListTicketsRequest {
            mine: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(mine.tickets.is_empty(), "not assigned to this one");
    let all = tech
        .tickets
        .list_tickets(ListTicketsRequest {
            assignee: "kus-coop-tech".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.tickets.len(), 1);
}

#[tokio::test]
async fn viewers_read_but_do_not_work_and_devices_stay_in_the_tickets_tenant() {
    let f = fixture().await;
    let mut viewer = f
        .server
        .user_clients("kus-viewer", "kus", "viewer", "county:kus")
        .await;
    let detail = viewer
        .tickets
        .get_ticket(TicketRef {
            ticket: f.own_ticket.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detail.timeline[0].kind, "created");
    let err = viewer
        .tickets
        .comment_ticket(CommentTicketRequest {
            ticket: f.own_ticket.clone(),
            body: "hallo".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Even a cooperation technician cannot pull a Kaiserslautern device
    // into a Kusel ticket: everyone who reads the ticket would see it.
    let mut tech = f
        .server
        .user_clients("anna", "don", "technician", "cooperation")
        .await;
    let err = tech
        .tickets
        .link_ticket_device(LinkTicketDeviceRequest {
            ticket: f.own_ticket.clone(),
            device: FOREIGN_DEVICE.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Nor open one ticket for devices of two counties.
    let err = tech
        .tickets
        .create_ticket(CreateTicketRequest {
            title: "x".into(),
            devices: vec![OWN_DEVICE.into(), FOREIGN_DEVICE.into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Control characters in a comment are refused.
    let err = tech
        .tickets
        .comment_ticket(CommentTicketRequest {
            ticket: f.own_ticket.clone(),
            body: "ok\u{1b}[2J".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// Creates a published Kaiserslautern article as the bootstrap admin.
async fn foreign_article(f: &Fixture) -> Article {
    let mut admin = f.server.client(&f.server.bootstrap_token).await;
    admin
        .kb
        .create_article(CreateArticleRequest {
            county_id: "kl".into(),
            template: "stoerung".into(),
            title: "Störung: Beamer schaltet ab".into(),
            tags: vec!["Beamer".into()],
            publish: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn kusel_roles_read_the_shared_kb_but_write_only_their_own() {
    let f = fixture().await;
    let article = foreign_article(&f).await;
    assert!(article.body.contains("## Ursache"), "template used");
    assert_eq!(article.tags, ["beamer"]);
    for role in ["admin", "technician", "coordinator", "viewer"] {
        let mut c = f
            .server
            .user_clients(&format!("kus-{role}"), "kus", role, "county:kus")
            .await;
        // Reading is shared across the cooperation, by design.
        let got =
            c.kb.get_article(GetArticleRequest {
                id: article.id.clone(),
                version: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.article.unwrap().title, article.title);
        // Writing another county's article, or creating one there, is not.
        let err =
            c.kb.update_article(UpdateArticleRequest {
                id: article.id.clone(),
                base_version: 1,
                body: "überschrieben".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{role}: {err:?}");
        let err =
            c.kb.create_article(CreateArticleRequest {
                county_id: "kl".into(),
                title: "x".into(),
                body: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        // A county the caller has no role in is NOT_FOUND, as if it did
        // not exist (issue 9).
        assert_eq!(err.code(), Code::NotFound, "{role}: {err:?}");
        // Linking to a foreign ticket does not reveal it.
        let err =
            c.kb.link_article_ticket(LinkArticleTicketRequest {
                article_id: article.id.clone(),
                ticket: f.foreign_ticket.clone(),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err.code(), Code::NotFound | Code::PermissionDenied),
            "{role}: {err:?}"
        );
        let changes =
            c.kb.list_article_changes(ListArticleChangesRequest::default())
                .await
                .unwrap()
                .into_inner();
        assert_eq!(changes.articles.len(), 1);
    }
}

#[tokio::test]
async fn cooperation_technician_edits_versions_diffs_and_links() {
    let f = fixture().await;
    let article = foreign_article(&f).await;
    let mut tech = f
        .server
        .user_clients("anna", "don", "technician", "cooperation")
        .await;
    let v2 = tech
        .kb
        .update_article(UpdateArticleRequest {
            id: article.id.clone(),
            base_version: 1,
            body: format!(
                "{}\nLüfter reinigen: Überhitzung vermeiden.\n",
                article.body
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v2.version, 2);
    // A stale edit is refused, not silently lost.
    let err = tech
        .kb
        .update_article(UpdateArticleRequest {
            id: article.id.clone(),
            base_version: 1,
            body: "alt".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    let diff = tech
        .kb
        .diff_article(DiffArticleRequest {
            id: article.id.clone(),
            from_version: 1,
            to_version: 2,
        })
        .await
        .unwrap()
        .into_inner();
    let added: Vec<_> = diff.lines.iter().filter(|l| l.starts_with("+ ")).collect();
    // The template ended with a newline: an empty line, then the new one.
    assert_eq!(added, ["+ ", "+ Lüfter reinigen: Überhitzung vermeiden."]);
    let detail = tech
        .kb
        .get_article(GetArticleRequest {
            id: article.id.clone(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detail.versions.len(), 2);
    assert_eq!(detail.versions[1].author, "user:anna");
    assert!(!detail.article.unwrap().body.contains("Lüfter reinigen"));
    // Linked to the ticket, the article shows up in its timeline.
    tech.kb
        .link_article_ticket(LinkArticleTicketRequest {
            article_id: article.id.clone(),
            ticket: f.foreign_ticket.clone(),
        })
        .await
        .unwrap();
    let ticket = tech
        .tickets
        .get_ticket(TicketRef {
            ticket: f.foreign_ticket.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        ticket
            .timeline
            .iter()
            .any(|e| e.kind == "article" && e.new_value == article.id)
    );
    // And search finds it under its new words.
    let hits = tech
        .tickets
        .search(SearchRequest {
            query: "Überhitzung".into(),
            include_articles: true,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hits.hits.len(), 1);
    assert_eq!(hits.hits[0].id, article.id);
}
