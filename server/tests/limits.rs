//! Oversized and malformed requests get a clear error and change nothing.

mod common;

use common::server::InProcessServer;
use schoolfleet_proto::v1::*;
use tonic::Code;

#[tokio::test]
async fn oversized_message_is_refused_with_a_clear_error() {
    let server = InProcessServer::start().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let huge = "x".repeat(schoolfleet_proto::MAX_MESSAGE_BYTES + 1);
    let err = admin
        .tenants
        .create_county(CreateCountyRequest {
            id: "kus".into(),
            name: huge,
        })
        .await
        .unwrap_err();
    // tonic reports an over-limit message as OUT_OF_RANGE.
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("too large"), "{err:?}");
    // Nothing was stored, and the server still answers.
    let counties = admin
        .tenants
        .list_counties(ListCountiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(counties.counties.is_empty());
}

#[tokio::test]
async fn invalid_ids_and_control_characters_are_refused() {
    let server = InProcessServer::start().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    for (id, name) in [
        ("KUS", "Kusel"),
        ("kus/../x", "Kusel"),
        ("kus", "Kusel\u{1b}[2J"),
    ] {
        let err = admin
            .tenants
            .create_county(CreateCountyRequest {
                id: id.into(),
                name: name.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{id:?}: {err:?}");
    }
    let err = admin
        .enrollment
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            school_id: "kus012".into(),
            device_class: "schueler-pc".into(),
            expires_in_seconds: 60,
            max_uses: 1,
            description: String::new(),
            reinstall_device: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "unknown school: {err:?}");
}
