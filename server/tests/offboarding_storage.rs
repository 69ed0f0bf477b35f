//! Offboarding in the store (issue 12, part 2), on both backends: disable
//! and enable, delete a user (bindings and tokens go, sessions keep a
//! pseudonym), change role bindings atomically, list tokens, and delete a
//! device with everything about it.

mod common;

use std::sync::Arc;

use common::RawDb;
use schoolfleet_server::storage::*;

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
    store
        .create_user(&User {
            id: "u1".into(),
            name: "anna".into(),
            county_id: Some("kus".into()),
            created_at: 1,
            bindings: vec![RoleBindingRecord::new("technician", "county:kus")],
        })
        .await
        .unwrap();
    for id in ["t1", "t2"] {
        raw.execute(&format!(
            "INSERT INTO api_tokens (id, user_id, secret_hash, description, created_at) \
             VALUES ('{id}', 'u1', 'h', 'Laptop', 1)"
        ))
        .await;
    }
    raw.execute(
        "INSERT INTO devices (id, county_id, school_id, device_class, status, hostname, \
         system_uuid, serial_number, enrolled_at) VALUES ('d1', 'kus', 'kus012', 'schueler-pc', \
         'retired', 'pc-1', '', '', 1)",
    )
    .await;
}

async fn a_user_is_disabled_enabled_and_deleted(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    assert_eq!(store.user_disabled_at("u1").await.unwrap(), None);
    assert!(store.set_user_disabled("u1", Some(5)).await.unwrap());
    assert_eq!(store.user_disabled_at("u1").await.unwrap(), Some(5));
    assert!(store.set_user_disabled("u1", None).await.unwrap());
    assert_eq!(store.user_disabled_at("u1").await.unwrap(), None);
    assert!(!store.set_user_disabled("nobody", Some(5)).await.unwrap());

    let tokens = store.list_api_tokens("u1").await.unwrap();
    assert_eq!(tokens.len(), 2);

    raw.execute(
        "INSERT INTO sessions (id, kind, state, device_id, county_id, school_id, user_id, actor, \
         reason, ticket, summary, spec, consent, started_at) VALUES ('s1', 'shell', 'ended', \
         'd1', 'kus', 'kus012', 'u1', 'user:anna', 'Drucker', '', 'shell', '{}', 'prompt', 1)",
    )
    .await;
    assert!(store.delete_user("u1", "deleted-user:0001").await.unwrap());
    assert!(store.get_user("anna").await.unwrap().is_none());
    assert!(store.get_api_token("t1").await.unwrap().is_none());
    assert_eq!(
        raw.scalar("SELECT COUNT(*) FROM role_bindings WHERE user_id = 'u1'")
            .await,
        0
    );
    let session = store.get_session("s1").await.unwrap().unwrap();
    assert_eq!(session.actor, "deleted-user:0001");
    assert_eq!(session.user_id, "u1");
    assert!(!store.delete_user("u1", "x").await.unwrap());
}

async fn role_bindings_change_in_one_transaction(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    let technician = RoleBindingRecord::new("technician", "county:kus");
    let viewer = RoleBindingRecord::new("viewer", "school:kus012");
    store
        .change_role_bindings(
            "u1",
            std::slice::from_ref(&technician),
            std::slice::from_ref(&viewer),
        )
        .await
        .unwrap();
    let user = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(user.bindings.len(), 1);
    assert_eq!(user.bindings[0].role, "viewer");
    // Removing the last binding is refused and changes nothing.
    let err = store
        .change_role_bindings("u1", std::slice::from_ref(&viewer), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err}");
    // A binding that is not there: nothing changes either.
    let err = store
        .change_role_bindings(
            "u1",
            std::slice::from_ref(&technician),
            std::slice::from_ref(&technician),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
    let user = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(user.bindings, vec![viewer]);
}

async fn a_device_is_deleted_with_everything_about_it(store: Arc<dyn Store>, raw: RawDb) {
    seed(&store, &raw).await;
    for sql in [
        "INSERT INTO inventory_reports (device_id, report_id, collected_at, received_at, \
         content_hash, reason) VALUES ('d1', 'r1', 1, 1, 'h', 'timer')",
        "INSERT INTO device_software (device_id, packages) \
         VALUES ('d1', '[[\"dpkg\",\"bash\",\"amd64\",\"5.2\"]]')",
        "INSERT INTO inventory_changes (device_id, report_id, at, kind, subject, old_value, \
         new_value) VALUES ('d1', 'r1', 1, 'os_changed', 'os', '11', '12')",
        "INSERT INTO compliance_changes (device_id, revision, rule_id, at, old_status, \
         new_status, actual) VALUES ('d1', 1, 'r', 1, 'pass', 'fail', '')",
        "INSERT INTO enrollment_tokens (id, secret_hash, county_id, school_id, device_class, \
         description, max_uses, uses, expires_at, created_by, created_at, reinstall_device_id) \
         VALUES ('et', 'h', 'kus', 'kus012', 'schueler-pc', '', 1, 0, 9999999999999, 'anna', 1, 'd1')",
        "INSERT INTO sessions (id, kind, state, device_id, county_id, school_id, user_id, actor, \
         reason, ticket, summary, spec, consent, started_at) VALUES ('s1', 'shell', 'ended', \
         'd1', 'kus', 'kus012', 'u1', 'user:anna', 'Drucker', '', 'shell', '{}', 'prompt', 1)",
    ] {
        raw.execute(sql).await;
    }
    assert!(store.delete_device("d1").await.unwrap());
    assert!(store.get_device("d1").await.unwrap().is_none());
    for table in [
        "inventory_reports",
        "device_software",
        "inventory_changes",
        "compliance_changes",
    ] {
        assert_eq!(
            raw.scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE device_id = 'd1'"
            ))
            .await,
            0,
            "{table}"
        );
    }
    let token = store.get_enrollment_token("et").await.unwrap().unwrap();
    assert_eq!(token.reinstall_device_id, None);
    // The session keeps the device id as a pseudonymous reference.
    assert_eq!(
        store.get_session("s1").await.unwrap().unwrap().device_id,
        "d1"
    );
    assert!(!store.delete_device("d1").await.unwrap());
}

on_both_backends_raw!(
    a_user_is_disabled_enabled_and_deleted,
    role_bindings_change_in_one_transaction,
    a_device_is_deleted_with_everything_about_it,
);
