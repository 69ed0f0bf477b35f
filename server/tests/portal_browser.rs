//! The portal in a real browser: Debian's chromium driven through
//! chromedriver (WebDriver) from fantoccini, headless, against the
//! in-process server. A Kusel coordinator, a teacher, a technician and a
//! school leader each walk their main flow; the test proves the tenant
//! wall, the teacher's narrow view, CSRF refusal and that a session cookie
//! of another user grants only that user's rights.
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them). Without
//! them the test is skipped, except in CI (`CI=true`), where it fails.
//! The technician logs in with a second factor (TOTP code computed here),
//! the school leader sets the school's consent floor.
//! Screenshots of each main page go to `$SCHOOLFLEET_PORTAL_SCREENSHOTS`
//! when set (never into the repository).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::portal::{PASSWORD, Portal};
use fantoccini::{Client, ClientBuilder, Locator};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver {
    child: Child,
    port: u16,
    _profiles: tempfile::TempDir,
    profiles: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Option<Driver> {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("CI").is_err(),
            "chromium and chromium-driver must be installed in CI (see .ci/run)"
        );
        eprintln!("skipping the browser test: install chromium and chromium-driver");
        return None;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        port,
        profiles: profiles.path().to_owned(),
        _profiles: profiles,
    };
    common::eventually(
        Duration::from_secs(20),
        "chromedriver to listen",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
    Some(driver)
}

/// A fresh headless browser with its own profile.
async fn browser(driver: &Driver, name: &str) -> Client {
    let profile = driver.profiles.join(name);
    let mut caps = serde_json::Map::new();
    caps.insert("acceptInsecureCerts".into(), serde_json::json!(true));
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a chromedriver session")
}

async fn shot(client: &Client, name: &str) {
    let Ok(dir) = std::env::var("SCHOOLFLEET_PORTAL_SCREENSHOTS") else {
        return;
    };
    let png = client.screenshot().await.unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
}

