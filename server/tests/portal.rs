//! The web portal over real HTTPS (plain HTTP-level tests, cheaper than the
//! browser test): login, sessions, CSRF, security headers, and that every
//! page applies the same tenant checks as gRPC.

mod common;

use common::portal::{PASSWORD, Portal, cookie_pair};
use sha2::Digest;

#[tokio::test]
async fn pages_need_a_session_and_carry_the_security_headers() {
    let p = Portal::start().await;
    for path in ["/", "/konformitaet", "/tickets", "/melden", "/bericht.csv"] {
        let a = p.request("GET", path, None, None).await;
        assert_eq!(a.status, 303, "{path}");
        assert_eq!(a.header("location"), Some("/anmelden"), "{path}");
    }
    let login = p.request("GET", "/anmelden", None, None).await;
    assert_eq!(login.status, 200);
    let csp = login.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(login.header("x-frame-options"), Some("DENY"));
    assert_eq!(login.header("cache-control"), Some("no-store"));
    assert_eq!(login.header("x-content-type-options"), Some("nosniff"));
    assert!(!login.body.contains("<script"), "no script anywhere");
    let cookie = login.set_cookies()[0];
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
}

#[tokio::test]
async fn login_sets_a_strict_session_cookie_and_logout_ends_it() {
    let p = Portal::start().await;
    let page = p.request("GET", "/anmelden", None, None).await;
    let login_cookie = cookie_pair(page.set_cookies()[0]);
    let csrf = page.csrf();
    // A wrong password: 401, no session.
    let wrong = p
        .request(
            "POST",
            "/anmelden",
            Some(&login_cookie),
            Some(&[
                ("csrf", &csrf),
                ("name", "koord-kus"),
                ("password", "falsch-falsch-falsch"),
            ]),
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Benutzername oder Passwort ist falsch"));
    assert!(
        wrong
            .set_cookies()
            .iter()
            .all(|c| !c.starts_with("__Host-sf_session"))
    );
    // An unknown user answers the same.
    let unknown = p
        .request(
            "POST",
            "/anmelden",
            Some(&login_cookie),
            Some(&[("csrf", &csrf), ("name", "niemand"), ("password", PASSWORD)]),
        )
        .await;
    assert_eq!(unknown.status, 401);
    // The login form itself needs its token.
    let forged = p
        .request(
            "POST",
            "/anmelden",
            None,
            Some(&[
                ("csrf", &csrf),
                ("name", "koord-kus"),
                ("password", PASSWORD),
            ]),
        )
        .await;
    assert_eq!(forged.status, 403);

    let right = p
        .request(
            "POST",
            "/anmelden",
            Some(&login_cookie),
            Some(&[
                ("csrf", &csrf),
                ("name", "koord-kus"),
                ("password", PASSWORD),
            ]),
        )
        .await;
    assert_eq!(right.status, 303);
    let set = right
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-sf_session="))
        .unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    let session = cookie_pair(set);
    let home = p.get("/", &session).await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("koord-kus"));
    // Only the hash of the session id is stored.
    let id = session.split_once('=').unwrap().1;
    let hash = hex::encode(sha2::Sha256::digest(id.as_bytes()));
    assert!(p.server.store().web_session(id).await.unwrap().is_none());
    assert!(p.server.store().web_session(&hash).await.unwrap().is_some());

    let csrf = home.csrf();
    let out = p.post("/abmelden", &session, &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(p.get("/", &session).await.status, 303, "logged out");
    assert!(p.server.store().web_session(&hash).await.unwrap().is_none());
}

#[tokio::test]
async fn failed_logins_are_limited_per_peer() {
    let p = Portal::start_with(|c| c.limits.auth_failures_per_peer_per_minute = 3).await;
    let page = p.request("GET", "/anmelden", None, None).await;
    let login_cookie = cookie_pair(page.set_cookies()[0]);
    let csrf = page.csrf();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let a = p
            .request(
                "POST",
                "/anmelden",
                Some(&login_cookie),
                Some(&[
                    ("csrf", &csrf),
                    ("name", "koord-kus"),
                    ("password", "falsch-falsch-falsch"),
                ]),
            )
            .await;
        statuses.push(a.status);
    }
    // Three failures a minute are allowed; the fourth is refused.
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    // Even the right password is refused while the peer is over its limit.
    let right = p
        .request(
            "POST",
            "/anmelden",
            Some(&login_cookie),
            Some(&[
                ("csrf", &csrf),
                ("name", "koord-kus"),
                ("password", PASSWORD),
            ]),
        )
        .await;
    assert_eq!(right.status, 429);
    assert!(right.header("retry-after").is_some());
}

