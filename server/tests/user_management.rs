//! User management stays inside the caller's scope, also for users whose
//! bindings cannot be placed in the tenant tree.

mod common;

use common::server::InProcessServer;
use schoolfleet_proto::v1::*;
use schoolfleet_server::storage::{self, now_millis};
use tonic::Code;

/// A user bound to a school that does not exist (written straight to the
/// store, as an old or hand-edited database could hold it) is not a user a
/// county admin may mint tokens for, list, or revoke tokens of.
#[tokio::test]
async fn county_admin_cannot_manage_a_user_bound_to_an_unknown_tenant() {
    let server = InProcessServer::start().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    admin
        .tenants
        .create_county(CreateCountyRequest {
            id: "kus".into(),
            name: "Landkreis Kusel".into(),
        })
        .await
        .unwrap();
    admin
        .users
        .create_user(CreateUserRequest {
            name: "kus-admin".into(),
            county_id: "kus".into(),
            roles: vec![RoleBinding {
                role: "admin".into(),
                scope: "county:kus".into(),
                remote: String::new(),
            }],
        })
        .await
        .unwrap();
    let kus_secret = admin
        .users
        .create_api_token(CreateApiTokenRequest {
            user: "kus-admin".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    server
        .store()
        .create_user(&storage::User {
            id: uuid::Uuid::now_v7().to_string(),
            name: "ghost-admin".into(),
            county_id: None,
            created_at: now_millis(),
            bindings: vec![storage::RoleBindingRecord::new("admin", "school:gone001")],
        })
        .await
        .unwrap();

    let mut kus = server.client(&kus_secret).await;
    let minted = kus
        .users
        .create_api_token(CreateApiTokenRequest {
            user: "ghost-admin".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        minted.map(|r| r.into_inner().token_id).unwrap_err().code(),
        Code::NotFound
    );
    let listed = kus
        .users
        .list_users(ListUsersRequest {})
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(listed.iter().all(|u| u.name != "ghost-admin"), "{listed:?}");

    // Positive control: the cooperation admin still manages that user.
    let ghost_token = admin
        .users
        .create_api_token(CreateApiTokenRequest {
            user: "ghost-admin".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token_id;
    let revoked = kus
        .users
        .revoke_api_token(RevokeApiTokenRequest {
            token_id: ghost_token,
        })
        .await;
    assert_eq!(revoked.unwrap_err().code(), Code::NotFound);
}

/// A user name shaped like a user id would make "user X" ambiguous.
#[tokio::test]
async fn user_names_that_look_like_ids_are_refused() {
    let server = InProcessServer::start().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let me = admin
        .users
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    let created = admin
        .users
        .create_user(CreateUserRequest {
            name: me.id.clone(),
            county_id: String::new(),
            roles: vec![RoleBinding {
                role: "viewer".into(),
                scope: "cooperation".into(),
                remote: String::new(),
            }],
        })
        .await;
    assert_eq!(created.unwrap_err().code(), Code::InvalidArgument);
}
