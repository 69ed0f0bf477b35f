//! The gRPC connection to the server: pinned TLS, the bearer token on every
//! call, and readable errors.

use std::time::Duration;

use anyhow::Context;
use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::transport::{self, ChannelOptions, ServerTrust, TransportError};
use schoolfleet_proto::v1::audit_service_client::AuditServiceClient;
use schoolfleet_proto::v1::compliance_service_client::ComplianceServiceClient;
use schoolfleet_proto::v1::device_service_client::DeviceServiceClient;
use schoolfleet_proto::v1::enrollment_service_client::EnrollmentServiceClient;
use schoolfleet_proto::v1::inventory_service_client::InventoryServiceClient;
use schoolfleet_proto::v1::session_service_client::SessionServiceClient;
use schoolfleet_proto::v1::tenant_service_client::TenantServiceClient;
use schoolfleet_proto::v1::user_service_client::UserServiceClient;
use schoolfleet_proto::{AUTHORIZATION_HEADER, MAX_MESSAGE_BYTES};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::profile::{Profile, Secret};

/// The channel type every generated client is built on.
pub type AuthChannel = InterceptedService<Channel, BearerAuth>;

/// Adds `authorization: Bearer <token>` to every request. The value is
/// marked sensitive, so HTTP/2 never puts it into its compression table and
/// `Debug` does not show it.
#[derive(Clone)]
pub struct BearerAuth {
    value: MetadataValue<Ascii>,
}

impl BearerAuth {
    pub fn new(token: &Secret) -> anyhow::Result<Self> {
        let mut value = MetadataValue::try_from(format!("Bearer {}", token.expose()))
            // Do not echo the token in the error.
            .map_err(|_| {
                anyhow::anyhow!("the API token contains characters a token cannot have")
            })?;
        value.set_sensitive(true);
        Ok(Self { value })
    }
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerAuth(<redacted>)")
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert(AUTHORIZATION_HEADER, self.value.clone());
        Ok(request)
    }
}

/// A connected, authenticated server. Cheap to clone; hands out one client
/// per service.
#[derive(Debug, Clone)]
pub struct Api {
    channel: Channel,
    auth: BearerAuth,
    server: String,
}

/// How long one admin call may take. Inventories of big machines are a few
/// MiB; a minute is generous even over a school's DSL line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl Api {
    /// Connects to the profile's server, trusting only the pinned CA.
    pub async fn connect(profile: &Profile) -> anyhow::Result<Self> {
        let options = ChannelOptions {
            request_timeout: Some(REQUEST_TIMEOUT),
            ..ChannelOptions::default()
        };
        Self::connect_with(profile, options).await
    }

    /// Connects like [`Api::connect`], but without the per-request timeout:
    /// a session's StartSession and Attach streams live for hours, and the
    /// server may hold back the first answer while the device's user is
    /// asked for consent.
    pub async fn connect_for_sessions(profile: &Profile) -> anyhow::Result<Self> {
        Self::connect_with(profile, ChannelOptions::default()).await
    }

    async fn connect_with(profile: &Profile, options: ChannelOptions) -> anyhow::Result<Self> {
        let pin = transport::parse_pin(&profile.ca_pin)?;
        let auth = BearerAuth::new(&profile.token)?;
        let channel = transport::connect(&profile.server, ServerTrust::Pinned(pin), None, options)
            .await
            .map_err(|e| connect_error(e, &profile.server))?;
        Ok(Self {
            channel,
            auth,
            server: profile.server.clone(),
        })
    }

    /// Wraps an already connected channel, e.g. a plain-HTTP one to an
    /// in-process test server. `server` is only used in messages.
    pub fn from_channel(channel: Channel, token: &Secret, server: &str) -> anyhow::Result<Self> {
        Ok(Self {
            channel,
            auth: BearerAuth::new(token)?,
            server: server.to_owned(),
        })
    }

    /// The server URL, for messages and hints.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn intercepted(&self) -> AuthChannel {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }

    pub fn tenants(&self) -> TenantServiceClient<AuthChannel> {
        TenantServiceClient::new(self.intercepted())
    }

    pub fn enrollment(&self) -> EnrollmentServiceClient<AuthChannel> {
        EnrollmentServiceClient::new(self.intercepted())
    }

    pub fn users(&self) -> UserServiceClient<AuthChannel> {
        UserServiceClient::new(self.intercepted())
    }

    pub fn devices(&self) -> DeviceServiceClient<AuthChannel> {
        // Full inventories can be larger than tonic's 4 MiB default.
        DeviceServiceClient::new(self.intercepted())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Gzip)
    }

    pub fn compliance(&self) -> ComplianceServiceClient<AuthChannel> {
        ComplianceServiceClient::new(self.intercepted())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Gzip)
    }

    pub fn tickets(
        &self,
    ) -> schoolfleet_proto::v1::ticket_service_client::TicketServiceClient<AuthChannel> {
        schoolfleet_proto::v1::ticket_service_client::TicketServiceClient::new(self.intercepted())
    }

    pub fn kb(
        &self,
    ) -> schoolfleet_proto::v1::knowledge_service_client::KnowledgeServiceClient<AuthChannel> {
        schoolfleet_proto::v1::knowledge_service_client::KnowledgeServiceClient::new(
            self.intercepted(),
        )
    }

    pub fn sessions(&self) -> SessionServiceClient<AuthChannel> {
        SessionServiceClient::new(self.intercepted())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn audit(&self) -> AuditServiceClient<AuthChannel> {
        AuditServiceClient::new(self.intercepted())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Gzip)
    }

    pub fn inventory(&self) -> InventoryServiceClient<AuthChannel> {
        InventoryServiceClient::new(self.intercepted())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Gzip)
    }
}