#[tokio::test]
async fn an_idle_session_ends() {
    let p = Portal::start().await;
    let session = p.login("koord-kus").await;
    assert_eq!(p.get("/", &session).await.status, 200);
    // Idle for 31 minutes (the default timeout is 30): moved back in the
    // store rather than slept.
    let id = session.split_once('=').unwrap().1;
    let hash = hex::encode(sha2::Sha256::digest(id.as_bytes()));
    let long_ago = schoolfleet_server::storage::now_millis() - 31 * 60_000;
    p.server
        .store()
        .touch_web_session(&hash, long_ago)
        .await
        .unwrap();
    assert_eq!(p.get("/", &session).await.status, 303);
    assert!(p.server.store().web_session(&hash).await.unwrap().is_none());
}

#[tokio::test]
async fn every_form_needs_the_sessions_csrf_token() {
    let p = Portal::start().await;
    let teacher = p.login("lehrerin-kus").await;
    let other = p.login("lehrer-kus").await;
    let device = p.devices["kus012-r204-pc01"].clone();
    let form = |csrf: &'static str| {
        vec![
            ("csrf", csrf),
            ("category", "hardware"),
            ("text", "Bildschirm bleibt schwarz"),
        ]
    };
    // No token, and another session's token: refused, nothing created.
    let mut none = form("");
    none.push(("device", &device));
    assert_eq!(p.post("/melden", &teacher, &none).await.status, 403);
    let others_csrf = p.get("/melden?q=r204", &other).await.csrf();
    let mut foreign: Vec<(&str, &str)> = vec![
        ("csrf", &others_csrf),
        ("category", "hardware"),
        ("text", "Bildschirm bleibt schwarz"),
        ("device", &device),
    ];
    assert_eq!(p.post("/melden", &teacher, &foreign).await.status, 403);
    assert_eq!(
        p.get("/meine-meldungen", &teacher)
            .await
            .body
            .matches("SUP-")
            .count(),
        0
    );
    // With its own token it works.
    let own = p.get("/melden?q=r204", &teacher).await.csrf();
    foreign[0] = ("csrf", &own);
    let created = p.post("/melden", &teacher, &foreign).await;
    assert_eq!(created.status, 303, "{}", created.body);
    // Logout without the token does not log out.
    assert_eq!(p.post("/abmelden", &teacher, &[]).await.status, 403);
    assert_eq!(p.get("/", &teacher).await.status, 200);
}