/// Clicks `element` and waits until the page it was on is gone (its
/// `html` element went stale): the next page is then loading or loaded.
async fn click_and_wait(client: &Client, element: fantoccini::elements::Element) {
    let old = client.find(Locator::Css("html")).await.unwrap();
    element.click().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while old.tag_name().await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new page after the click"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn text(client: &Client) -> String {
    client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn login(client: &Client, base: &str, user: &str) {
    password_step(client, base, user).await;
    welcomed(client, user).await;
}

async fn welcomed(client: &Client, user: &str) {
    let body = text(client).await;
    assert!(
        body.contains(&format!("Willkommen, {user}")),
        "{user}: {body}"
    );
}

/// The login form: name and password, submitted.
async fn password_step(client: &Client, base: &str, user: &str) {
    client.goto(&format!("{base}/anmelden")).await.unwrap();
    client
        .find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    click_and_wait(
        client,
        client
            .find(Locator::Css("form button[type=submit]"))
            .await
            .unwrap(),
    )
    .await;
}

/// Types into the field with this id.
async fn type_into(client: &Client, id: &str, text: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

async fn submit(client: &Client, css: &str) {
    click_and_wait(client, client.find(Locator::Css(css)).await.unwrap()).await;
}

async fn click_link(client: &Client, label: &str) {
    let link = client
        .find(Locator::LinkText(label))
        .await
        .unwrap_or_else(|_| panic!("a link {label:?}"));
    click_and_wait(client, link).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_in_a_real_browser() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let p = Portal::start().await;
    let base = p.base.clone();

    // --- a Kusel coordinator ---
    let coord = browser(&driver, "koordination").await;
    coord.goto(&format!("{base}/anmelden")).await.unwrap();
    shot(&coord, "01-anmelden").await;
    login(&coord, &base, "koord-kus").await;
    shot(&coord, "02-start-koordination").await;
    click_link(&coord, "Konformität").await;
    let body = text(&coord).await;
    assert!(body.contains("Mindestens 8 GB Arbeitsspeicher"), "{body}");
    assert!(body.contains("kus012") && !body.contains("kl001"), "{body}");
    assert!(
        body.contains("W-KUS-1"),
        "the waiver with its expiry: {body}"
    );
    shot(&coord, "03-konformitaet-landkreis").await;
    click_link(&coord, "kus012").await;
    shot(&coord, "04-konformitaet-schule").await;
    click_link(&coord, "Mindestens 8 GB Arbeitsspeicher").await;
    let body = text(&coord).await;
    assert!(body.contains("kus012-r204-pc01"), "{body}");
    shot(&coord, "05-regel-fehlende-geraete").await;
    click_link(&coord, "Quartalsbericht").await;
    let body = text(&coord).await;
    assert!(
        body.contains("Tickets") && !body.contains("kl001"),
        "{body}"
    );
    shot(&coord, "06-quartalsbericht").await;
    click_link(&coord, "Beschaffung").await;
    let body = text(&coord).await;
    assert!(
        body.contains("kein TPM 2.0") && !body.contains("kl001"),
        "{body}"
    );
    shot(&coord, "07-beschaffung").await;
    click_link(&coord, "Suche").await;
    coord
        .find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys("Drucker")
        .await
        .unwrap();
    click_and_wait(
        &coord,
        coord.find(Locator::Css("main form button")).await.unwrap(),
    )
    .await;
    let body = text(&coord).await;
    assert!(body.contains("Drucker Kusel"), "{body}");
    assert!(!body.contains("Kaiserslautern druckt"), "{body}");
    shot(&coord, "08-suche").await;
    // Naming Kaiserslautern in the address finds nothing.
    coord
        .goto(&format!("{base}/konformitaet?county=kl"))
        .await
        .unwrap();
    assert!(text(&coord).await.contains("Nicht gefunden"));

    // --- a teacher reports a problem ---
    let teacher = browser(&driver, "lehrerin").await;
    login(&teacher, &base, "lehrerin-kus").await;
    shot(&teacher, "09-start-lehrkraft").await;
    click_link(&teacher, "Problem melden").await;
    teacher
        .find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys("r204")
        .await
        .unwrap();
    click_and_wait(
        &teacher,
        teacher
            .find(Locator::Css("form[role=search] button"))
            .await
            .unwrap(),
    )
    .await;
    let body = text(&teacher).await;
    assert!(
        body.contains("kus012-r204-pc01") && !body.contains("kl001"),
        "{body}"
    );
    teacher
        .find(Locator::Id("d0"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    teacher
        .find(Locator::Id("text"))
        .await
        .unwrap()
        .send_keys("Der Beamer zeigt kein Bild.")
        .await
        .unwrap();
    shot(&teacher, "10-problem-melden").await;
    click_and_wait(
        &teacher,
        teacher
            .find(Locator::Css("main form[method=post] button[type=submit]"))
            .await
            .unwrap(),
    )
    .await;
    let body = text(&teacher).await;
    assert!(body.contains("Der Beamer zeigt kein Bild."), "{body}");
    let key = teacher
        .current_url()
        .await
        .unwrap()
        .path()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(key.starts_with("SUP-"), "{key}");
    shot(&teacher, "11-meldung").await;
    click_link(&teacher, "Meine Meldungen").await;
    let body = text(&teacher).await;
    assert!(body.contains(&key) && !body.contains("Drucker"), "{body}");
    shot(&teacher, "12-meine-meldungen").await;
    click_link(&teacher, "Hilfe-Artikel").await;
    let body = text(&teacher).await;
    assert!(body.contains("WLAN im Klassenraum verbinden"), "{body}");
    assert!(!body.contains("Admin-Passw"), "{body}");
    shot(&teacher, "13-hilfe-artikel").await;
    // No coordinator or technician page for a teacher.
    teacher.goto(&format!("{base}/tickets")).await.unwrap();
    assert!(text(&teacher).await.contains("Keine Berechtigung"));

    // --- a technician with a second factor works the ticket ---
    let (secret, step) = p.enrol_totp("technik-kus").await;
    let tech = browser(&driver, "technik").await;
    password_step(&tech, &base, "technik-kus").await;
    let body = text(&tech).await;
    assert!(body.contains("Code aus der Authenticator-App"), "{body}");
    assert!(!body.contains("Willkommen"), "no session before the code");
    // A wrong code first (the confirmation's, spent), then the next one.
    use schoolfleet_server::auth::mfa;
    type_into(
        &tech,
        "code",
        &mfa::format_code(mfa::code_at(&secret, step)),
    )
    .await;
    submit(&tech, "main form button[type=submit]").await;
    assert!(text(&tech).await.contains("schon verwendet"));
    type_into(
        &tech,
        "code",
        &mfa::format_code(mfa::code_at(&secret, step + 1)),
    )
    .await;
    shot(&tech, "14-anmelden-zweiter-faktor").await;
    submit(&tech, "main form button[type=submit]").await;
    welcomed(&tech, "technik-kus").await;
    click_link(&tech, "Tickets").await;
    let body = text(&tech).await;
    assert!(body.contains(&key), "{body}");
    shot(&tech, "15-ticket-warteschlange").await;
    click_link(&tech, &key).await;
    tech.find(Locator::Id("text"))
        .await
        .unwrap()
        .send_keys("Ist das HDMI-Kabel eingesteckt?")
        .await
        .unwrap();
    click_and_wait(
        &tech,
        tech.find(Locator::Css("form.card button")).await.unwrap(),
    )
    .await;
    let body = text(&tech).await;
    assert!(body.contains("Ist das HDMI-Kabel eingesteckt?"), "{body}");
    shot(&tech, "16-ticket").await;
    click_link(&tech, "kus012-r204-pc01").await;
    let body = text(&tech).await;
    assert!(
        body.contains("schoolfleet shell") && body.contains(&format!("--ticket {key}")),
        "{body}"
    );
    shot(&tech, "17-geraet").await;

    // A form without its CSRF token is refused (the token is removed the
    // way a forged cross-site form would lack it).
    tech.goto(&format!("{base}/tickets/{key}")).await.unwrap();
    tech.execute(
        "document.querySelector('form.card input[name=csrf]').value = '';",
        vec![],
    )
    .await
    .unwrap();
    tech.find(Locator::Id("text"))
        .await
        .unwrap()
        .send_keys("ohne Token")
        .await
        .unwrap();
    click_and_wait(
        &tech,
        tech.find(Locator::Css("form.card button")).await.unwrap(),
    )
    .await;
    assert!(text(&tech).await.contains("Formular abgelaufen"));
    tech.goto(&format!("{base}/tickets/{key}")).await.unwrap();
    assert!(!text(&tech).await.contains("ohne Token"));

    // The teacher answers.
    teacher
        .goto(&format!("{base}/meine-meldungen/{key}"))
        .await
        .unwrap();
    assert!(
        text(&teacher)
            .await
            .contains("Ist das HDMI-Kabel eingesteckt?")
    );

    // --- a school leader ---
    let leader = browser(&driver, "schulleitung").await;
    login(&leader, &base, "schulleitung-kus012").await;
    leader.goto(&format!("{base}/schule/kus012")).await.unwrap();
    let body = text(&leader).await;
    assert!(
        body.contains("kus012-r204-pc01") && body.contains(&key),
        "{body}"
    );
    shot(&leader, "18-schule").await;
    // The school lead sets the school's consent: "notify" for the whole
    // school, which is also the floor below which nobody may go.
    assert!(body.contains("Einwilligung bei Fernwartung"), "{body}");
    leader
        .find(Locator::Id("consent-1"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    submit(&leader, "form[action='/schule/kus012/einwilligung'] button").await;
    let body = text(&leader).await;
    assert!(
        body.contains("Mindeststufe der Schulleitung")
            && body.contains("mit Hinweis an die angemeldete Person"),
        "{body}"
    );
    let floors = p.server.store().consent_floors("kus012").await.unwrap();
    assert_eq!(floors[0].floor, "notify");
    shot(&leader, "19-schule-einwilligung").await;

    // --- another user's cookie grants only that user's rights ---
    let cookie = teacher.get_named_cookie("__Host-sf_session").await.unwrap();
    let stranger = browser(&driver, "fremd").await;
    stranger.goto(&format!("{base}/anmelden")).await.unwrap();
    stranger.add_cookie(cookie.clone()).await.unwrap();
    stranger
        .goto(&format!("{base}/konformitaet"))
        .await
        .unwrap();
    assert!(text(&stranger).await.contains("Keine Berechtigung"));
    // After the teacher logs out, the copied cookie is worth nothing.
    teacher.goto(&format!("{base}/")).await.unwrap();
    click_and_wait(
        &teacher,
        teacher
            .find(Locator::Css("form.logout button"))
            .await
            .unwrap(),
    )
    .await;
    stranger
        .goto(&format!("{base}/meine-meldungen"))
        .await
        .unwrap();
    assert!(
        text(&stranger).await.contains("Benutzername"),
        "back at the login"
    );

    for client in [coord, teacher, tech, leader, stranger] {
        client.close().await.unwrap();
    }
}
