//! The step-up before remote sessions (issue 12, part 1) on a real server:
//! enrolment, codes computed here from the secret the server handed out,
//! single use, the binding of the grace window to kind and reason, the
//! method in the session row and the audit, the secret sealed at rest.

mod common;

use common::server::{Clients, InProcessServer};
use schoolfleet_proto::v1::session_spec::Kind as SpecKind;
use schoolfleet_proto::v1::*;
use schoolfleet_server::auth::mfa;
use tonic::Code;

const HOST: &str = "kus012-pc01";

fn now_step() -> u64 {
    mfa::step_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

fn code(secret: &[u8], step: u64) -> String {
    mfa::format_code(mfa::code_at(secret, step))
}

fn shell() -> Option<SessionSpec> {
    Some(SessionSpec {
        kind: Some(SpecKind::Shell(ShellSpec::default())),
    })
}

fn exec() -> Option<SessionSpec> {
    Some(SessionSpec {
        kind: Some(SpecKind::Exec(ExecSpec {
            argv: vec!["true".into()],
            env: vec![],
        })),
    })
}

fn totp(code: &str) -> Option<StepUp> {
    Some(StepUp {
        method: Some(step_up::Method::Totp(TotpCode { code: code.into() })),
    })
}

async fn start(
    c: &mut Clients,
    spec: Option<SessionSpec>,
    reason: &str,
    step_up: Option<StepUp>,
) -> tonic::Status {
    match c
        .sessions
        .start_session(StartSessionRequest {
            device: HOST.into(),
            reason: reason.into(),
            ticket: String::new(),
            spec,
            step_up,
        })
        .await
    {
        Ok(_) => panic!("no agent is connected: the start cannot succeed"),
        Err(status) => status,
    }
}

fn asks_for_code(status: &tonic::Status) -> bool {
    status.code() == Code::PermissionDenied
        && status
            .metadata()
            .get("x-schoolfleet-step-up")
            .is_some_and(|v| v == "totp")
}

/// Sessions of the caller, newest first: (reason, step_up).
async fn recorded(c: &mut Clients) -> Vec<(String, String, i32)> {
    c.sessions
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions
        .into_iter()
        .map(|s| (s.reason, s.step_up, s.kind))
        .collect()
}

#[tokio::test]
async fn a_session_needs_a_fresh_code_bound_to_kind_and_reason() {
    let server = InProcessServer::start_with(|config| {
        config.sessions.require_mfa = vec!["shell".into(), "exec".into()];
        config.sessions.mfa_grace = std::time::Duration::from_secs(300);
    })
    .await;
    server.create_school("kus", "kus012").await;
    let token = server.enrollment_token("kus012", 1).await;
    server.enroll_device(token, HOST).await;
    let mut admin = server.client(&server.bootstrap_token).await;

    // Without a second factor nothing starts, and the message says how.
    let status = start(&mut admin, shell(), "Drucker", None).await;
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("mfa enroll"), "{status:?}");
    assert!(!asks_for_code(&status), "no code exists to ask for");

    // Enrol: the secret comes back once; the first code activates it.
    let enrolled = admin
        .sessions
        .enroll_totp(EnrollTotpRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        enrolled
            .otpauth_uri
            .starts_with("otpauth://totp/schoolfleet:admin?secret=")
    );
    let secret = data_encoding::BASE32_NOPAD
        .decode(enrolled.secret.as_bytes())
        .unwrap();
    let wrong = admin
        .sessions
        .confirm_totp(ConfirmTotpRequest {
            code: "12345".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::InvalidArgument);
    let s0 = now_step();
    admin
        .sessions
        .confirm_totp(ConfirmTotpRequest {
            code: code(&secret, s0),
        })
        .await
        .unwrap();

    // The secret is sealed at rest: neither the raw bytes nor base32.
    let user = server.store().get_user("admin").await.unwrap().unwrap();
    let stored = server
        .store()
        .get_user_mfa(&user.id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.confirmed);
    assert!(!stored.secret.windows(secret.len()).any(|w| w == secret));
    assert!(
        !stored
            .secret
            .windows(enrolled.secret.len())
            .any(|w| w == enrolled.secret.as_bytes())
    );

    // No code: asked for one (the header tells the CLI to prompt).
    let status = start(&mut admin, shell(), "Drucker", None).await;
    assert!(asks_for_code(&status), "{status:?}");
    // A wrong code.
    let valid: Vec<String> = (s0..=s0 + 2).map(|s| code(&secret, s)).collect();
    let bad = (0..1000)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap();
    let status = start(&mut admin, shell(), "Drucker", totp(&bad)).await;
    assert!(asks_for_code(&status), "{status:?}");
    assert!(status.message().contains("wrong"), "{status:?}");
    // The code that confirmed the enrolment is used: no replay.
    let status = start(&mut admin, shell(), "Drucker", totp(&code(&secret, s0))).await;
    assert!(status.message().contains("used already"), "{status:?}");

    // The next code passes the step-up; the device is offline, so the
    // start ends UNAVAILABLE, after the step-up was recorded.
    let next = code(&secret, s0 + 1);
    let status = start(&mut admin, shell(), "Drucker", totp(&next)).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Same kind and reason within the grace: no code needed (fan-out).
    let status = start(&mut admin, shell(), "Drucker", None).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The same code again for the same kind and reason: within the grace.
    let status = start(&mut admin, shell(), "Drucker", totp(&next)).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Another reason, or another kind: a new code is needed, and the used
    // one does not count again.
    let status = start(&mut admin, shell(), "Beamer", None).await;
    assert!(asks_for_code(&status), "{status:?}");
    let status = start(&mut admin, exec(), "Drucker", None).await;
    assert!(asks_for_code(&status), "{status:?}");
    let status = start(&mut admin, shell(), "Beamer", totp(&next)).await;
    assert!(status.message().contains("used already"), "{status:?}");

    // The method is in the session rows ...
    let rows = recorded(&mut admin).await;
    let methods: Vec<&str> = rows.iter().map(|(_, m, _)| m.as_str()).collect();
    assert_eq!(methods, ["totp-grace", "totp-grace", "totp"], "{rows:?}");
    // ... and in the audit: the starts refused for the step-up, too.
    let entries = admin
        .audit
        .list_audit_events(ListAuditEventsRequest {
            action_prefix: "session.denied".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let step_up_refusals = entries
        .iter()
        .filter(|e| e.details.contains("second factor") || e.details.contains("code"))
        .count();
    assert!(step_up_refusals >= 7, "{entries:#?}");

    // Replacing the active secret needs a current code from it.
    let status = admin
        .sessions
        .enroll_totp(EnrollTotpRequest::default())
        .await
        .unwrap_err();
    assert!(asks_for_code(&status), "{status:?}");
    let audit = admin
        .audit
        .list_audit_events(ListAuditEventsRequest {
            action_prefix: "mfa.".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let outcomes: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("mfa.enroll", "denied"),
            ("mfa.confirm", "ok"),
            ("mfa.enroll", "ok")
        ]
    );
}

#[tokio::test]
async fn capabilities_not_named_need_no_code() {
    let server = InProcessServer::start_with(|config| {
        config.sessions.require_mfa = vec!["shell".into()];
    })
    .await;
    server.create_school("kus", "kus012").await;
    let token = server.enrollment_token("kus012", 1).await;
    server.enroll_device(token, HOST).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let status = start(&mut admin, exec(), "Update", None).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let rows = recorded(&mut admin).await;
    assert_eq!(rows[0].1, "");
}
