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
        csv.body
            .contains("\"konformitaet_schule\",\"kus\",\"kus012\",,,\"geraete\",3\r\n"),
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
