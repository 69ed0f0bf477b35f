//! The four-eyes rule for recordings (issue 12, part 3): with
//! `[sessions] recording_four_eyes`, a recording plays only after someone
//! else who may read recordings there approved it for the reader, for a
//! limited time; approvals and refusals are audited. Off by default.

mod common;

use std::time::Duration;

use common::server::{Clients, InProcessServer};
use schoolfleet_proto::v1::*;
use schoolfleet_server::storage::{SESSION_ACTIVE, SessionRecord, now_millis};
use tonic::Code;

const SESSION: &str = "0190aaaa-0000-7000-8000-0000000f0e1e";

async fn server(four_eyes: bool) -> InProcessServer {
    let server = InProcessServer::start_with(|c| {
        c.sessions.recording_four_eyes = four_eyes;
        c.sessions.recording_approval_validity = Duration::from_secs(2);
    })
    .await;
    server.create_school("kus", "kus012").await;
    server.create_school("kl", "kl001").await;
    server
        .store()
        .insert_session(&SessionRecord {
            id: SESSION.into(),
            kind: "shell".into(),
            state: SESSION_ACTIVE.into(),
            device_id: "d1".into(),
            county_id: "kus".into(),
            school_id: "kus012".into(),
            user_id: "someone".into(),
            actor: "user:someone".into(),
            reason: "Drucker".into(),
            ticket: String::new(),
            summary: "shell".into(),
            spec: "{}".into(),
            consent: "prompt".into(),
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
    server
}

async fn play(c: &mut Clients) -> Result<(), tonic::Status> {
    c.sessions
        .get_recording(GetRecordingRequest {
            session_id: SESSION.into(),
            reason: "Beschwerde".into(),
        })
        .await
        .map(|_| ())
}

async fn approve(
    c: &mut Clients,
    user: &str,
    reason: &str,
) -> Result<ApprovePlaybackResponse, tonic::Status> {
    c.sessions
        .approve_playback(ApprovePlaybackRequest {
            session_id: SESSION.into(),
            user: user.into(),
            reason: reason.into(),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_recording_plays_only_after_a_second_persons_approval() {
    let server = server(true).await;
    let mut anna = server
        .user_clients("anna", "kus", "admin", "county:kus")
        .await;
    let mut bert = server
        .user_clients("bert", "kus", "admin", "county:kus")
        .await;
    let mut tech = server
        .user_clients("tech", "kus", "technician", "county:kus")
        .await;
    let mut kl_admin = server
        .user_clients("kl-admin", "kl", "admin", "county:kl")
        .await;

    let err = play(&mut anna).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("approve-playback"), "{err:?}");

    // Not by oneself, not without the right, not across counties, not for
    // someone who may not read recordings, not without a reason.
    let err = approve(&mut anna, "anna", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = approve(&mut tech, "anna", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = approve(&mut kl_admin, "anna", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = approve(&mut bert, "tech", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = approve(&mut bert, "anna", " ").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    play(&mut anna).await.unwrap_err();

    let approved = approve(&mut bert, "anna", "Beschwerde der Schule")
        .await
        .unwrap();
    let expires = approved.expires_at.unwrap().seconds * 1000;
    assert!((expires - now_millis()).abs() < 5_000, "valid for 2 s");
    play(&mut anna).await.unwrap();
    // The approval is anna's alone.
    play(&mut bert).await.unwrap_err();
    // And it expires.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let err = play(&mut anna).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Audited: the approval, the refusals and the read with its approver.
    let mut admin = server.client(&server.bootstrap_token).await;
    let entries = admin
        .audit
        .list_audit_events(ListAuditEventsRequest {
            action_prefix: "session.".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let approved: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "session.playback_approved")
        .collect();
    assert_eq!(approved.len(), 1, "{entries:?}");
    assert_eq!(approved[0].actor, "user:bert");
    assert!(approved[0].details.contains("for=user:anna"));
    assert_eq!(approved[0].school_id, "kus012");
    let reads: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e.action == "session.recording_read")
        .map(|e| (e.actor.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        reads,
        [
            ("user:anna", "denied"),
            ("user:bert", "denied"),
            ("user:anna", "ok"),
            ("user:anna", "denied"),
            ("user:anna", "denied"),
        ]
    );
    let ok = entries
        .iter()
        .find(|e| e.action == "session.recording_read" && e.outcome == "ok")
        .unwrap();
    assert!(ok.details.contains("approved_by="), "{ok:?}");
}

#[tokio::test]
async fn without_the_rule_a_reason_is_enough() {
    let server = server(false).await;
    let mut anna = server
        .user_clients("anna", "kus", "admin", "county:kus")
        .await;
    server
        .user_clients("bert", "kus", "admin", "county:kus")
        .await;
    play(&mut anna).await.unwrap();
    let err = approve(&mut anna, "bert", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}
