//! Tenant isolation as a matrix: every admin call × every role scoped to
//! Kusel × an object of Kaiserslautern returns PERMISSION_DENIED or
//! NOT_FOUND (or a list without the object), never the object. A
//! cooperation-wide technician is the positive control: the joint support
//! team works across counties, so the same calls must reach the object.

mod common;

use common::server::{Clients, InProcessServer};
use schoolfleet_proto::v1::*;
use schoolfleet_server::storage::{
    self, DeviceSummary, Enrolment, IngestReport, SoftwareList, SoftwareRow, now_millis,
};
use tonic::Code;

const FOREIGN_DEVICE: &str = "0190aaaa-0000-7000-8000-00000000cafe";
const FOREIGN_HOST: &str = "kl001-sp0101";
const FOREIGN_PACKAGE: &str = "kaiserslautern-only-tool";
const FOREIGN_SESSION: &str = "0190aaaa-0000-7000-8000-00000000beef";
/// The reason of a Kaiserslautern waiver: no Kusel role may read it.
const FOREIGN_WAIVER_REASON: &str = "KL-intern: Austausch erst 2027";

/// The common standard with one waiver per county, both expiring soon.
fn standard_with_waivers() -> String {
    let expires = (chrono::Utc::now() + chrono::TimeDelta::days(10)).format("%Y-%m-%d");
    format!(
        r#"schema = "schoolfleet-standard/v1"

[standard]
id = "isolation"
version = "1"

[[rule]]
id = "RAM-01"
title = "8 GB RAM"
check = {{ type = "hardware_min", ram_gib = 8 }}

[[waiver]]
id = "W-KL"
rule = "RAM-01"
scope = {{ counties = ["kl"], schools = ["kl001"] }}
reason = "{FOREIGN_WAIVER_REASON}"
approved_by = "Koordination"
ticket = "SUP-1"
expires = {expires}

[[waiver]]
id = "W-KUS"
rule = "RAM-01"
scope = {{ counties = ["kus"] }}
reason = "Kusel: Austausch bestellt"
approved_by = "Koordination"
ticket = "SUP-1"
expires = {expires}
"#
    )
}

struct Fixture {
    server: InProcessServer,
    foreign_token_id: String,
    foreign_api_token_id: String,
    foreign_article: String,
    foreign_ticket: String,
}