#[tokio::test]
async fn a_teacher_reports_and_sees_only_their_own_tickets_and_the_teachers_articles() {
    let p = Portal::start().await;
    let teacher = p.login("lehrerin-kus").await;
    // Devices of their school only, found by room.
    let found = p.get("/melden?q=r204", &teacher).await;
    assert!(found.body.contains("kus012-r204-pc01"));
    assert!(
        !found.body.contains("kl001-r204-pc01"),
        "another county's device"
    );
    let csrf = found.csrf();
    let created = p
        .post(
            "/melden",
            &teacher,
            &[
                ("csrf", &csrf),
                ("device", &p.devices["kus012-r204-pc01"]),
                ("category", "hardware"),
                (
                    "text",
                    "Bildschirm bleibt schwarz <script>alert(1)</script>",
                ),
            ],
        )
        .await;
    assert_eq!(created.status, 303);
    let location = created.header("location").unwrap().to_owned();
    let own = p.get(&location, &teacher).await;
    assert_eq!(own.status, 200);
    assert!(
        own.body
            .contains("Bildschirm bleibt schwarz &lt;script&gt;"),
        "escaped"
    );
    assert!(!own.body.contains("<script>alert"));
    // The technician sees it in the queue and comments; the teacher answers.
    let tech = p.login("technik-kus").await;
    let key = location.rsplit('/').next().unwrap().to_owned();
    let ticket = p.get(&format!("/tickets/{key}"), &tech).await;
    assert_eq!(ticket.status, 200);
    let csrf = ticket.csrf();
    let commented = p
        .post(
            &format!("/tickets/{key}/kommentar"),
            &tech,
            &[("csrf", &csrf), ("text", "Ist das Kabel fest?")],
        )
        .await;
    assert_eq!(commented.status, 303);
    let own = p.get(&location, &teacher).await;
    assert!(own.body.contains("Ist das Kabel fest?"));
    let csrf = own.csrf();
    let answered = p
        .post(
            &format!("{location}/antwort"),
            &teacher,
            &[("csrf", &csrf), ("text", "Ja, fest.")],
        )
        .await;
    assert_eq!(answered.status, 303);
    assert!(
        p.get(&format!("/tickets/{key}"), &tech)
            .await
            .body
            .contains("Ja, fest.")
    );

    // Another teacher of the same school sees neither this ticket nor the
    // admin's tickets; a teacher reaches no technician or coordinator page.
    let colleague = p.login("lehrer-kus").await;
    assert_eq!(p.get(&location, &colleague).await.status, 404);
    let list = p.get("/meine-meldungen", &colleague).await;
    assert!(!list.body.contains(&key));
    let mine = p.get("/meine-meldungen", &teacher).await;
    assert!(mine.body.contains(&key));
    assert!(
        !mine.body.contains("Drucker Kusel"),
        "the admin's ticket is not theirs"
    );
    for path in [
        format!("/tickets/{key}"),
        "/tickets".into(),
        "/konformitaet".into(),
        "/bericht.csv".into(),
        format!("/geraete/{}", p.devices["kus012-r204-pc01"]),
        "/suche?q=Drucker".into(),
        "/schule/kus012".into(),
    ] {
        let a = p.get(&path, &teacher).await;
        assert!(matches!(a.status, 403 | 404), "{path}: {}", a.status);
    }
    // Articles: the teachers' one, never the team's.
    let kb = p.get("/wissen", &teacher).await;
    assert!(kb.body.contains("WLAN im Klassenraum verbinden"));
    assert!(!kb.body.contains("Admin-Passw"));
    let team_id = p
        .server
        .store()
        .list_articles_changed(0, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.visibility == "team")
        .unwrap()
        .id;
    assert_eq!(
        p.get(&format!("/wissen/{team_id}"), &teacher).await.status,
        404
    );
}

#[tokio::test]
async fn a_kusel_coordinator_never_sees_kaiserslautern() {
    let p = Portal::start().await;
    let kus = p.login("koord-kus").await;
    let kl_device = p.devices["kl001-r204-pc01"].clone();
    // Pages.
    for path in [
        "/konformitaet".to_owned(),
        "/konformitaet/regel/RAM-01".into(),
        "/bericht".into(),
        "/beschaffung".into(),
        "/tickets?status=alle".into(),
        "/suche?q=Drucker".into(),
        "/".into(),
    ] {
        let a = p.get(&path, &kus).await;
        assert_eq!(a.status, 200, "{path}");
        assert!(
            !a.body.contains("kl001"),
            "{path} shows a Kaiserslautern school"
        );
        assert!(
            !a.body.contains("Kaiserslautern druckt"),
            "{path} shows a KL ticket"
        );
    }
    // The Kusel data is there (so the absence above means something).
    assert!(
        p.get("/konformitaet/regel/RAM-01", &kus)
            .await
            .body
            .contains("kus012-r204-pc01")
    );
    assert!(
        p.get("/suche?q=Drucker", &kus)
            .await
            .body
            .contains("Drucker Kusel")
    );
    // Naming Kaiserslautern directly: not found.
    for path in [
        "/konformitaet?county=kl".to_owned(),
        "/konformitaet?school=kl001".into(),
        "/bericht?county=kl".into(),
        "/bericht.csv?county=kl".into(),
        "/beschaffung?county=kl".into(),
        "/schule/kl001".into(),
        format!("/geraete/{kl_device}"),
        "/geraete/kl001-r204-pc01".into(),
        "/tickets/SUP-1001".into(),
    ] {
        assert_eq!(p.get(&path, &kus).await.status, 404, "{path}");
    }
    // The CSV export: numbers as numbers, no Kaiserslautern row.
    let csv = p.get("/bericht.csv", &kus).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(!csv.body.contains("\"kl"), "{}", csv.body);
    assert!(
        csv.body.contains(
            "\"konformitaet_regel\",\"kus\",\"kus012\",\"RAM-01\",,,,\"nicht_erfuellt\",1\r\n"
        ),
        "{}",
        csv.body
    );
    // The Kaiserslautern coordinator sees theirs, so the data exists.
    let kl = p.login("koord-kl").await;
    assert!(p.get("/bericht.csv", &kl).await.body.contains("\"kl001\""));
    assert_eq!(
        p.get(&format!("/geraete/{kl_device}"), &kl).await.status,
        200
    );
}

