//! Compliance in the server: waivers expire by themselves (time injected,
//! not slept), and a county-scoped coordinator sees only their county.

mod common;

use chrono::{TimeDelta, Utc};
use common::server::{Clients, InProcessServer};
use prost::Message;
use schoolfleet_proto::v1::*;
use schoolfleet_server::storage::{DeviceSummary, Enrolment, IngestReport, now_millis};

const STANDARD: &str = r#"schema = "schoolfleet-standard/v1"

[standard]
id = "test"
version = "1"

[[rule]]
id = "RAM-01"
title = "8 GB RAM"
check = { type = "hardware_min", ram_gib = 8 }

[[waiver]]
id = "W-1"
rule = "RAM-01"
devices = ["kus012-sp0101"]
reason = "Austausch bestellt"
approved_by = "Koordination"
ticket = "SUP-1"
expires = EXPIRES
"#;

/// A device with 4 GiB of RAM in each of two counties.
async fn seed(server: &InProcessServer) {
    for (county, school, host) in [
        ("kus", "kus012", "kus012-sp0101"),
        ("kl", "kl001", "kl001-sp0101"),
    ] {
        server.create_school(county, school).await;
        let token = server
            .create_enrollment_token(school, 1)
            .await
            .token
            .unwrap();
        let id = uuid::Uuid::now_v7().to_string();
        let device = common::device_record(&id, county, school, host);
        let store = server.store();
        store
            .enroll_device(&Enrolment {
                token_id: token.id,
                now: now_millis(),
                device,
                existing: false,
            })
            .await
            .unwrap();
        let inventory = Inventory {
            system: Some(SystemInfo {
                hostname: host.into(),
                ..Default::default()
            }),
            hardware: Some(Hardware {
                memory_total_bytes: 4 << 30,
                ..Default::default()
            }),
            ..Default::default()
        };
        store
            .ingest_report(&IngestReport {
                device_id: id.clone(),
                report_id: uuid::Uuid::new_v4().to_string(),
                collected_at: now_millis(),
                received_at: now_millis(),
                content_hash: "0".repeat(64),
                reason: "test".into(),
                inventory: inventory.encode_to_vec(),
                summary: DeviceSummary {
                    hostname: host.into(),
                    ..Default::default()
                },
                software: Default::default(),
                changes: Vec::new(),
            })
            .await
            .unwrap();
    }
}

