//! The school decides (issue 12, part 4): `schulleitung@school:X` sets the
//! school's consent, which becomes its floor; admins and technicians
//! cannot go below it, and the mode a session gets never does. The role
//! reads the school's sessions and holds no technician rights.

mod common;

use common::server::InProcessServer;
use schoolfleet_proto::v1::session_spec::Kind as SpecKind;
use schoolfleet_proto::v1::*;
use schoolfleet_server::sessions::policy::resolve_consent;
use tonic::Code;

fn set(school: &str, class: &str, consent: &str) -> SetConsentPolicyRequest {
    SetConsentPolicyRequest {
        school_id: school.into(),
        device_class: class.into(),
        consent: consent.into(),
    }
}

#[tokio::test]
async fn the_school_lead_sets_a_floor_nobody_else_goes_below() {
    let server = InProcessServer::start().await;
    server.create_school("kus", "kus012").await;
    server.create_school("kl", "kl001").await;
    let token = server.enrollment_token("kus012", 1).await;
    server.enroll_device(token, "kus012-pc01").await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let mut county_admin = server
        .user_clients("kreis-admin", "kus", "admin", "county:kus")
        .await;
    let mut lead = server
        .user_clients("rektorin", "kus", "schulleitung", "school:kus012")
        .await;

    // Before any floor, an admin may set "none"; it applies.
    admin
        .sessions
        .set_consent_policy(set("kus012", "", "none"))
        .await
        .unwrap();
    let store = server.store().as_ref();
    assert_eq!(
        resolve_consent(store, "kus012", "schueler-pc", "prompt")
            .await
            .unwrap(),
        "none"
    );

    // The lead sets "notify" for the school: that is the floor now.
    lead.sessions
        .set_consent_policy(set("kus012", "", "notify"))
        .await
        .unwrap();
    for caller in [&mut admin, &mut county_admin] {
        for (class, mode) in [("", "none"), ("schueler-pc", "none")] {
            let status = caller
                .sessions
                .set_consent_policy(set("kus012", class, mode))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
            assert!(status.message().contains("school's lead"), "{status:?}");
        }
        // Stricter is always allowed.
        caller
            .sessions
            .set_consent_policy(set("kus012", "lehrer-laptop", "prompt"))
            .await
            .unwrap();
    }
    // The lead makes the pupils' PCs "prompt"; an admin's old "none" row
    // for a class cannot undercut it either.
    lead.sessions
        .set_consent_policy(set("kus012", "schueler-pc", "prompt"))
        .await
        .unwrap();
    assert_eq!(
        resolve_consent(store, "kus012", "schueler-pc", "none")
            .await
            .unwrap(),
        "prompt"
    );
    assert_eq!(
        resolve_consent(store, "kus012", "verwaltungs-pc", "none")
            .await
            .unwrap(),
        "notify"
    );
    // The lead may lower what they set themselves.
    lead.sessions
        .set_consent_policy(set("kus012", "", "none"))
        .await
        .unwrap();
    admin
        .sessions
        .set_consent_policy(set("kus012", "", "none"))
        .await
        .unwrap();

    // Refusals are audited.
    let denied = admin
        .audit
        .list_audit_events(ListAuditEventsRequest {
            action_prefix: "consent.set".into(),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .filter(|e| e.outcome == "denied")
        .count();
    assert_eq!(denied, 4);

    // Only for their own school.
    let status = lead
        .sessions
        .set_consent_policy(set("kl001", "", "prompt"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // No technician rights: no session of any kind, no devices.
    let status = lead
        .sessions
        .start_session(StartSessionRequest {
            device: "kus012-pc01".into(),
            reason: "Neugier".into(),
            spec: Some(SessionSpec {
                kind: Some(SpecKind::Exec(ExecSpec {
                    argv: vec!["id".into()],
                    env: vec![],
                })),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::NotFound | Code::PermissionDenied),
        "{status:?}"
    );
    // But the school's sessions are visible to them.
    lead.sessions
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_school_lead_is_bound_to_one_school() {
    let server = InProcessServer::start().await;
    server.create_school("kus", "kus012").await;
    let mut admin = server.client(&server.bootstrap_token).await;
    for scope in ["county:kus", "cooperation"] {
        let status = admin
            .users
            .create_user(CreateUserRequest {
                name: "rektor".into(),
                county_id: "kus".into(),
                roles: vec![RoleBinding {
                    role: "schulleitung".into(),
                    scope: scope.into(),
                    remote: String::new(),
                }],
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
}

/// The school lead reads the audit entries of its school (issue 12, part
/// 4): entries about sessions and devices carry the school since 0013.
#[tokio::test]
async fn the_school_lead_reads_its_schools_audit_and_no_other() {
    let server = InProcessServer::start().await;
    server.create_school("kus", "kus012").await;
    let mut admin = server.client(&server.bootstrap_token).await;
    admin
        .tenants
        .create_school(CreateSchoolRequest {
            id: "kus013".into(),
            county_id: "kus".into(),
            name: "kus013".into(),
        })
        .await
        .unwrap();
    for (school, host) in [("kus012", "kus012-pc01"), ("kus013", "kus013-pc01")] {
        let token = server.enrollment_token(school, 1).await;
        server.enroll_device(token, host).await;
    }
    let mut lead = server
        .user_clients("rektorin", "kus", "schulleitung", "school:kus012")
        .await;
    // Before any entry of its school, the lead reads nothing (the county's
    // entries, e.g. the user creations, are not the school's).
    let before = lead
        .audit
        .list_audit_events(ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(before.is_empty(), "{before:?}");

    // A viewer tries a session on a PC of each school: refused and audited.
    let mut viewer = server
        .user_clients("kreis-viewer", "kus", "viewer", "county:kus")
        .await;
    for host in ["kus012-pc01", "kus013-pc01"] {
        let status = viewer
            .sessions
            .start_session(StartSessionRequest {
                device: host.into(),
                reason: "Drucker".into(),
                spec: Some(SessionSpec {
                    kind: Some(SpecKind::Shell(ShellSpec::default())),
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    // An admin retires the PC of the other school.
    admin
        .devices
        .retire_device(DeviceRef {
            device: "kus013-pc01".into(),
        })
        .await
        .unwrap();

    let entries = lead
        .audit
        .list_audit_events(ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(
        entries
            .iter()
            .any(|e| e.action == "session.denied" && e.details.contains("kus012-pc01")),
        "{entries:?}"
    );
    for e in &entries {
        assert_eq!(e.school_id, "kus012", "{e:?}");
        assert!(!e.details.contains("kus013"), "{e:?}");
    }
    // The county admin sees both schools' entries.
    let all = admin
        .audit
        .list_audit_events(ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    for (school, action) in [("kus013", "session.denied"), ("kus013", "device.retired")] {
        assert!(
            all.iter()
                .any(|e| e.school_id == school && e.action == action),
            "{school} {action}: {all:?}"
        );
    }
    // The chain, now with school ids in it, still verifies.
    let verdict = admin
        .audit
        .verify_audit_chain(VerifyAuditChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verdict.ok, "{verdict:?}");
    assert!(verdict.entries_checked as usize >= all.len());
}