#[tokio::test]
async fn a_session_cookie_of_another_user_grants_only_that_users_rights() {
    let p = Portal::start().await;
    let teacher = p.login("lehrerin-kus").await;
    // A made-up cookie grants nothing.
    let forged = format!("__Host-sf_session={}", "ab".repeat(32));
    assert_eq!(p.get("/konformitaet", &forged).await.status, 303);
    // The teacher's cookie stays the teacher's: no coordinator page, no
    // technician page, whatever the request says.
    assert_eq!(
        p.get("/konformitaet?county=kus", &teacher).await.status,
        403
    );
    assert_eq!(p.get("/tickets", &teacher).await.status, 403);
    // Changing the password ends every session of that user.
    p.admin
        .users
        .clone()
        .set_web_password(schoolfleet_proto::v1::SetWebPasswordRequest {
            user: "lehrerin-kus".into(),
            password: "ein-ganz-neues-passwort".into(),
        })
        .await
        .unwrap();
    assert_eq!(p.get("/", &teacher).await.status, 303);
}

#[tokio::test]
async fn technician_queue_ticket_and_device_pages() {
    let p = Portal::start().await;
    let tech = p.login("technik-kus").await;
    let queue = p.get("/tickets?county=kus&category=drucker", &tech).await;
    assert_eq!(queue.status, 200);
    assert!(queue.body.contains("Drucker Kusel"));
    let device = p.get("/geraete/kus012-r204-pc01", &tech).await;
    assert_eq!(device.status, 200);
    assert!(device.body.contains(&format!(
        "schoolfleet shell {}",
        p.devices["kus012-r204-pc01"]
    )));
    assert!(device.body.contains("Mindestens 8 GB Arbeitsspeicher"));
    assert!(device.body.contains("Esprimo P757"));
    // A school leader sees their school with sessions (who, when, why).
    let leader = p.login("schulleitung-kus012").await;
    let school = p.get("/schule/kus012", &leader).await;
    assert_eq!(school.status, 200, "{}", school.body);
    assert!(school.body.contains("kus012-r105-pc01"));
    assert!(school.body.contains("Fernwartung: wer, wann, warum"));
    assert_eq!(p.get("/schule/kl001", &leader).await.status, 404);
    // Procurement: the TPM 1.2 device is not ready for Windows 11.
    let coord = p.login("koord-kus").await;
    let proc = p.get("/beschaffung", &coord).await;
    assert!(proc.body.contains("kein TPM 2.0"), "{}", proc.body);
    assert!(
        proc.body.contains("CPU nicht unterstützt"),
        "the agent's own check"
    );
    // The trend chart is an SVG drawn on the server.
    let svg = p.get("/konformitaet/trend.svg?county=kus", &coord).await;
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert!(svg.body.starts_with("<svg"));
}

/// Password, then (when the user has an active TOTP) the code: returns the
/// answer to the code form and the cookies it was sent with.
async fn password_step(p: &Portal, user: &str) -> (String, String) {
    let page = p.request("GET", "/anmelden", None, None).await;
    let login_cookie = cookie_pair(page.set_cookies()[0]);
    let csrf = page.csrf();
    let answer = p
        .request(
            "POST",
            "/anmelden",
            Some(&login_cookie),
            Some(&[("csrf", &csrf), ("name", user), ("password", PASSWORD)]),
        )
        .await;
    assert_eq!(answer.status, 200, "the code form, not a session");
    assert!(answer.body.contains("Code aus der Authenticator-App"));
    assert!(
        answer
            .set_cookies()
            .iter()
            .all(|c| !c.starts_with("__Host-sf_session")),
        "no session before the code"
    );
    let pending = answer
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-sf_2fa="))
        .expect("the pending login cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(pending.contains(attribute), "{pending}");
    }
    (
        format!("{login_cookie}; {}", cookie_pair(pending)),
        answer.csrf(),
    )
}

async fn code_step(p: &Portal, cookies: &str, csrf: &str, code: &str) -> common::portal::Answer {
    p.request(
        "POST",
        "/anmelden/code",
        Some(cookies),
        Some(&[("csrf", csrf), ("code", code)]),
    )
    .await
}

