//! An in-process server on 127.0.0.1:0 with real TLS and a SQLite file,
//! and clients that call it as the CLI does.

use std::sync::Arc;

use schoolfleet_proto::transport::{self, ChannelOptions, ClientIdentity, ServerTrust};
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::audit_service_client::AuditServiceClient;
use schoolfleet_proto::v1::compliance_service_client::ComplianceServiceClient;
use schoolfleet_proto::v1::device_service_client::DeviceServiceClient;
use schoolfleet_proto::v1::enrollment_service_client::EnrollmentServiceClient;
use schoolfleet_proto::v1::inventory_service_client::InventoryServiceClient;
use schoolfleet_proto::v1::knowledge_service_client::KnowledgeServiceClient;
use schoolfleet_proto::v1::session_service_client::SessionServiceClient;
use schoolfleet_proto::v1::tenant_service_client::TenantServiceClient;
use schoolfleet_proto::v1::ticket_service_client::TicketServiceClient;
use schoolfleet_proto::v1::user_service_client::UserServiceClient;
use schoolfleet_server::api::AppState;
use schoolfleet_server::config::{Config, FlagOverrides};
use schoolfleet_server::storage::Store;
use tokio_util::sync::CancellationToken;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub struct InProcessServer {
    pub url: String,
    pub state: AppState,
    pub pin: [u8; 32],
    pub bootstrap_token: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl InProcessServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the default configuration changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().to_owned()),
            database_url: None,
        };
        let mut config = Config::load(None, Vec::new(), &flags).unwrap();
        // New installations require a second factor for sessions; tests
        // that exercise it turn it on again (`tests/step_up.rs`).
        config.sessions.require_mfa.clear();
        configure(&mut config);
        let state = schoolfleet_server::server::prepare(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(schoolfleet_server::server::run(
            state.clone(),
            listener,
            shutdown.clone(),
        ));
        // Empty when the database already had users (a restart on a shared
        // database): no bootstrap admin is created then.
        let bootstrap_token = std::fs::read_to_string(
            dir.path()
                .join(schoolfleet_server::server::BOOTSTRAP_TOKEN_FILE),
        )
        .unwrap_or_default()
        .trim()
        .to_owned();
        let pin = state.ca.fingerprint();
        InProcessServer {
            url,
            state,
            pin,
            bootstrap_token,
            shutdown,
            _dir: dir,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.state.store
    }

    pub async fn client(&self, token: &str) -> Clients {
        let channel = transport::connect(
            &self.url,
            ServerTrust::Pinned(self.pin),
            None,
            ChannelOptions::default(),
        )
        .await
        .unwrap();
        Clients::new(channel, token)
    }
}

impl InProcessServer {
    /// Creates county `county` and its school `school` (named by their ids)
    /// as the bootstrap admin.
    pub async fn create_school(&self, county: &str, school: &str) {
        use schoolfleet_proto::v1::{CreateCountyRequest, CreateSchoolRequest};
        let mut admin = self.client(&self.bootstrap_token).await;
        admin
            .tenants
            .create_county(CreateCountyRequest {
                id: county.into(),
                name: county.into(),
            })
            .await
            .unwrap();
        admin
            .tenants
            .create_school(CreateSchoolRequest {
                id: school.into(),
                county_id: county.into(),
                name: school.into(),
            })
            .await
            .unwrap();
    }

    /// An enrolment token for `school` (class schueler-pc, valid 1 h).
    pub async fn enrollment_token(&self, school: &str, max_uses: u32) -> String {
        self.create_enrollment_token(school, max_uses).await.secret
    }

    /// The same token as the server answers it: with its record (the id
    /// a test passes to `Store::enroll_device`) and its secret.
    pub async fn create_enrollment_token(
        &self,
        school: &str,
        max_uses: u32,
    ) -> schoolfleet_proto::v1::CreateEnrollmentTokenResponse {
        let mut admin = self.client(&self.bootstrap_token).await;
        admin
            .enrollment
            .create_enrollment_token(schoolfleet_proto::v1::CreateEnrollmentTokenRequest {
                school_id: school.into(),
                device_class: "schueler-pc".into(),
                expires_in_seconds: 3600,
                max_uses,
                description: String::new(),
                reinstall_device: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Enrols a device with a fresh key through the real `Enroll` call, as
    /// the agent does; returns its id and mTLS identity.
    pub async fn enroll_device(&self, token: String, hostname: &str) -> (String, ClientIdentity) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr_pem = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let channel = transport::connect(
            &self.url,
            ServerTrust::Pinned(self.pin),
            None,
            ChannelOptions::default(),
        )
        .await
        .unwrap();
        let enrolled = AgentServiceClient::new(channel)
            .enroll(schoolfleet_proto::v1::EnrollRequest {
                token,
                csr_pem,
                system_uuid: "4c4c4544-0042-3510-8052-b4c04f384d32".into(),
                serial_number: "SN-1".into(),
                hostname: hostname.into(),
                agent_version: "test".into(),
                machine_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let identity = ClientIdentity {
            cert_chain_pem: enrolled.certificate_pem,
            key_pem: key.serialize_pem(),
        };
        (enrolled.device_id, identity)
    }

    /// Creates a user with one role binding (as the bootstrap admin) and
    /// returns clients authenticated with a fresh token of that user.
    pub async fn user_clients(&self, name: &str, county: &str, role: &str, scope: &str) -> Clients {
        self.user_clients_remote(name, county, role, scope, "")
            .await
    }

    /// Like `user_clients`, with the binding's remote-session limit
    /// (`RoleBinding.remote`).
    pub async fn user_clients_remote(
        &self,
        name: &str,
        county: &str,
        role: &str,
        scope: &str,
        remote: &str,
    ) -> Clients {
        use schoolfleet_proto::v1::{CreateApiTokenRequest, CreateUserRequest, RoleBinding};
        let mut admin = self.client(&self.bootstrap_token).await;
        admin
            .users
            .create_user(CreateUserRequest {
                name: name.into(),
                county_id: county.into(),
                roles: vec![RoleBinding {
                    role: role.into(),
                    scope: scope.into(),
                    remote: remote.into(),
                }],
            })
            .await
            .unwrap();
        let secret = admin
            .users
            .create_api_token(CreateApiTokenRequest {
                user: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .secret;
        self.client(&secret).await
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// Every admin client, authenticated with one API token.
pub struct Clients {
    pub tenants: TenantServiceClient<Authed>,
    pub enrollment: EnrollmentServiceClient<Authed>,
    pub users: UserServiceClient<Authed>,
    pub devices: DeviceServiceClient<Authed>,
    pub inventory: InventoryServiceClient<Authed>,
    pub compliance: ComplianceServiceClient<Authed>,
    pub tickets: TicketServiceClient<Authed>,
    pub kb: KnowledgeServiceClient<Authed>,
    pub sessions: SessionServiceClient<Authed>,
    pub audit: AuditServiceClient<Authed>,
}

impl Clients {
    pub fn new(channel: Channel, token: &str) -> Self {
        let bearer = Bearer(format!("Bearer {token}").parse().unwrap());
        Clients {
            tenants: TenantServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            enrollment: EnrollmentServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            users: UserServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            devices: DeviceServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            inventory: InventoryServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            compliance: ComplianceServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            tickets: TicketServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            kb: KnowledgeServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            sessions: SessionServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            audit: AuditServiceClient::with_interceptor(channel, bearer),
        }
    }
}
