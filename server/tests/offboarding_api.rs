//! Offboarding through the API of a running server (issue 12, part 2):
//! disable and enable, role bindings changed, tokens listed and revoked,
//! users and devices deleted, the second factor reset, each audited and
//! each refused across counties and on oneself.

mod common;

use std::path::{Path, PathBuf};

use common::server::{Clients, InProcessServer};
use schoolfleet_proto::v1::*;
use schoolfleet_server::auth::mfa;
use schoolfleet_server::storage::{
    self, ApiToken, RoleBindingRecord, SESSION_ACTIVE, SessionRecord, now_millis,
};
use tonic::Code;

fn binding(role: &str, scope: &str) -> RoleBinding {
    RoleBinding {
        role: role.into(),
        scope: scope.into(),
        remote: String::new(),
    }
}

fn user(name: &str) -> UserRef {
    UserRef { user: name.into() }
}

/// A server with the counties kus (school kus012) and kl (school kl001).
async fn two_counties() -> InProcessServer {
    let server = InProcessServer::start().await;
    server.create_school("kus", "kus012").await;
    server.create_school("kl", "kl001").await;
    server
}

/// Audit entries of this action, newest first: (actor, target, details).
async fn audited(admin: &mut Clients, action: &str) -> Vec<(String, String, String)> {
    admin
        .audit
        .list_audit_events(ListAuditEventsRequest {
            action_prefix: action.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| (e.actor, e.target, e.details))
        .collect()
}

#[tokio::test]
async fn a_disabled_users_token_is_refused_at_once_and_enabling_restores_it() {
    let server = two_counties().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let mut anna = server
        .user_clients("anna", "kus", "technician", "county:kus")
        .await;
    anna.users.who_am_i(WhoAmIRequest {}).await.unwrap();

    let disabled = admin
        .users
        .disable_user(user("anna"))
        .await
        .unwrap()
        .into_inner();
    assert!(disabled.disabled_at.is_some());
    let err = anna.users.who_am_i(WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let listed = admin
        .users
        .list_users(ListUsersRequest {})
        .await
        .unwrap()
        .into_inner()
        .users;
    let row = listed.iter().find(|u| u.name == "anna").unwrap();
    assert!(row.disabled_at.is_some(), "the list shows the state");

    let enabled = admin
        .users
        .enable_user(user("anna"))
        .await
        .unwrap()
        .into_inner();
    assert!(enabled.disabled_at.is_none());
    anna.users.who_am_i(WhoAmIRequest {}).await.unwrap();

    assert_eq!(
        audited(&mut admin, "user.disable").await,
        [("user:admin".into(), "user:anna".into(), String::new())]
    );
    assert_eq!(audited(&mut admin, "user.enable").await.len(), 1);
}

#[tokio::test]
async fn nobody_offboards_themselves() {
    let server = two_counties().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    for result in [
        admin.users.disable_user(user("admin")).await.map(|_| ()),
        admin.users.delete_user(user("admin")).await.map(|_| ()),
        admin.users.reset_mfa(user("admin")).await.map(|_| ()),
        admin
            .users
            .change_role_bindings(ChangeRoleBindingsRequest {
                user: "admin".into(),
                remove: vec![binding("admin", "cooperation")],
                ..Default::default()
            })
            .await
            .map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("themselves"), "{err:?}");
    }
    // Still the only cooperation admin, still working.
    admin.users.who_am_i(WhoAmIRequest {}).await.unwrap();
    // A second cooperation admin may disable the first: one stays.
    let mut boss = server
        .user_clients("boss", "", "admin", "cooperation")
        .await;
    boss.users.disable_user(user("admin")).await.unwrap();
    let err = boss.users.disable_user(user("boss")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn changed_role_bindings_take_effect_at_once() {
    let server = two_counties().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let mut anna = server
        .user_clients("anna", "kus", "technician", "county:kus")
        .await;
    let kl_schools = |c: &mut Clients| {
        let mut c = c.tenants.clone();
        async move {
            c.list_schools(ListSchoolsRequest {
                county_id: "kl".into(),
            })
            .await
            .map(|r| r.into_inner().schools.len())
            .unwrap_or(0)
        }
    };
    assert_eq!(kl_schools(&mut anna).await, 0);

    let changed = admin
        .users
        .change_role_bindings(ChangeRoleBindingsRequest {
            user: "anna".into(),
            add: vec![binding("viewer", "county:kl")],
            remove: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.roles.len(), 2);
    assert_eq!(kl_schools(&mut anna).await, 1, "the new binding applies");

    admin
        .users
        .change_role_bindings(ChangeRoleBindingsRequest {
            user: "anna".into(),
            add: Vec::new(),
            remove: vec![binding("viewer", "county:kl")],
        })
        .await
        .unwrap();
    assert_eq!(kl_schools(&mut anna).await, 0, "the removal applies");

    // The last binding cannot go: disable or delete the user instead.
    let err = admin
        .users
        .change_role_bindings(ChangeRoleBindingsRequest {
            user: "anna".into(),
            add: Vec::new(),
            remove: vec![binding("technician", "county:kus")],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // A binding the user does not have.
    let err = admin
        .users
        .change_role_bindings(ChangeRoleBindingsRequest {
            user: "anna".into(),
            add: Vec::new(),
            remove: vec![binding("admin", "county:kus")],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let entries = audited(&mut admin, "user.roles_change").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0].2, "add=;remove=viewer@county:kl");
    assert_eq!(entries[1].2, "add=viewer@county:kl;remove=");
}

#[tokio::test]
async fn a_users_tokens_are_listed_without_secrets_and_revoked() {
    let server = two_counties().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    admin
        .users
        .create_user(CreateUserRequest {
            name: "anna".into(),
            county_id: "kus".into(),
            roles: vec![binding("technician", "county:kus")],
        })
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for description in ["laptop", "unused"] {
        tokens.push(
            admin
                .users
                .create_api_token(CreateApiTokenRequest {
                    user: "anna".into(),
                    description: description.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let mut anna = server.client(&tokens[0].secret).await;
    anna.users.who_am_i(WhoAmIRequest {}).await.unwrap();

    // The last use is recorded off the request's path.
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = admin
            .users
            .list_api_tokens(user("anna"))
            .await
            .unwrap()
            .into_inner()
            .tokens;
        if listed.iter().any(|t| t.last_used_at.is_some()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(listed.len(), 2);
    let used = listed.iter().find(|t| t.id == tokens[0].token_id).unwrap();
    let unused = listed.iter().find(|t| t.id == tokens[1].token_id).unwrap();
    assert_eq!(used.description, "laptop");
    assert!(used.last_used_at.is_some() && used.expires_at.is_some());
    assert!(unused.last_used_at.is_none() && unused.revoked_at.is_none());
    let text = format!("{listed:?}");
    for t in &tokens {
        let secret = t.secret.rsplit('_').next().unwrap();
        assert!(!text.contains(secret), "a secret in the list");
    }
    // Anna lists her own tokens too.
    assert_eq!(
        anna.users
            .list_api_tokens(user(""))
            .await
            .unwrap()
            .into_inner()
            .tokens
            .len(),
        2
    );

    admin
        .users
        .revoke_api_token(RevokeApiTokenRequest {
            token_id: tokens[0].token_id.clone(),
        })
        .await
        .unwrap();
    let err = anna.users.who_am_i(WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let listed = admin
        .users
        .list_api_tokens(user("anna"))
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert!(
        listed
            .iter()
            .find(|t| t.id == tokens[0].token_id)
            .unwrap()
            .revoked_at
            .is_some()
    );
}

#[tokio::test]
async fn a_county_admin_offboards_only_users_of_their_county() {
    let server = two_counties().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let mut kus_admin = server
        .user_clients("kus-admin", "kus", "admin", "county:kus")
        .await;
    for (name, county) in [("kus-tech", "kus"), ("kl-tech", "kl")] {
        admin
            .users
            .create_user(CreateUserRequest {
                name: name.into(),
                county_id: county.into(),
                roles: vec![binding("technician", &format!("county:{county}"))],
            })
            .await
            .unwrap();
    }
    // Another county's user, and the cooperation's admin: NOT_FOUND.
    for target in ["kl-tech", "admin"] {
        let calls = [
            kus_admin.users.disable_user(user(target)).await.map(|_| ()),
            kus_admin.users.enable_user(user(target)).await.map(|_| ()),
            kus_admin.users.delete_user(user(target)).await.map(|_| ()),
            kus_admin
                .users
                .list_api_tokens(user(target))
                .await
                .map(|_| ()),
            kus_admin.users.reset_mfa(user(target)).await.map(|_| ()),
            kus_admin
                .users
                .change_role_bindings(ChangeRoleBindingsRequest {
                    user: target.into(),
                    add: vec![binding("viewer", "county:kus")],
                    remove: Vec::new(),
                })
                .await
                .map(|_| ()),
        ];
        for (n, result) in calls.into_iter().enumerate() {
            let err = result.unwrap_err();
            assert_eq!(err.code(), Code::NotFound, "call {n} on {target}: {err:?}");
        }
    }
    // Granting a role in another county to an own user: NOT_FOUND too.
    let err = kus_admin
        .users
        .change_role_bindings(ChangeRoleBindingsRequest {
            user: "kus-tech".into(),
            add: vec![binding("viewer", "county:kl")],
            remove: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // A technician manages no users at all.
    let mut tech = server
        .user_clients("coop-tech", "", "technician", "cooperation")
        .await;
    let err = tech.users.disable_user(user("kus-tech")).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::NotFound | Code::PermissionDenied),
        "{err:?}"
    );
    // The own county's user: allowed.
    kus_admin
        .users
        .disable_user(user("kus-tech"))
        .await
        .unwrap();
    kus_admin.users.delete_user(user("kus-tech")).await.unwrap();
    let kl = server.store().get_user("kl-tech").await.unwrap().unwrap();
    assert!(
        server
            .store()
            .user_disabled_at(&kl.id)
            .await
            .unwrap()
            .is_none()
    );
}

/// The SQLite file of the server and its WAL, as bytes (like `grep -a`).
fn db_path(server: &InProcessServer) -> PathBuf {
    let url = &server.state.config.server.database_url;
    PathBuf::from(url.strip_prefix("sqlite://").unwrap())
}

fn in_files(db: &Path, marker: &str) -> bool {
    ["", "-wal"].iter().any(|suffix| {
        let bytes = std::fs::read(format!("{}{suffix}", db.display())).unwrap_or_default();
        bytes
            .windows(marker.len())
            .any(|w| w.eq_ignore_ascii_case(marker.as_bytes()))
    })
}

#[tokio::test]
async fn a_deleted_users_name_is_gone_from_the_database_file() {
    const NAME: &str = "qxoffboardedquebec4711";
    let server = two_counties().await;
    let store = server.store();
    let db = db_path(&server);
    // The person, written straight to the store so that no audit entry
    // names them (entries written while a person acts keep the name until
    // `audit.retention`: docs/datenschutz.md, section 5).
    let person = storage::User {
        id: uuid::Uuid::now_v7().to_string(),
        name: NAME.into(),
        county_id: Some("kus".into()),
        created_at: now_millis(),
        bindings: vec![RoleBindingRecord {
            role: "technician".into(),
            scope: "county:kus".into(),
            remote: String::new(),
        }],
    };
    let token = ApiToken {
        id: "qxtok1".into(),
        user_id: person.id.clone(),
        secret_hash: "0".repeat(64),
        description: format!("{NAME} laptop"),
        created_at: now_millis(),
        expires_at: None,
        revoked_at: None,
    };
    store
        .create_user_with_token(&person, Some(&token))
        .await
        .unwrap();
    // A session they ran.
    store
        .insert_session(&SessionRecord {
            id: "s-1".into(),
            kind: "exec".into(),
            state: SESSION_ACTIVE.into(),
            device_id: "d1".into(),
            county_id: "kus".into(),
            school_id: "kus012".into(),
            user_id: person.id.clone(),
            actor: format!("user:{NAME}"),
            reason: "Drucker".into(),
            ticket: String::new(),
            summary: "lpstat".into(),
            spec: "{}".into(),
            consent: "prompt".into(),
            started_at: now_millis(),
            ended_at: None,
            end_reason: String::new(),
            bytes_to_device: 0,
            bytes_from_device: 0,
            exit_code: None,
            has_recording: false,
            channels: 1,
            end_requested_at: None,
            end_requested_reason: String::new(),
            step_up: String::new(),
        })
        .await
        .unwrap();
    store.compact().await.unwrap();
    assert!(in_files(&db, NAME), "the marker must be found before");

    let mut admin = server.client(&server.bootstrap_token).await;
    let pseudonym = admin
        .users
        .delete_user(user(NAME))
        .await
        .unwrap()
        .into_inner()
        .pseudonym;
    assert_eq!(pseudonym, format!("user:deleted-{}", person.id));
    assert!(!in_files(&db, NAME), "the name is still in the files");
    assert!(store.get_user(NAME).await.unwrap().is_none());
    assert!(store.get_api_token("qxtok1").await.unwrap().is_none());
    let session = store.get_session("s-1").await.unwrap().unwrap();
    assert_eq!(session.actor, pseudonym);
    // The deletion is audited by id, without the name.
    assert_eq!(
        audited(&mut admin, "user.delete").await,
        [(
            "user:admin".into(),
            format!("user:{}", person.id),
            String::new()
        )]
    );
    let err = admin.users.delete_user(user(NAME)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn a_deleted_device_is_gone() {
    let server = two_counties().await;
    let token = server.enrollment_token("kus012", 1).await;
    let (device_id, _) = server.enroll_device(token, "kus012-pc01").await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let device = || DeviceRef {
        device: "kus012-pc01".into(),
    };
    let store = server.store();

    // Another county's admin does not even see it; a technician may not.
    let mut kl_admin = server
        .user_clients("kl-admin", "kl", "admin", "county:kl")
        .await;
    let err = kl_admin.devices.delete_device(device()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let mut tech = server
        .user_clients("kus-tech", "kus", "technician", "county:kus")
        .await;
    let err = tech.devices.delete_device(device()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // An active device is retired or revoked first.
    let err = admin.devices.delete_device(device()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(store.get_device(&device_id).await.unwrap().is_some());

    admin.devices.retire_device(device()).await.unwrap();
    let deleted = admin
        .devices
        .delete_device(device())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.device_id, device_id);
    assert!(store.get_device(&device_id).await.unwrap().is_none());
    let err = admin
        .devices
        .get_device(GetDeviceRequest {
            device: device_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        audited(&mut admin, "device.delete").await,
        [(
            "user:admin".into(),
            format!("device:{device_id}"),
            String::new()
        )]
    );
}

#[tokio::test]
async fn an_admin_resets_a_users_second_factor() {
    let server = two_counties().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let mut anna = server
        .user_clients("anna", "kus", "technician", "county:kus")
        .await;
    let enrolled = anna
        .sessions
        .enroll_totp(EnrollTotpRequest::default())
        .await
        .unwrap()
        .into_inner();
    let secret = data_encoding::BASE32_NOPAD
        .decode(enrolled.secret.as_bytes())
        .unwrap();
    let step = mfa::step_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    anna.sessions
        .confirm_totp(ConfirmTotpRequest {
            code: mfa::format_code(mfa::code_at(&secret, step)),
        })
        .await
        .unwrap();
    // With an active factor, enrolling again needs a current code.
    let err = anna
        .sessions
        .enroll_totp(EnrollTotpRequest::default())
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);

    // A county admin of another county does not see anna.
    let mut kl_admin = server
        .user_clients("kl-admin", "kl", "admin", "county:kl")
        .await;
    let err = kl_admin.users.reset_mfa(user("anna")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let reset = admin
        .users
        .reset_mfa(user("anna"))
        .await
        .unwrap()
        .into_inner();
    assert!(reset.had_mfa);
    let id = server.store().get_user("anna").await.unwrap().unwrap().id;
    assert!(server.store().get_user_mfa(&id).await.unwrap().is_none());
    // Anna enrols again, without a code.
    anna.sessions
        .enroll_totp(EnrollTotpRequest::default())
        .await
        .unwrap();
    assert_eq!(
        audited(&mut admin, "user.mfa_reset").await,
        [(
            "user:admin".into(),
            "user:anna".into(),
            "had_mfa=true".into()
        )]
    );
    // A second reset finds an unconfirmed enrolment, then nothing.
    assert!(
        admin
            .users
            .reset_mfa(user("anna"))
            .await
            .unwrap()
            .into_inner()
            .had_mfa
    );
    assert!(
        !admin
            .users
            .reset_mfa(user("anna"))
            .await
            .unwrap()
            .into_inner()
            .had_mfa
    );
}