#[tokio::test]
async fn a_user_with_totp_needs_a_single_use_code_after_the_password() {
    use schoolfleet_server::auth::mfa;
    let p = Portal::start().await;
    let (secret, confirmed_step) = p.enrol_totp("technik-kus").await;
    let code = |step: u64| mfa::format_code(mfa::code_at(&secret, step));
    // Users without a second factor still log in with the password alone.
    p.login("koord-kus").await;

    let (cookies, csrf) = password_step(&p, "technik-kus").await;
    // The code the confirmation used is spent.
    let reused = code_step(&p, &cookies, &csrf, &code(confirmed_step)).await;
    assert_eq!(reused.status, 401, "{}", reused.body);
    assert!(reused.body.contains("schon verwendet"));
    // A wrong code: refused, no session.
    let now = mfa::step_of(schoolfleet_server::storage::now_millis() as u64 / 1000);
    let valid: Vec<String> = (now - 1..=now + 1).map(code).collect();
    let wrong = (0..1_000_000u32)
        .map(mfa::format_code)
        .find(|c| !valid.contains(c))
        .unwrap();
    let refused = code_step(&p, &cookies, &csrf, &wrong).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .set_cookies()
            .iter()
            .all(|c| !c.starts_with("__Host-sf_session"))
    );
    // Without the pending cookie, or with another browser's form token,
    // the code step starts over.
    let login_only = cookies.split("; ").next().unwrap();
    let fresh = code_step(&p, login_only, &csrf, &code(confirmed_step + 1)).await;
    assert_eq!(fresh.status, 303);
    assert_eq!(fresh.header("location"), Some("/anmelden"));
    let forged = code_step(&p, &cookies, &"ab".repeat(32), &code(confirmed_step + 1)).await;
    assert_eq!(forged.status, 403, "the double-submit token is checked");

    // The next code: a session.
    let next = code(confirmed_step + 1);
    let right = code_step(&p, &cookies, &csrf, &next).await;
    assert_eq!(right.status, 303, "{}", right.body);
    let session = cookie_pair(
        right
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("__Host-sf_session="))
            .unwrap(),
    );
    let home = p.get("/", &session).await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("technik-kus"));
    // The same code a second time (a replayed form): refused.
    let (cookies, csrf) = password_step(&p, "technik-kus").await;
    let replay = code_step(&p, &cookies, &csrf, &next).await;
    assert_eq!(replay.status, 401, "a code is used once");
    // The login is audited with its method.
    let audit = p.server.store().list_audit(1000).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "web.login" && e.details.contains("method=password+totp")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn wrong_codes_are_limited_like_passwords() {
    use schoolfleet_server::auth::mfa;
    let p = Portal::start_with(|c| {
        c.limits.auth_failures_per_token_per_minute = 3;
        c.limits.auth_failures_per_peer_per_minute = 100;
    })
    .await;
    let (secret, step) = p.enrol_totp("technik-kus").await;
    let (cookies, csrf) = password_step(&p, "technik-kus").await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        // The confirmation's code again: spent, so a failure.
        let spent = mfa::format_code(mfa::code_at(&secret, step));
        statuses.push(code_step(&p, &cookies, &csrf, &spent).await.status);
    }
    assert!(statuses.starts_with(&[401, 401]), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // Now even the right code waits: the limit is per user, not per code.
    let right = mfa::format_code(mfa::code_at(&secret, step + 1));
    let answer = code_step(&p, &cookies, &csrf, &right).await;
    assert_eq!(answer.status, 429);
    assert!(answer.header("retry-after").is_some());
}

#[tokio::test]
async fn wrong_passwords_for_a_name_do_not_use_up_its_code_attempts() {
    use schoolfleet_server::auth::mfa;
    let p = Portal::start_with(|c| {
        c.limits.auth_failures_per_token_per_minute = 3;
        c.limits.auth_failures_per_peer_per_minute = 100;
    })
    .await;
    let (secret, step) = p.enrol_totp("technik-kus").await;
    // Someone who knows only the name tries passwords, more than the limit.
    let page = p.request("GET", "/anmelden", None, None).await;
    let login_cookie = cookie_pair(page.set_cookies()[0]);
    let csrf = page.csrf();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let a = p
            .request(
                "POST",
                "/anmelden",
                Some(&login_cookie),
                Some(&[
                    ("csrf", &csrf),
                    ("name", "technik-kus"),
                    ("password", "falsch-falsch-falsch"),
                ]),
            )
            .await;
        statuses.push(a.status);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // The user with the right password and code still logs in.
    let (cookies, csrf) = password_step(&p, "technik-kus").await;
    let right = mfa::format_code(mfa::code_at(&secret, step + 1));
    let answer = code_step(&p, &cookies, &csrf, &right).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(
        answer
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("__Host-sf_session="))
    );
}