async fn ram_status(admin: &mut Clients, host: &str) -> String {
    let r = admin
        .compliance
        .device_compliance(DeviceComplianceRequest {
            device: host.into(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    r.results
        .iter()
        .find(|x| x.rule_id == "RAM-01")
        .unwrap()
        .status
        .clone()
}

#[tokio::test]
async fn waiver_turns_fail_into_waived_until_it_expires() {
    let server = InProcessServer::start().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    seed(&server).await;
    let expires = (Utc::now() + TimeDelta::days(3)).date_naive();
    admin
        .compliance
        .apply_standard(ApplyStandardRequest {
            content: STANDARD.replace("EXPIRES", &expires.to_string()),
        })
        .await
        .unwrap();
    assert_eq!(ram_status(&mut admin, "kus012-sp0101").await, "waived");
    assert_eq!(ram_status(&mut admin, "kl001-sp0101").await, "fail");
    // The summary lists the waiver as expiring within 30 days.
    let summary = admin
        .compliance
        .compliance_summary(ComplianceSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.expiring_waivers.len(), 1);

    // The day before expiry nothing changes; after it, the waiver stops
    // applying by itself.
    let engine = &server.state.compliance;
    let before = expires.and_hms_opt(0, 0, 0).unwrap().and_utc() - TimeDelta::days(1);
    assert_eq!(
        engine.expire_waivers(server.store(), before).await.unwrap(),
        0
    );
    assert_eq!(ram_status(&mut admin, "kus012-sp0101").await, "waived");
    let after = expires.and_hms_opt(0, 0, 0).unwrap().and_utc() + TimeDelta::days(1);
    assert_eq!(
        engine.expire_waivers(server.store(), after).await.unwrap(),
        1
    );
    assert_eq!(ram_status(&mut admin, "kus012-sp0101").await, "fail");
}

#[tokio::test]
async fn county_coordinator_sees_only_their_county() {
    let server = InProcessServer::start().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    seed(&server).await;
    admin
        .compliance
        .apply_standard(ApplyStandardRequest {
            content: STANDARD.replace("EXPIRES", "2099-01-01"),
        })
        .await
        .unwrap();
    let mut coord = server
        .user_clients("kus-coord", "kus", "coordinator", "county:kus")
        .await;
    let summary = coord
        .compliance
        .compliance_summary(ComplianceSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        summary.tenants.iter().all(|t| t.county_id == "kus"),
        "{:?}",
        summary.tenants
    );
    assert!(!summary.tenants.is_empty());
    let rule = summary
        .rules
        .iter()
        .find(|r| r.rule_id == "RAM-01")
        .unwrap();
    assert_eq!(
        (rule.waived, rule.fail),
        (1, 0),
        "Kaiserslautern's failure leaked into Kusel's rates"
    );
    // Naming another county is NOT_FOUND, as if it did not exist.
    let err = coord
        .compliance
        .failing_devices(FailingDevicesRequest {
            rule_id: "RAM-01".into(),
            county_id: "kl".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = coord
        .compliance
        .device_compliance(DeviceComplianceRequest {
            device: "kl001-sp0101".into(),
            revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // A county coordinator cannot change the cooperation's standard.
    let err = coord
        .compliance
        .apply_standard(ApplyStandardRequest {
            content: STANDARD.replace("EXPIRES", "2099-01-01"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn ticket_timeline_shows_compliance_changes_of_its_devices() {
    let server = InProcessServer::start().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    seed(&server).await;
    admin
        .compliance
        .apply_standard(ApplyStandardRequest {
            content: STANDARD.replace("EXPIRES", "2099-01-01"),
        })
        .await
        .unwrap();
    assert_eq!(ram_status(&mut admin, "kl001-sp0101").await, "fail");
    let ticket = admin
        .tickets
        .create_ticket(CreateTicketRequest {
            title: "Rechner zu langsam".into(),
            devices: vec!["kl001-sp0101".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // The RAM is upgraded: the next report makes the rule pass.
    let store = server.store();
    let device = store
        .find_devices_by_hostname("kl001-sp0101")
        .await
        .unwrap()
        .remove(0);
    let inventory = Inventory {
        system: Some(SystemInfo {
            hostname: "kl001-sp0101".into(),
            ..Default::default()
        }),
        hardware: Some(Hardware {
            memory_total_bytes: 16 << 30,
            ..Default::default()
        }),
        ..Default::default()
    };
    store
        .ingest_report(&IngestReport {
            device_id: device.id.clone(),
            report_id: uuid::Uuid::new_v4().to_string(),
            collected_at: now_millis(),
            received_at: now_millis(),
            content_hash: "1".repeat(64),
            reason: "changed".into(),
            inventory: inventory.encode_to_vec(),
            summary: DeviceSummary {
                hostname: "kl001-sp0101".into(),
                ..Default::default()
            },
            software: Default::default(),
            changes: Vec::new(),
        })
        .await
        .unwrap();
    server
        .state
        .compliance
        .evaluate_device(store, &device.id, Utc::now())
        .await
        .unwrap();
    assert_eq!(ram_status(&mut admin, "kl001-sp0101").await, "pass");

    let detail = admin
        .tickets
        .get_ticket(TicketRef {
            ticket: ticket.key.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let change = detail
        .timeline
        .iter()
        .find(|e| e.kind == "compliance")
        .unwrap_or_else(|| panic!("no compliance entry in {:?}", detail.timeline));
    assert_eq!(
        (
            change.subject.as_str(),
            change.old_value.as_str(),
            change.new_value.as_str()
        ),
        ("RAM-01", "fail", "pass")
    );
    // In order: the ticket's creation comes first.
    assert_eq!(
        detail.timeline.first().map(|e| e.kind.as_str()),
        Some("created")
    );
    // A device that did not change adds nothing.
    assert_eq!(
        detail
            .timeline
            .iter()
            .filter(|e| e.kind == "compliance")
            .count(),
        1
    );
}

/// Reports an inventory with this much RAM for the device and re-evaluates.
async fn report_ram(server: &InProcessServer, device_id: &str, host: &str, gib: u64) {
    let inventory = Inventory {
        system: Some(SystemInfo {
            hostname: host.into(),
            ..Default::default()
        }),
        hardware: Some(Hardware {
            memory_total_bytes: gib << 30,
            ..Default::default()
        }),
        ..Default::default()
    };
    server
        .store()
        .ingest_report(&IngestReport {
            device_id: device_id.into(),
            report_id: uuid::Uuid::new_v4().to_string(),
            collected_at: now_millis(),
            received_at: now_millis(),
            content_hash: format!("{gib:064}"),
            reason: "changed".into(),
            inventory: inventory.encode_to_vec(),
            summary: DeviceSummary {
                hostname: host.into(),
                ..Default::default()
            },
            software: Default::default(),
            changes: Vec::new(),
        })
        .await
        .unwrap();
    server
        .state
        .compliance
        .evaluate_device(server.store(), device_id, Utc::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn auto_ticket_rules_open_one_ticket_per_device_and_resolve_it() {
    let server = InProcessServer::start().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    seed(&server).await;
    let standard = STANDARD.replace("EXPIRES", "2099-01-01").replace(
        "check = { type = \"hardware_min\", ram_gib = 8 }",
        "check = { type = \"hardware_min\", ram_gib = 8 }\nauto_ticket = true",
    );
    admin
        .compliance
        .apply_standard(ApplyStandardRequest { content: standard })
        .await
        .unwrap();
    let store = server.store();
    let device = store
        .find_devices_by_hostname("kl001-sp0101")
        .await
        .unwrap()
        .remove(0);
    // Failing: one ticket, in the device's county and school.
    let ticket_id = store
        .compliance_ticket(&device.id, "RAM-01")
        .await
        .unwrap()
        .expect("ticket opened");
    let open = store.open_tickets_for_device(&device.id).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].category.as_str(), open[0].school_id.as_deref()),
        ("compliance", Some("kl001"))
    );
    // The waived device got none.
    let waived = store
        .find_devices_by_hostname("kus012-sp0101")
        .await
        .unwrap()
        .remove(0);
    assert!(
        store
            .compliance_ticket(&waived.id, "RAM-01")
            .await
            .unwrap()
            .is_none()
    );

    // Evaluating again never duplicates it.
    report_ram(&server, &device.id, "kl001-sp0101", 4).await;
    assert_eq!(
        store
            .open_tickets_for_device(&device.id)
            .await
            .unwrap()
            .len(),
        1
    );

    // Passing resolves it; failing again reopens the same ticket.
    report_ram(&server, &device.id, "kl001-sp0101", 16).await;
    assert!(
        store
            .open_tickets_for_device(&device.id)
            .await
            .unwrap()
            .is_empty()
    );
    report_ram(&server, &device.id, "kl001-sp0101", 2).await;
    let reopened = store.open_tickets_for_device(&device.id).await.unwrap();
    assert_eq!(reopened.len(), 1);
    assert_eq!(reopened[0].id, ticket_id);
}
