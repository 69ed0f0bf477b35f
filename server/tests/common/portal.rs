//! The web portal in-process, with seeded data in two counties (Kusel and
//! Kaiserslautern), web logins for each kind of user, and a minimal HTTPS
//! client (one request per connection, like a form post) that trusts the
//! server's CA.

use std::sync::Arc;

use chrono::Utc;
use prost::Message;
use rustls_pki_types::pem::PemObject;
use schoolfleet_proto::v1::*;
use schoolfleet_server::storage::{DeviceSummary, Enrolment, IngestReport, now_millis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::server::{Clients, InProcessServer};

pub const PASSWORD: &str = "ein-sehr-langes-passwort";

/// The IT standard of the fixture: 8 GB RAM (counted), with a waiver for
/// one Kusel device.
pub const STANDARD: &str = r#"schema = "schoolfleet-standard/v1"

[standard]
id = "portal-test"
version = "1"

[[rule]]
id = "RAM-01"
title = "Mindestens 8 GB Arbeitsspeicher"
check = { type = "hardware_min", ram_gib = 8 }

[[waiver]]
id = "W-KUS-1"
rule = "RAM-01"
devices = ["kus012-r204-pc02"]
reason = "Austausch bestellt"
approved_by = "Koordination Kusel"
ticket = "SUP-1"
expires = 2099-01-01
"#;

pub struct Portal {
    pub server: InProcessServer,
    pub admin: Clients,
    pub base: String,
    pub addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    /// Device ids by host name.
    pub devices: std::collections::BTreeMap<String, String>,
}

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The value of the hidden `csrf` field of the page's (first) form.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with csrf");
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

/// Users of the fixture: (name, county, role, scope).
pub const USERS: [(&str, &str, &str, &str); 8] = [
    ("koord-kus", "kus", "coordinator", "county:kus"),
    ("koord-kl", "kl", "coordinator", "county:kl"),
    ("lehrerin-kus", "kus", "teacher", "school:kus012"),
    ("lehrer-kus", "kus", "teacher", "school:kus012"),
    ("technik-kus", "kus", "technician", "county:kus"),
    // The school's lead (issue 12's role) and a read-only school account.
    (
        "schulleitung-kus012",
        "kus",
        "schulleitung",
        "school:kus012",
    ),
    ("leser-kus012", "kus", "viewer", "school:kus012"),
    ("lehrer-kl", "kl", "teacher", "school:kl001"),
];

impl Portal {
    pub async fn start() -> Portal {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(
        configure: impl FnOnce(&mut schoolfleet_server::config::Config),
    ) -> Portal {
        let server = InProcessServer::start_with(configure).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        schoolfleet_server::server::spawn_portal(
            &server.state,
            listener,
            server.state.shutdown.clone(),
        )
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            rustls_pki_types::CertificateDer::pem_slice_iter(server.state.ca.cert_pem().as_bytes())
        {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let admin = server.client(&server.bootstrap_token).await;
        let mut portal = Portal {
            server,
            admin,
            base: format!("https://127.0.0.1:{}", addr.port()),
            addr,
            tls: Arc::new(tls),
            devices: Default::default(),
        };
        portal.seed().await;
        portal
    }

    async fn seed(&mut self) {
        for (county, school) in [("kus", "kus012"), ("kl", "kl001")] {
            self.server.create_school(county, school).await;
        }
        // The Windows 11 check: the agent's own (`Some`), or none sent.
        let not_ready = Windows11Readiness {
            ready: Tristate::No as i32,
            blockers: vec!["CPU nicht unterstützt: Intel(R) Core(TM) i5-7500".into()],
            ..Default::default()
        };
        let ready = Windows11Readiness {
            ready: Tristate::Yes as i32,
            ..Default::default()
        };
        for (county, school, host, gib, tpm, windows11) in [
            ("kus", "kus012", "kus012-r204-pc01", 4u64, "1.2", None),
            (
                "kus",
                "kus012",
                "kus012-r204-pc02",
                4,
                "2.0",
                Some(not_ready.clone()),
            ),
            (
                "kus",
                "kus012",
                "kus012-r105-pc01",
                16,
                "2.0",
                Some(ready.clone()),
            ),
            ("kl", "kl001", "kl001-r204-pc01", 4, "2.0", Some(ready)),
        ] {
            let id = self
                .add_device(county, school, host, gib, tpm, windows11)
                .await;
            self.devices.insert(host.to_owned(), id);
        }
        self.admin
            .compliance
            .apply_standard(ApplyStandardRequest {
                content: STANDARD.into(),
            })
            .await
            .unwrap();
        self.server
            .state
            .compliance
            .daily_snapshot(self.server.store(), Utc::now())
            .await
            .unwrap();
        for (name, county, role, scope) in USERS {
            self.admin
                .users
                .create_user(CreateUserRequest {
                    name: name.into(),
                    county_id: county.into(),
                    roles: vec![RoleBinding {
                        role: role.into(),
                        scope: scope.into(),
                        remote: String::new(),
                    }],
                })
                .await
                .unwrap();
            self.admin
                .users
                .set_web_password(SetWebPasswordRequest {
                    user: name.into(),
                    password: PASSWORD.into(),
                })
                .await
                .unwrap();
        }
        for (county, host, title) in [
            (
                "kl",
                "kl001-r204-pc01",
                "Drucker Kaiserslautern druckt nicht",
            ),
            ("kus", "kus012-r105-pc01", "Drucker Kusel druckt nicht"),
        ] {
            self.admin
                .tickets
                .create_ticket(CreateTicketRequest {
                    title: title.into(),
                    description: format!("Gemeldet in {county}"),
                    devices: vec![host.into()],
                    category: "drucker".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        for (title, visibility) in [
            ("WLAN im Klassenraum verbinden", "teachers"),
            ("Interne Notiz: Admin-Passwörter tauschen", "team"),
        ] {
            self.admin
                .kb
                .create_article(CreateArticleRequest {
                    county_id: "kus".into(),
                    title: title.into(),
                    body: format!("{title}: so geht es."),
                    visibility: visibility.into(),
                    publish: true,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    }

    async fn add_device(
        &self,
        county: &str,
        school: &str,
        host: &str,
        gib: u64,
        tpm: &str,
        windows11: Option<Windows11Readiness>,
    ) -> String {
        let token = self
            .server
            .create_enrollment_token(school, 1)
            .await
            .token
            .unwrap();
        let id = uuid::Uuid::now_v7().to_string();
        let device = super::device_record(&id, county, school, host);
        let store = self.server.store();
        store
            .enroll_device(&Enrolment {
                token_id: token.id,
                now: now_millis(),
                device,
                existing: false,
            })
            .await
            .unwrap();
        let inventory = Inventory {
            system: Some(SystemInfo {
                hostname: host.into(),
                ..Default::default()
            }),
            os: Some(OperatingSystem {
                family: "windows".into(),
                name: "Windows 10 Education".into(),
                version: "10.0.19045".into(),
                ..Default::default()
            }),
            hardware: Some(Hardware {
                vendor: "Fujitsu".into(),
                model: "Esprimo P757".into(),
                cpu_model: "Intel(R) Core(TM) i5-7500 CPU @ 3.40GHz".into(),
                memory_total_bytes: gib << 30,
                ..Default::default()
            }),
            firmware: Some(Firmware {
                boot_mode: "uefi".into(),
                secure_boot: Tristate::Yes as i32,
                tpm_present: true,
                tpm_version: tpm.into(),
                secure_boot_capable: Tristate::Yes as i32,
            }),
            windows11,
            ..Default::default()
        };
        store
            .ingest_report(&IngestReport {
                device_id: id.clone(),
                report_id: uuid::Uuid::new_v4().to_string(),
                collected_at: now_millis(),
                received_at: now_millis(),
                content_hash: "0".repeat(64),
                reason: "test".into(),
                inventory: inventory.encode_to_vec(),
                summary: DeviceSummary {
                    hostname: host.into(),
                    os_name: "Windows 10 Education".into(),
                    os_version: "10.0.19045".into(),
                    vendor: "Fujitsu".into(),
                    model: "Esprimo P757".into(),
                    memory_total_bytes: (gib << 30) as i64,
                    ..Default::default()
                },
                software: Default::default(),
                changes: Vec::new(),
            })
            .await
            .unwrap();
        id
    }

    /// One request on its own connection. `form`: a urlencoded POST.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: Option<&[(&str, &str)]>,
    ) -> Answer {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let body = form
            .map(|fields| {
                fields
                    .iter()
                    .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&")
            })
            .unwrap_or_default();
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(cookie) = cookie {
            head.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        if form.is_some() {
            head.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(body.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        // A TLS close without close_notify is fine for Connection: close.
        let _ = tls.read_to_end(&mut raw).await;
        parse(&raw)
    }

    pub async fn get(&self, path: &str, cookie: &str) -> Answer {
        self.request("GET", path, Some(cookie), None).await
    }

    pub async fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Answer {
        self.request("POST", path, Some(cookie), Some(form)).await
    }

    /// Logs in through the form; returns the `Cookie` header value.
    /// Enrols and confirms a TOTP for `user` through the step-up's own
    /// functions (what `schoolfleet mfa enroll` calls); returns the secret
    /// and the time step the confirmation used (so the next code is the
    /// next step's).
    pub async fn enrol_totp(&self, user: &str) -> (Vec<u8>, u64) {
        use schoolfleet_server::auth::{Principal, mfa};
        let state = &self.server.state;
        let user = self.server.store().get_user(user).await.unwrap().unwrap();
        let principal = Principal::from_user(&user);
        let enrolled = schoolfleet_server::sessions::step_up::enroll(
            state,
            &principal,
            &EnrollTotpRequest::default(),
        )
        .await
        .unwrap();
        let secret = data_encoding::BASE32_NOPAD
            .decode(enrolled.secret.as_bytes())
            .unwrap();
        let step = mfa::step_of(now_millis() as u64 / 1000);
        schoolfleet_server::sessions::step_up::confirm(
            state,
            &principal,
            &ConfirmTotpRequest {
                code: mfa::format_code(mfa::code_at(&secret, step)),
            },
        )
        .await
        .unwrap();
        (secret, step)
    }

    pub async fn login(&self, user: &str) -> String {
        let page = self.request("GET", "/anmelden", None, None).await;
        let login_cookie = cookie_pair(page.set_cookies()[0]);
        let csrf = page.csrf();
        let answer = self
            .request(
                "POST",
                "/anmelden",
                Some(&login_cookie),
                Some(&[("csrf", &csrf), ("name", user), ("password", PASSWORD)]),
            )
            .await;
        assert_eq!(answer.status, 303, "login of {user}: {}", answer.body);
        let session = answer
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("__Host-sf_session="))
            .expect("a session cookie");
        cookie_pair(session)
    }
}

/// `name=value` of a Set-Cookie header.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn parse(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        body = out;
    }
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}