#[tokio::test]
async fn a_web_login_code_leaves_the_session_grace_window_open() {
    use schoolfleet_proto::v1::{StepUp, TotpCode, step_up};
    use schoolfleet_server::auth::{Principal, mfa};
    use schoolfleet_server::sessions::{policy::Kind, step_up as su};
    let p = Portal::start_with(|c| {
        c.sessions.require_mfa = vec!["shell".into()];
        c.sessions.mfa_grace = std::time::Duration::from_secs(300);
    })
    .await;
    let (secret, step) = p.enrol_totp("technik-kus").await;
    let code = |s: u64| {
        Some(StepUp {
            method: Some(step_up::Method::Totp(TotpCode {
                code: mfa::format_code(mfa::code_at(&secret, s)),
            })),
        })
    };
    let user = p
        .server
        .store()
        .get_user("technik-kus")
        .await
        .unwrap()
        .unwrap();
    let principal = Principal::from_user(&user);
    let state = &p.server.state;
    // Two codes are needed within the verifier's window (one step either
    // side of now): free the confirmation's step again.
    let store = p.server.store();
    let mut record = store.get_user_mfa(&user.id).await.unwrap().unwrap();
    record.last_step = step as i64 - 1;
    store.put_user_mfa(&record).await.unwrap();
    // A session start with a code opens the grace window (a fan-out).
    let method = su::check(
        state,
        &principal,
        Kind::Shell,
        "Drucker",
        code(step).as_ref(),
    )
    .await
    .unwrap();
    assert_eq!(method, "totp");
    // A web login with the next code ...
    let (cookies, csrf) = password_step(&p, "technik-kus").await;
    let right = mfa::format_code(mfa::code_at(&secret, step + 1));
    assert_eq!(code_step(&p, &cookies, &csrf, &right).await.status, 303);
    // ... leaves it open: the fan-out's next start needs no new code.
    let method = su::check(state, &principal, Kind::Shell, "Drucker", None).await;
    assert_eq!(method.as_deref(), Ok("totp-grace"), "{method:?}");
    // And the login's code is spent for session starts, too.
    let again = su::check(
        state,
        &principal,
        Kind::Shell,
        "Beamer",
        code(step + 1).as_ref(),
    )
    .await;
    assert!(again.is_err(), "{again:?}");
}

#[tokio::test]
async fn service_refusals_are_german_in_the_portal_and_english_over_grpc() {
    let p = Portal::start().await;
    let leader = p.login("schulleitung-kus012").await;
    let csrf = p.get("/schule/kus012", &leader).await.csrf();
    let post = |class: &'static str| {
        let (p, leader, csrf) = (&p, &leader, &csrf);
        async move {
            p.post(
                "/schule/kus012/einwilligung",
                leader,
                &[
                    ("csrf", csrf),
                    ("device_class", class),
                    ("consent", "notify"),
                ],
            )
            .await
        }
    };
    let unknown = post("gibtsnicht").await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(
        unknown
            .body
            .contains("Die Geräteklasse „gibtsnicht“ gibt es nicht."),
        "{}",
        unknown.body
    );
    assert!(!unknown.body.contains("not found"), "{}", unknown.body);
    let invalid = post("Keine Klasse!").await;
    assert_eq!(invalid.status, 400, "{}", invalid.body);
    assert!(invalid.body.contains("ist ungültig"), "{}", invalid.body);
    assert!(!invalid.body.contains("is invalid"), "{}", invalid.body);
    // gRPC keeps its English text.
    let status = p
        .admin
        .sessions
        .clone()
        .set_consent_policy(schoolfleet_proto::v1::SetConsentPolicyRequest {
            school_id: "kus012".into(),
            device_class: "gibtsnicht".into(),
            consent: "notify".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "device class \"gibtsnicht\" not found");
}

