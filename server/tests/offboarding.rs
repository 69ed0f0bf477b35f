//! Offboarding through a running server: a disabled user's token stops
//! working at once and works again when enabled; the bootstrap admin's
//! token expires after `server.bootstrap_token_validity`.

mod common;

use std::time::Duration;

use common::server::InProcessServer;
use schoolfleet_proto::v1::{CreateApiTokenRequest, CreateUserRequest, RoleBinding, WhoAmIRequest};
use schoolfleet_server::storage::now_millis;

#[tokio::test]
async fn a_disabled_users_token_is_refused_until_enabled() {
    let server = InProcessServer::start().await;
    server.create_school("kus", "kus012").await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let user = admin
        .users
        .create_user(CreateUserRequest {
            name: "anna".into(),
            county_id: "kus".into(),
            roles: vec![RoleBinding {
                role: "technician".into(),
                scope: "county:kus".into(),
                remote: String::new(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let token = admin
        .users
        .create_api_token(CreateApiTokenRequest {
            user: "anna".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut anna = server.client(&token).await;
    anna.users.who_am_i(WhoAmIRequest {}).await.unwrap();

    let store = server.store();
    store
        .set_user_disabled(&user.id, Some(now_millis()))
        .await
        .unwrap();
    let err = anna.users.who_am_i(WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("disabled"), "{err:?}");

    store.set_user_disabled(&user.id, None).await.unwrap();
    anna.users.who_am_i(WhoAmIRequest {}).await.unwrap();
}

#[tokio::test]
async fn the_bootstrap_token_expires() {
    let server = InProcessServer::start_with(|c| {
        c.server.bootstrap_token_validity = Duration::from_secs(3600);
    })
    .await;
    let id = schoolfleet_proto::tokens::parse_api_token(&server.bootstrap_token)
        .unwrap()
        .id;
    let token = server.store().get_api_token(&id).await.unwrap().unwrap();
    let expires = token.expires_at.expect("the bootstrap token expires");
    let left = expires - now_millis();
    assert!(
        (3_500_000..=3_600_000).contains(&left),
        "expires in {left} ms"
    );
    // The default is 24 hours.
    assert_eq!(
        schoolfleet_server::config::Config::default()
            .server
            .bootstrap_token_validity,
        Duration::from_secs(24 * 3600)
    );
}