/// Turns the answer of a call into its message, or into an error a person
/// can act on: `api.devices().get_device(req).await.reply(&api)?`.
pub trait Reply<T> {
    fn reply(self, api: &Api) -> anyhow::Result<T>;
}

impl<T> Reply<T> for Result<tonic::Response<T>, Status> {
    fn reply(self, api: &Api) -> anyhow::Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| anyhow::anyhow!(describe_status(&status, api.server())))
    }
}

fn connect_error(error: TransportError, server: &str) -> anyhow::Error {
    match error {
        TransportError::Connect { url, source } => {
            anyhow::anyhow!("cannot reach server {url}: {}", error_chain(&source))
        }
        other => anyhow::Error::new(other).context(format!("cannot connect to {server}")),
    }
}

/// "a: b: c" for an error and its sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// An explanation of a failed call. The server's message is shown
/// through `for_terminal`: it may quote what an agent sent.
pub fn describe_status(status: &Status, server: &str) -> String {
    let detail = {
        let mut text = status.message().to_owned();
        if let Some(source) = std::error::Error::source(status) {
            let chain = error_chain(source);
            if !text.contains(&chain) {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(&chain);
            }
        }
        // Line breaks are the server's own layout (lint and apply list one
        // problem a line); everything else dangerous is shown escaped.
        text.split('\n')
            .map(|line| for_terminal(line.strip_suffix('\r').unwrap_or(line)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The server's text often says it already ("refused at pc07: …",
    // "device \"x\" not found"): then the prefix would only repeat it.
    let with = |prefix: &str| {
        if detail.is_empty() {
            prefix.to_owned()
        } else if detail.to_lowercase().contains(&prefix.to_lowercase()) {
            detail.clone()
        } else {
            format!("{prefix}: {detail}")
        }
    };
    match status.code() {
        Code::Unauthenticated => format!(
            "{}; the token may be expired or revoked: run `schoolfleet login --token sft_...` \
             with a valid token",
            with("not authenticated")
        ),
        Code::PermissionDenied => with("permission denied"),
        Code::NotFound => with("not found"),
        Code::AlreadyExists => with("already exists"),
        Code::InvalidArgument | Code::OutOfRange => with("invalid request"),
        Code::FailedPrecondition => with("refused"),
        Code::ResourceExhausted => with("limit exceeded"),
        Code::Unavailable => with(&format!("cannot reach server {server}")),
        Code::DeadlineExceeded => with(&format!("server {server} did not answer in time")),
        Code::Unimplemented => with(&format!(
            "server {server} does not support this call (is it older than the CLI?)"
        )),
        Code::Cancelled => with("request cancelled"),
        code => with(&format!("server error ({})", code.description())),
    }
}

/// Checks a pin given on the command line before any network traffic, and
/// returns it in canonical form (`sha256:` + lowercase hex).
pub fn canonical_pin(text: &str) -> anyhow::Result<String> {
    let pin = transport::parse_pin(text).context("invalid --ca-pin")?;
    Ok(transport::format_pin(&pin))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "https://fleet.example.org:7443";

    #[test]
    fn statuses_become_clear_messages() {
        let cases = [
            (
                Status::permission_denied("county:kl"),
                "permission denied: county:kl",
            ),
            (
                Status::not_found("device kus012-pc07"),
                "not found: device kus012-pc07",
            ),
            (Status::not_found(""), "not found"),
            (
                Status::invalid_argument("line 3: bad\nline 9: worse\u{1b}[2J"),
                "invalid request: line 3: bad\nline 9: worse\\x1b[2J",
            ),
            (
                Status::unavailable("connection refused"),
                "cannot reach server https://fleet.example.org:7443: connection refused",
            ),
            (
                Status::already_exists("county kus"),
                "already exists: county kus",
            ),
            (Status::internal("db"), "server error (Internal error): db"),
            // No repetition when the server's text says it already.
            (
                Status::failed_precondition("refused at vm: declined by the local user"),
                "refused at vm: declined by the local user",
            ),
            (
                Status::not_found("device \"pc9\" not found"),
                "device \"pc9\" not found",
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(describe_status(&status, SERVER), expected);
        }
        let msg = describe_status(&Status::unauthenticated("token expired"), SERVER);
        assert!(
            msg.starts_with("not authenticated: token expired;"),
            "{msg}"
        );
        assert!(msg.contains("schoolfleet login"), "{msg}");
    }

    #[test]
    fn status_messages_are_neutralised() {
        let msg = describe_status(&Status::not_found("pc\u{1b}[2J"), SERVER);
        assert_eq!(msg, "not found: pc\\x1b[2J");
    }

    #[test]
    fn interceptor_sets_bearer_token_and_hides_it() {
        let mut auth = BearerAuth::new(&Secret::new("sft_abc_s3cr3t")).unwrap();
        let request = auth.call(tonic::Request::new(())).unwrap();
        let value = request.metadata().get(AUTHORIZATION_HEADER).unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer sft_abc_s3cr3t");
        assert!(value.is_sensitive());
        assert!(!format!("{auth:?}").contains("s3cr3t"));

        let err = BearerAuth::new(&Secret::new("sft_\nx")).unwrap_err();
        assert!(!err.to_string().contains("sft_"));
    }
}