#[tokio::test]
async fn a_school_lead_sees_the_school_and_sets_its_consent_floor() {
    let p = Portal::start().await;
    let leader = p.login("schulleitung-kus012").await;
    let page = p.get("/schule/kus012", &leader).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for text in [
        "kus012-r105-pc01",
        "Drucker Kusel druckt nicht",
        "Fernwartung: wer, wann, warum",
        "Einwilligung bei Fernwartung",
        "Einstellung speichern",
    ] {
        assert!(page.body.contains(text), "{text}");
    }
    let csrf = page.csrf();
    // Without the token: refused, nothing stored.
    let forged = p
        .post(
            "/schule/kus012/einwilligung",
            &leader,
            &[("consent", "notify")],
        )
        .await;
    assert_eq!(forged.status, 403);
    let store = p.server.store();
    assert!(store.consent_floors("kus012").await.unwrap().is_empty());
    // With it: the policy and the floor, through the gRPC API's function.
    let set = p
        .post(
            "/schule/kus012/einwilligung",
            &leader,
            &[("csrf", &csrf), ("device_class", ""), ("consent", "notify")],
        )
        .await;
    assert_eq!(set.status, 303, "{}", set.body);
    let policies = store
        .list_consent_policies(Some(&["kus012".into()]))
        .await
        .unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].consent, "notify");
    assert_eq!(policies[0].updated_by, "user:schulleitung-kus012");
    let floors = store.consent_floors("kus012").await.unwrap();
    assert_eq!(floors[0].floor, "notify");
    let shown = p.get("/schule/kus012", &leader).await;
    assert!(shown.body.contains("mit Hinweis an die angemeldete Person"));
    // The floor holds for the admin over gRPC: "none" would be below it.
    let below = p
        .admin
        .sessions
        .clone()
        .set_consent_policy(schoolfleet_proto::v1::SetConsentPolicyRequest {
            school_id: "kus012".into(),
            device_class: String::new(),
            consent: "none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(below.code(), tonic::Code::PermissionDenied, "{below:?}");
    // An unknown mode is refused.
    let bad = p
        .post(
            "/schule/kus012/einwilligung",
            &leader,
            &[("csrf", &csrf), ("consent", "egal")],
        )
        .await;
    assert_eq!(bad.status, 400);
    // Another school: not found, and nothing set there.
    assert_eq!(p.get("/schule/kl001", &leader).await.status, 404);
    let other = p
        .post(
            "/schule/kl001/einwilligung",
            &leader,
            &[("csrf", &csrf), ("consent", "prompt")],
        )
        .await;
    assert_eq!(other.status, 404);
    assert!(store.consent_floors("kl001").await.unwrap().is_empty());
    // The read-only school account reads the page, but has no form and
    // cannot post one.
    let reader = p.login("leser-kus012").await;
    let read = p.get("/schule/kus012", &reader).await;
    assert_eq!(read.status, 200);
    assert!(read.body.contains("kus012-r105-pc01"));
    assert!(!read.body.contains("Einstellung speichern"));
    let csrf = read.csrf();
    let denied = p
        .post(
            "/schule/kus012/einwilligung",
            &reader,
            &[("csrf", &csrf), ("consent", "none")],
        )
        .await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        store
            .list_consent_policies(Some(&["kus012".into()]))
            .await
            .unwrap()[0]
            .consent,
        "notify"
    );
}