async fn fixture() -> Fixture {
    let server = InProcessServer::start().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    for (id, name) in [
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
    for (id, county) in [("kus012", "kus"), ("kl001", "kl")] {
        admin
            .tenants
            .create_school(CreateSchoolRequest {
                id: id.into(),
                county_id: county.into(),
                name: id.into(),
            })
            .await
            .unwrap();
    }
    let foreign_token = admin
        .enrollment
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            school_id: "kl001".into(),
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
    admin
        .users
        .create_user(CreateUserRequest {
            name: "kl-admin".into(),
            county_id: "kl".into(),
            roles: vec![RoleBinding {
                role: "admin".into(),
                scope: "county:kl".into(),
                remote: String::new(),
            }],
        })
        .await
        .unwrap();
    let foreign_api_token_id = admin
        .users
        .create_api_token(CreateApiTokenRequest {
            user: "kl-admin".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token_id;

    // A Kaiserslautern device with inventory, written straight to the store.
    let store = server.store();
    let device = storage::DeviceRecord {
        system_uuid: "u".into(),
        serial_number: "s".into(),
        cert_fingerprint: Some("f".into()),
        ..common::device_record(FOREIGN_DEVICE, "kl", "kl001", FOREIGN_HOST)
    };
    store
        .enroll_device(&Enrolment {
            token_id: foreign_token.id.clone(),
            now: now_millis(),
            device,
            existing: false,
        })
        .await
        .unwrap();
    store
        .ingest_report(&IngestReport {
            device_id: FOREIGN_DEVICE.into(),
            report_id: uuid::Uuid::new_v4().to_string(),
            collected_at: now_millis(),
            received_at: now_millis(),
            content_hash: "0".repeat(64),
            reason: "test".into(),
            inventory: Vec::new(),
            summary: DeviceSummary {
                hostname: FOREIGN_HOST.into(),
                ..Default::default()
            },
            software: SoftwareList::from_rows(&[SoftwareRow {
                source: "dpkg".into(),
                name: FOREIGN_PACKAGE.into(),
                architecture: "amd64".into(),
                version: "1.0".into(),
            }]),
            changes: Vec::new(),
        })
        .await
        .unwrap();
    // A past shell session on it, with a recording.
    store
        .insert_session(&storage::SessionRecord {
            id: FOREIGN_SESSION.into(),
            kind: "shell".into(),
            state: "active".into(),
            device_id: FOREIGN_DEVICE.into(),
            county_id: "kl".into(),
            school_id: "kl001".into(),
            user_id: "someone".into(),
            actor: "user:someone".into(),
            reason: "x".into(),
            ticket: String::new(),
            summary: "shell".into(),
            spec: "{}".into(),
            consent: "none".into(),
            started_at: now_millis(),
            ended_at: None,
            end_reason: String::new(),
            bytes_to_device: 0,
            bytes_from_device: 0,
            exit_code: None,
            has_recording: true,
            channels: 1,
            end_requested_at: None,
            end_requested_reason: String::new(),
            step_up: String::new(),
        })
        .await
        .unwrap();
    // The common standard, with a waiver for each county.
    admin
        .compliance
        .apply_standard(ApplyStandardRequest {
            content: standard_with_waivers(),
        })
        .await
        .unwrap();
    // A Kaiserslautern article and ticket.
    let foreign_article = admin
        .kb
        .create_article(CreateArticleRequest {
            county_id: "kl".into(),
            title: "KL: Beamer".into(),
            body: "Zeile 1\n".into(),
            publish: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let foreign_ticket = admin
        .tickets
        .create_ticket(CreateTicketRequest {
            title: "KL: Drucker".into(),
            county_id: "kl".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key;
    Fixture {
        server,
        foreign_token_id: foreign_token.id,
        foreign_api_token_id,
        foreign_article,
        foreign_ticket,
    }
}

/// How one call went, as far as isolation is concerned.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Refused with PERMISSION_DENIED or NOT_FOUND.
    Refused,
    /// Succeeded, and the answer does not contain the foreign object.
    Hidden,
    /// The foreign object was reached or revealed.
    Reached,
}

fn refused<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
    reveals: impl Fn(&T) -> bool,
) -> Outcome {
    match result {
        Err(status) if matches!(status.code(), Code::PermissionDenied | Code::NotFound) => {
            Outcome::Refused
        }
        Err(status) => panic!("unexpected error {status:?}"),
        Ok(response) if reveals(response.get_ref()) => Outcome::Reached,
        Ok(_) => Outcome::Hidden,
    }
}

/// Every admin call against the foreign object, by name.
async fn every_call(c: &mut Clients, f: &Fixture) -> Vec<(&'static str, Outcome)> {
    let device = || DeviceRef {
        device: FOREIGN_DEVICE.into(),
    };
    let kl_admin = || UserRef {
        user: "kl-admin".into(),
    };
    let mut results = vec![
        (
            "tenants.create_county",
            refused(
                c.tenants
                    .create_county(CreateCountyRequest {
                        id: "x".into(),
                        name: "x".into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "tenants.list_counties",
            refused(c.tenants.list_counties(ListCountiesRequest {}).await, |r| {
                r.counties.iter().any(|x| x.id == "kl")
            }),
        ),
        (
            "tenants.create_school",
            refused(
                c.tenants
                    .create_school(CreateSchoolRequest {
                        id: "kl999".into(),
                        county_id: "kl".into(),
                        name: "x".into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "tenants.list_schools",
            refused(
                c.tenants
                    .list_schools(ListSchoolsRequest {
                        county_id: "kl".into(),
                    })
                    .await,
                |r| r.schools.iter().any(|s| s.id == "kl001"),
            ),
        ),
        (
            "tenants.create_device_class",
            refused(
                c.tenants
                    .create_device_class(CreateDeviceClassRequest {
                        id: "x".into(),
                        label: "x".into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "enrollment.create",
            refused(
                c.enrollment
                    .create_enrollment_token(CreateEnrollmentTokenRequest {
                        school_id: "kl001".into(),
                        device_class: "schueler-pc".into(),
                        expires_in_seconds: 60,
                        max_uses: 1,
                        description: String::new(),
                        reinstall_device: String::new(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "enrollment.list",
            refused(
                c.enrollment
                    .list_enrollment_tokens(ListEnrollmentTokensRequest {
                        county_id: "kl".into(),
                        ..Default::default()
                    })
                    .await,
                |r| r.tokens.iter().any(|t| t.id == f.foreign_token_id),
            ),
        ),
        (
            "enrollment.revoke",
            refused(
                c.enrollment
                    .revoke_enrollment_token(RevokeEnrollmentTokenRequest {
                        id: f.foreign_token_id.clone(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "users.create",
            refused(
                c.users
                    .create_user(CreateUserRequest {
                        name: format!("x{}", uuid::Uuid::new_v4().simple()),
                        county_id: String::new(),
                        roles: vec![RoleBinding {
                            role: "viewer".into(),
                            scope: "county:kl".into(),
                            remote: String::new(),
                        }],
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "users.list",
            refused(c.users.list_users(ListUsersRequest {}).await, |r| {
                r.users.iter().any(|u| u.name == "kl-admin")
            }),
        ),
        (
            "users.create_api_token",
            refused(
                c.users
                    .create_api_token(CreateApiTokenRequest {
                        user: "kl-admin".into(),
                        ..Default::default()
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "users.revoke_api_token",
            refused(
                c.users
                    .revoke_api_token(RevokeApiTokenRequest {
                        token_id: f.foreign_api_token_id.clone(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "users.set_web_password",
            refused(
                c.users
                    .set_web_password(SetWebPasswordRequest {
                        user: "kl-admin".into(),
                        password: "ein-sehr-langes-passwort".into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "users.disable_user",
            refused(c.users.disable_user(kl_admin()).await, |_| true),
        ),
        (
            "users.enable_user",
            refused(c.users.enable_user(kl_admin()).await, |_| true),
        ),
        (
            "users.change_role_bindings",
            refused(
                c.users
                    .change_role_bindings(ChangeRoleBindingsRequest {
                        user: "kl-admin".into(),
                        add: vec![RoleBinding {
                            role: "viewer".into(),
                            scope: "county:kl".into(),
                            remote: String::new(),
                        }],
                        remove: Vec::new(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "users.list_api_tokens",
            refused(c.users.list_api_tokens(kl_admin()).await, |r| {
                !r.tokens.is_empty()
            }),
        ),
        (
            "users.reset_mfa",
            refused(c.users.reset_mfa(kl_admin()).await, |_| true),
        ),
        (
            "users.delete_user",
            refused(c.users.delete_user(kl_admin()).await, |_| true),
        ),
        (
            "devices.list",
            refused(
                c.devices.list_devices(ListDevicesRequest::default()).await,
                |r| r.devices.iter().any(|d| d.id == FOREIGN_DEVICE),
            ),
        ),
        (
            "devices.list_county",
            refused(
                c.devices
                    .list_devices(ListDevicesRequest {
                        county_id: "kl".into(),
                        ..Default::default()
                    })
                    .await,
                |r| !r.devices.is_empty(),
            ),
        ),
        (
            "devices.get_by_id",
            refused(
                c.devices
                    .get_device(GetDeviceRequest {
                        device: FOREIGN_DEVICE.into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "devices.get_by_hostname",
            refused(
                c.devices
                    .get_device(GetDeviceRequest {
                        device: FOREIGN_HOST.into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "devices.changes",
            refused(
                c.devices
                    .list_inventory_changes(ListInventoryChangesRequest {
                        device: FOREIGN_DEVICE.into(),
                        limit: 0,
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "devices.reports",
            refused(
                c.devices
                    .list_inventory_reports(ListInventoryReportsRequest {
                        device: FOREIGN_DEVICE.into(),
                        limit: 0,
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "devices.request_inventory",
            refused(c.devices.request_inventory(device()).await, |_| true),
        ),
        (
            "inventory.search",
            refused(
                c.inventory
                    .search_software(SearchSoftwareRequest {
                        name: FOREIGN_PACKAGE.into(),
                        ..Default::default()
                    })
                    .await,
                |r| !r.hits.is_empty(),
            ),
        ),
    ];
    // Remote sessions. Starting one on the (offline) foreign device gets
    // past authorisation only to UNAVAILABLE: that counts as reached.
    let start = c
        .sessions
        .start_session(StartSessionRequest {
            device: FOREIGN_DEVICE.into(),
            reason: "isolation".into(),
            ticket: String::new(),
            spec: Some(SessionSpec {
                kind: Some(session_spec::Kind::Exec(ExecSpec {
                    argv: vec!["id".into()],
                    env: vec![],
                })),
            }),
            step_up: None,
        })
        .await;
    results.push((
        "sessions.start",
        match start {
            Err(status) if status.code() == Code::Unavailable => Outcome::Reached,
            other => refused(other, |_| true),
        },
    ));
    let session = || FOREIGN_SESSION.to_string();
    results.extend([
        (
            "sessions.list",
            refused(
                c.sessions
                    .list_sessions(ListSessionsRequest::default())
                    .await,
                |r| r.sessions.iter().any(|s| s.id == FOREIGN_SESSION),
            ),
        ),
        (
            "sessions.list_device",
            refused(
                c.sessions
                    .list_sessions(ListSessionsRequest {
                        device: FOREIGN_HOST.into(),
                        ..Default::default()
                    })
                    .await,
                |r| !r.sessions.is_empty(),
            ),
        ),
        (
            "sessions.get",
            refused(
                c.sessions
                    .get_session(GetSessionRequest {
                        session_id: session(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "sessions.recording",
            refused(
                c.sessions
                    .get_recording(GetRecordingRequest {
                        session_id: session(),
                        reason: "Prüfung".into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "sessions.approve_playback",
            refused(
                c.sessions
                    .approve_playback(ApprovePlaybackRequest {
                        session_id: session(),
                        user: "kl-admin".into(),
                        reason: "Prüfung".into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "sessions.set_consent",
            refused(
                c.sessions
                    .set_consent_policy(SetConsentPolicyRequest {
                        school_id: "kl001".into(),
                        device_class: String::new(),
                        consent: "none".into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "sessions.list_consent",
            refused(
                c.sessions
                    .list_consent_policies(ListConsentPoliciesRequest {
                        school_id: "kl001".into(),
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "audit.list",
            refused(
                c.audit
                    .list_audit_events(ListAuditEventsRequest::default())
                    .await,
                |r| r.entries.iter().any(|e| e.county_id == "kl"),
            ),
        ),
    ]);
    // Compliance. The standard's rules are common to the cooperation;
    // its waivers belong to the tenants they cover.
    let naming_foreign_school = standard_with_waivers();
    results.extend([
        (
            "compliance.lint_standard",
            // Lint checks names against the tenants the caller knows: a
            // foreign school is as unknown as one that does not exist.
            refused(
                c.compliance
                    .lint_standard(LintStandardRequest {
                        content: naming_foreign_school.clone(),
                    })
                    .await,
                |r| !r.problems.iter().any(|p| p.message.contains("kl001")),
            ),
        ),
        (
            "compliance.apply_standard",
            refused(
                c.compliance
                    .apply_standard(ApplyStandardRequest {
                        content: naming_foreign_school,
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "compliance.list_standard_versions",
            // Revision numbers and rule counts of the one common standard.
            refused(
                c.compliance
                    .list_standard_versions(ListStandardVersionsRequest {})
                    .await,
                |_| false,
            ),
        ),
        (
            "compliance.get_standard",
            refused(
                c.compliance
                    .get_standard(GetStandardRequest { revision: 0 })
                    .await,
                |r| r.content.contains(FOREIGN_WAIVER_REASON) || r.content.contains("W-KL"),
            ),
        ),
        (
            "compliance.summary",
            refused(
                c.compliance
                    .compliance_summary(ComplianceSummaryRequest::default())
                    .await,
                |r| {
                    r.expiring_waivers.iter().any(|w| w.waiver_id == "W-KL")
                        || r.tenants.iter().any(|t| t.county_id == "kl")
                },
            ),
        ),
        (
            "compliance.summary_county",
            // Naming the foreign county must not answer at all.
            refused(
                c.compliance
                    .compliance_summary(ComplianceSummaryRequest {
                        county_id: "kl".into(),
                        ..Default::default()
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "compliance.summary_school",
            refused(
                c.compliance
                    .compliance_summary(ComplianceSummaryRequest {
                        school_id: "kl001".into(),
                        ..Default::default()
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "compliance.device",
            refused(
                c.compliance
                    .device_compliance(DeviceComplianceRequest {
                        device: FOREIGN_DEVICE.into(),
                        revision: 0,
                    })
                    .await,
                |_| true,
            ),
        ),
        (
            "compliance.failing",
            refused(
                c.compliance
                    .failing_devices(FailingDevicesRequest {
                        rule_id: "RAM-01".into(),
                        ..Default::default()
                    })
                    .await,
                |r| r.devices.iter().any(|d| d.device_id == FOREIGN_DEVICE),
            ),
        ),
        (
            "compliance.failing_county",
            refused(
                c.compliance
                    .failing_devices(FailingDevicesRequest {
                        rule_id: "RAM-01".into(),
                        county_id: "kl".into(),
                        ..Default::default()
                    })
                    .await,
                |_| true,
            ),
        ),
    ]);
    // The knowledge base is shared on purpose (ARCHITECTURE.md): reading a
    // foreign article is not a leak; writing one, or in a foreign county, is.
    let article = || f.foreign_article.clone();
    results.extend([
        (
            "kb.create_article",
            refused(
                c.kb.create_article(CreateArticleRequest {
                    county_id: "kl".into(),
                    title: "x".into(),
                    body: "x".into(),
                    ..Default::default()
                })
                .await,
                |_| true,
            ),
        ),
        (
            "kb.update_article",
            refused(
                c.kb.update_article(UpdateArticleRequest {
                    id: article(),
                    base_version: 1,
                    title: "geändert".into(),
                    ..Default::default()
                })
                .await,
                |_| true,
            ),
        ),
        (
            "kb.link_article_ticket",
            refused(
                c.kb.link_article_ticket(LinkArticleTicketRequest {
                    article_id: article(),
                    ticket: f.foreign_ticket.clone(),
                })
                .await,
                |_| true,
            ),
        ),
        (
            "kb.get_article",
            refused(
                c.kb.get_article(GetArticleRequest {
                    id: article(),
                    version: 0,
                })
                .await,
                |_| false,
            ),
        ),
        (
            "kb.diff_article",
            refused(
                c.kb.diff_article(DiffArticleRequest {
                    id: article(),
                    from_version: 1,
                    to_version: 1,
                })
                .await,
                |_| false,
            ),
        ),
        (
            "kb.list_article_changes",
            refused(
                c.kb.list_article_changes(ListArticleChangesRequest::default())
                    .await,
                |_| false,
            ),
        ),
        (
            "kb.list_templates",
            // The shipped templates: the same for everyone.
            refused(c.kb.list_templates(ListTemplatesRequest {}).await, |_| {
                false
            }),
        ),
        (
            "tenants.list_device_classes",
            // Device classes are cooperation-wide.
            refused(
                c.tenants
                    .list_device_classes(ListDeviceClassesRequest {})
                    .await,
                |_| false,
            ),
        ),
        (
            "users.who_am_i",
            refused(c.users.who_am_i(WhoAmIRequest {}).await, |u| {
                u.name == "kl-admin"
            }),
        ),
        (
            "sessions.enroll_totp",
            // The caller's own second factor: the call names no tenant and
            // no other user.
            refused(
                c.sessions.enroll_totp(EnrollTotpRequest::default()).await,
                |r| r.otpauth_uri.contains("kl-admin"),
            ),
        ),
        (
            "sessions.confirm_totp",
            // The caller's own enrolment; a wrong code is the only answer.
            refused(
                c.sessions
                    .confirm_totp(ConfirmTotpRequest { code: "x".into() })
                    .await
                    .or_else(|status| match status.code() {
                        Code::InvalidArgument | Code::FailedPrecondition => {
                            Ok(tonic::Response::new(ConfirmTotpResponse {}))
                        }
                        _ => Err(status),
                    }),
                |_| false,
            ),
        ),
        (
            "audit.verify_audit_chain",
            // Sequence numbers and counts of the one chain; no entries.
            refused(
                c.audit.verify_audit_chain(VerifyAuditChainRequest {}).await,
                |r| r.problem.contains("kl"),
            ),
        ),
    ]);
    let open = ClientFrame {
        body: Some(client_frame::Body::Open(ChannelOpen {
            session_id: session(),
            offset: 0,
        })),
    };
    let attach = match c.sessions.attach(tokio_stream::iter([open])).await {
        Ok(mut frames) => match frames.get_mut().message().await {
            Ok(_) => Outcome::Reached,
            Err(status) => refused::<()>(Err(status), |_| true),
        },
        Err(status) => refused::<()>(Err(status), |_| true),
    };
    results.push(("sessions.attach", attach));
    // Last, because they change the device or the session.
    results.push((
        "sessions.end",
        refused(
            c.sessions
                .end_session(EndSessionRequest {
                    session_id: session(),
                    reason: String::new(),
                })
                .await,
            |_| true,
        ),
    ));
    // Adopting the foreign device into itself gets past authorisation only
    // to INVALID_ARGUMENT: that counts as reached.
    results.push((
        "devices.adopt",
        match c
            .devices
            .adopt_device(AdoptDeviceRequest {
                device: FOREIGN_DEVICE.into(),
                replaces: FOREIGN_DEVICE.into(),
            })
            .await
        {
            Err(status) if status.code() == Code::InvalidArgument => Outcome::Reached,
            other => refused(other, |_| true),
        },
    ));
    results.push((
        "devices.retire",
        refused(c.devices.retire_device(device()).await, |_| true),
    ));
    results.push((
        "devices.revoke",
        refused(c.devices.revoke_device(device()).await, |_| true),
    ));
    // Last: a deletion that got through would leave nothing for the rest.
    results.push((
        "devices.delete",
        refused(c.devices.delete_device(device()).await, |_| true),
    ));
    results
}

#[tokio::test]
async fn county_roles_never_reach_another_county() {
    let f = fixture().await;
    for role in ["admin", "technician", "coordinator", "viewer"] {
        let mut clients = f
            .server
            .user_clients(&format!("kus-{role}"), "", role, "county:kus")
            .await;
        for (call, outcome) in every_call(&mut clients, &f).await {
            assert_ne!(
                outcome,
                Outcome::Reached,
                "{role}@county:kus reached the Kaiserslautern object via {call}"
            );
        }
    }
    // School-scoped roles are even narrower.
    let mut clients = f
        .server
        .user_clients("kus012-admin", "", "admin", "school:kus012")
        .await;
    for (call, outcome) in every_call(&mut clients, &f).await {
        assert_ne!(
            outcome,
            Outcome::Reached,
            "admin@school:kus012 reached it via {call}"
        );
    }
    // The foreign device is untouched by all of the above.
    let device = f
        .server
        .store()
        .get_device(FOREIGN_DEVICE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(device.status, "active");
}

#[tokio::test]
async fn cooperation_wide_technician_reaches_every_county() {
    let f = fixture().await;
    let mut clients = f
        .server
        .user_clients("team-tech", "", "technician", "cooperation")
        .await;
    let results = every_call(&mut clients, &f).await;
    let outcome = |name: &str| &results.iter().find(|(call, _)| *call == name).unwrap().1;
    // The joint team reads and works on devices of every county...
    for call in [
        "devices.list",
        "devices.list_county",
        "devices.get_by_id",
        "devices.get_by_hostname",
        "devices.changes",
        "inventory.search",
        "enrollment.list",
        "devices.retire",
        "sessions.start",
        "sessions.list",
        "sessions.list_device",
        "sessions.get",
        "compliance.lint_standard",
        "compliance.get_standard",
        "compliance.summary",
        "compliance.summary_county",
        "compliance.summary_school",
        "compliance.device",
    ] {
        assert_eq!(
            outcome(call),
            &Outcome::Reached,
            "cooperation technician could not {call}"
        );
    }
    // ...but a technician holds no admin powers.
    for call in [
        "users.create",
        "users.create_api_token",
        "users.disable_user",
        "users.delete_user",
        "users.change_role_bindings",
        "users.reset_mfa",
        "devices.delete",
        "tenants.create_county",
        "devices.revoke",
        "sessions.end",
        "sessions.recording",
        "sessions.approve_playback",
        "sessions.set_consent",
        "audit.list",
    ] {
        assert_eq!(
            outcome(call),
            &Outcome::Refused,
            "technician was allowed {call}"
        );
    }
}

#[tokio::test]
async fn missing_forged_and_revoked_api_tokens_fail_closed() {
    let f = fixture().await;
    let channel_call = |token: String| {
        let server = &f.server;
        async move {
            let mut c = server.client(&token).await;
            c.devices.list_devices(ListDevicesRequest::default()).await
        }
    };
    let forged = schoolfleet_proto::tokens::format_api_token(&"0".repeat(16), &"1".repeat(48));
    for token in [String::new(), "garbage".into(), forged] {
        let err = channel_call(token.clone()).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::Unauthenticated,
            "token {token:?}: {err:?}"
        );
    }
    // A real token with a flipped secret is refused, and so is a revoked one.
    let good = f.server.bootstrap_token.clone();
    let mut flipped = good.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == '0' { '1' } else { '0' });
    assert_eq!(
        channel_call(flipped).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut admin = f.server.client(&good).await;
    let created = admin
        .users
        .create_api_token(CreateApiTokenRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(channel_call(created.secret.clone()).await.is_ok());
    admin
        .users
        .revoke_api_token(RevokeApiTokenRequest {
            token_id: created.token_id,
        })
        .await
        .unwrap();
    let err = channel_call(created.secret).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("revoked"), "{}", err.message());
}

#[tokio::test]
async fn foreign_tenants_are_not_found_not_permission_denied() {
    let f = fixture().await;
    // A Kusel admin may create users and articles, but only in Kusel.
    let mut c = f
        .server
        .user_clients("kus-admin", "kus", "admin", "county:kus")
        .await;
    let create_user = |county: &str, scope: &str| CreateUserRequest {
        name: format!("u{}", uuid::Uuid::new_v4().simple()),
        county_id: county.into(),
        roles: vec![RoleBinding {
            role: "viewer".into(),
            scope: scope.into(),
            remote: String::new(),
        }],
    };
    for (county, scope, nowhere) in [
        ("", "county:kl", "county:zz"),
        ("", "school:kl001", "school:zz001"),
        ("kl", "county:kus", ""),
    ] {
        let err = c
            .users
            .create_user(create_user(county, scope))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{county} {scope}: {err:?}");
        // The same words as for a tenant that does not exist.
        if !nowhere.is_empty() {
            let missing = c
                .users
                .create_user(create_user(county, nowhere))
                .await
                .unwrap_err();
            assert_eq!(
                err.message().replace("kl001", "X").replace("kl", "X"),
                missing.message().replace("zz001", "X").replace("zz", "X")
            );
        }
    }
    let article = |county: &str| CreateArticleRequest {
        county_id: county.into(),
        title: "Beamer".into(),
        body: "x".into(),
        ..Default::default()
    };
    let err = c.kb.create_article(article("kl")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(c.kb.create_article(article("kus")).await.is_ok());
    let err = c
        .compliance
        .compliance_summary(ComplianceSummaryRequest {
            county_id: "kl".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // A known county and a role without the power: PERMISSION_DENIED.
    let mut viewer = f
        .server
        .user_clients("kus-viewer", "kus", "viewer", "county:kus")
        .await;
    let err = viewer
        .users
        .create_user(create_user("", "county:kus"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}

#[tokio::test]
async fn county_readers_see_their_own_waivers() {
    let f = fixture().await;
    let mut c = f
        .server
        .user_clients("kus-viewer", "kus", "viewer", "county:kus")
        .await;
    let summary = c
        .compliance
        .compliance_summary(ComplianceSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = summary
        .expiring_waivers
        .iter()
        .map(|w| w.waiver_id.as_str())
        .collect();
    assert_eq!(ids, ["W-KUS"]);
    let standard = c
        .compliance
        .get_standard(GetStandardRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(standard.content.contains("W-KUS"), "{}", standard.content);
    assert!(!standard.content.contains("W-KL"), "{}", standard.content);
    assert_eq!(standard.waivers, 1);
    // What is left is still a valid standard.
    let problems = c
        .compliance
        .lint_standard(LintStandardRequest {
            content: standard.content,
        })
        .await
        .unwrap()
        .into_inner()
        .problems;
    assert!(problems.is_empty(), "{problems:?}");
    // The cooperation reads every waiver, and the file as it was applied.
    let mut team = f
        .server
        .user_clients("team-viewer", "", "viewer", "cooperation")
        .await;
    let standard = team
        .compliance
        .get_standard(GetStandardRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(standard.content, standard_with_waivers_applied(&f).await);
    let summary = team
        .compliance
        .compliance_summary(ComplianceSummaryRequest {
            county_id: "kl".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = summary
        .expiring_waivers
        .iter()
        .map(|w| w.waiver_id.as_str())
        .collect();
    assert_eq!(ids, ["W-KL"]);
}

/// The standard's text as stored.
async fn standard_with_waivers_applied(f: &Fixture) -> String {
    f.server
        .store()
        .get_standard_version(None)
        .await
        .unwrap()
        .unwrap()
        .content
}

/// The body of `async fn every_call` in a test file's text, without
/// whitespace, so that a call split over lines is one string.
fn every_call_body(source: &str) -> String {
    let start = source
        .find("async fn every_call")
        .expect("the file has an every_call matrix");
    let end = source[start..]
        .find("\n}\n")
        .map_or(source.len(), |e| start + e);
    source[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Calls that are not admin calls: the agent authenticates with its device
/// certificate, and what it reaches is its own device (device identity has
/// its own tests in `agent_stream.rs` and `agent_reports.rs`).
const NOT_ADMIN_CALLS: &[&str] = &["schoolfleet.v1.AgentService"];

#[test]
fn every_rpc_is_in_an_isolation_matrix() {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(schoolfleet_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    // The matrices: this file's and the service desk's.
    let matrices = [
        every_call_body(include_str!("tenant_isolation.rs")),
        every_call_body(include_str!("service_desk_isolation.rs")),
    ];
    let mut missing = Vec::new();
    let mut services = 0;
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            if NOT_ADMIN_CALLS.contains(&full.as_str()) {
                continue;
            }
            services += 1;
            // The field of `Clients` that holds this service's client.
            let field = match service.name() {
                "TenantService" => "tenants",
                "EnrollmentService" => "enrollment",
                "UserService" => "users",
                "DeviceService" => "devices",
                "InventoryService" => "inventory",
                "ComplianceService" => "compliance",
                "TicketService" => "tickets",
                "KnowledgeService" => "kb",
                "SessionService" => "sessions",
                "AuditService" => "audit",
                other => {
                    missing.push(format!("{other} (no client in the matrix at all)"));
                    continue;
                }
            };
            for method in &service.method {
                let call = format!(".{field}.{}(", snake_case(method.name()));
                if !matrices.iter().any(|m| m.contains(&call)) {
                    missing.push(format!("{full}/{}", method.name()));
                }
            }
        }
    }
    assert!(
        services >= 10,
        "only {services} services in the descriptor set"
    );
    assert!(
        missing.is_empty(),
        "RPCs missing from the isolation matrix:\n{}",
        missing.join("\n")
    );
}