#[tokio::test]
async fn pages_show_german_reasons_and_berlin_time() {
    let p = Portal::start().await;
    let coord = p.login("koord-kus").await;
    let rule = p.get("/konformitaet/regel/RAM-01", &coord).await;
    assert!(
        rule.body
            .contains("Arbeitsspeicher 4.0 GiB, mindestens 8 GiB gefordert"),
        "{}",
        rule.body
    );
    assert!(!rule.body.contains("GiB &lt; 8 GiB"), "no English reason");
    let tech = p.login("technik-kus").await;
    let device = p.get("/geraete/kus012-r204-pc01", &tech).await;
    assert!(device.body.contains("mindestens 8 GiB gefordert"));
    // Times: Europe/Berlin, never UTC.
    let ticket = p
        .server
        .store()
        .list_tickets(&schoolfleet_server::storage::TicketQuery {
            filter: schoolfleet_server::storage::TenantFilter::everything(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.title == "Drucker Kusel druckt nicht")
        .unwrap();
    let berlin = chrono::DateTime::from_timestamp_millis(ticket.created_at)
        .unwrap()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .format("%d.%m.%Y %H:%M")
        .to_string();
    let page = p.get(&format!("/tickets/{}", ticket.key()), &tech).await;
    assert!(page.body.contains(&berlin), "{berlin}: {}", page.body);
    assert!(!page.body.contains("UTC"));
}

#[tokio::test]
async fn the_quarterly_report_is_per_quarter_from_the_daily_snapshots() {
    use chrono::Datelike;
    let p = Portal::start().await;
    let coord = p.login("koord-kus").await;
    // The running quarter and the last complete one, in Berlin.
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive();
    let q = (today.month() - 1) / 3 + 1;
    let running = format!("{}-Q{q}", today.year());
    let (py, pq) = if q == 1 {
        (today.year() - 1, 4)
    } else {
        (today.year(), q - 1)
    };
    let last = format!("{py}-Q{pq}");
    // Two snapshots in the last quarter: its first month and its last day.
    let first_month = chrono::NaiveDate::from_ymd_opt(py, (pq - 1) * 3 + 1, 15).unwrap();
    let last_day = chrono::NaiveDate::from_ymd_opt(py, (pq - 1) * 3 + 3, 1)
        .unwrap()
        .checked_add_months(chrono::Months::new(1))
        .unwrap()
        .pred_opt()
        .unwrap();
    let store = p.server.store();
    for (day, devices, compliant) in [(first_month, 10, 4), (last_day, 10, 7)] {
        store
            .upsert_compliance_snapshot(
                &day.format("%Y-%m-%d").to_string(),
                1,
                &[
                    schoolfleet_server::storage::SchoolCompliance {
                        county_id: "kus".into(),
                        school_id: "kus012".into(),
                        devices,
                        compliant,
                    },
                    schoolfleet_server::storage::SchoolCompliance {
                        county_id: "kl".into(),
                        school_id: "kl001".into(),
                        devices: 99,
                        compliant: 1,
                    },
                ],
            )
            .await
            .unwrap();
    }
    // Default: the last complete quarter, its end and its trend.
    let report = p.get("/bericht", &coord).await;
    assert_eq!(report.status, 200);
    assert!(report.body.contains(&format!("Quartalsbericht {last}")));
    assert!(
        report
            .body
            .contains(&format!("Tageswert vom {}", last_day.format("%d.%m.%Y")))
    );
    assert!(report.body.contains("70,0 %"), "end of quarter: 7 of 10");
    assert!(report.body.contains("40,0 %"), "the trend's first point");
    assert!(report.body.contains(&format!("{running} (laufend)")));
    assert!(!report.body.contains("kl001"));
    let csv = p.get("/bericht.csv", &coord).await.body;
    let end = last_day.format("%Y-%m-%d");
    for line in [
        format!("\"konformitaet_quartalsende\",\"kus\",\"kus012\",,,,\"{end}\",\"konform\",7\r\n"),
        format!(
            "\"konformitaet_quartalsende\",\"kus\",\"kus012\",,,,\"{end}\",\"anteil_konform\",0.7000\r\n"
        ),
        format!(
            "\"konformitaet_verlauf\",,,,,,\"{}\",\"geraete\",10\r\n",
            first_month.format("%Y-%m-%d")
        ),
    ] {
        assert!(csv.contains(&line), "{line} in {csv}");
    }
    assert!(!csv.contains("\"kl"), "{csv}");
    // German reasons in the report and its CSV.
    assert!(report.body.contains("mindestens 8 GiB gefordert"));
    assert!(csv.contains("\"gruende\",,,\"RAM-01\",,\"Arbeitsspeicher 4.0 GiB, mindestens 8 GiB gefordert\",,\"geraete\","), "{csv}");
    // The running quarter: today's snapshot (the fixture's), tickets opened.
    let now = p.get(&format!("/bericht?quartal={running}"), &coord).await;
    assert!(now.body.contains("läuft noch"));
    let csv = p
        .get(&format!("/bericht.csv?quartal={running}"), &coord)
        .await
        .body;
    assert!(
        csv.contains("\"tickets\",\"kus\",,,\"drucker\",,,\"eroeffnet\",1\r\n"),
        "{csv}"
    );
    // In the last quarter no ticket was opened yet.
    assert!(
        !p.get(&format!("/bericht.csv?quartal={last}"), &coord)
            .await
            .body
            .contains("\"eroeffnet\",1")
    );
    // A malformed quarter is refused.
    assert_eq!(p.get("/bericht?quartal=2026-Q5", &coord).await.status, 400);
}
