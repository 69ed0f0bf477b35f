//! One error for every transport. The service layer returns [`AppError`];
//! the gRPC adapters turn it into a `tonic::Status` and the web into an
//! HTTP status, both through [`ErrorKind::codes`], the one table.
//!
//! Messages are for the caller: never database details (those are logged
//! where the error is made, see `From<StorageError>`), and untrusted ids
//! only through `schoolfleet_proto::text::echo`.

use std::time::Duration;

use http::StatusCode;
use tonic::Code;

use crate::auth::AuthError;
use crate::storage::StorageError;

/// What went wrong, independent of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Absent, or invisible to the caller (the two are the same answer so
    /// that existence does not leak).
    NotFound,
    /// Visible, but the caller lacks the permission.
    Denied,
    /// No valid credentials.
    Unauthenticated,
    /// The request itself is malformed.
    Invalid,
    /// The object already exists.
    Conflict,
    /// A concurrent change won (edit again on the fresh state).
    Aborted,
    /// The request is fine but the state does not allow it now.
    FailedPrecondition,
    /// A limit is reached; may come with a time to wait.
    ResourceExhausted,
    /// A dependency (the store, the device) cannot be reached; retry.
    Unavailable,
    /// A bug or corrupt data.
    Internal,
}

impl ErrorKind {
    /// Every kind, for tests of the table.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::NotFound,
        ErrorKind::Denied,
        ErrorKind::Unauthenticated,
        ErrorKind::Invalid,
        ErrorKind::Conflict,
        ErrorKind::Aborted,
        ErrorKind::FailedPrecondition,
        ErrorKind::ResourceExhausted,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// THE table: the gRPC code and the HTTP status of each kind.
    pub const fn codes(self) -> (Code, StatusCode) {
        match self {
            ErrorKind::NotFound => (Code::NotFound, StatusCode::NOT_FOUND),
            ErrorKind::Denied => (Code::PermissionDenied, StatusCode::FORBIDDEN),
            ErrorKind::Unauthenticated => (Code::Unauthenticated, StatusCode::UNAUTHORIZED),
            ErrorKind::Invalid => (Code::InvalidArgument, StatusCode::BAD_REQUEST),
            ErrorKind::Conflict => (Code::AlreadyExists, StatusCode::CONFLICT),
            ErrorKind::Aborted => (Code::Aborted, StatusCode::CONFLICT),
            ErrorKind::FailedPrecondition => {
                (Code::FailedPrecondition, StatusCode::UNPROCESSABLE_ENTITY)
            }
            ErrorKind::ResourceExhausted => {
                (Code::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS)
            }
            ErrorKind::Unavailable => (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            ErrorKind::Internal => (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// The German title and sentence of each kind, for the portal when an
    /// error brings no German text of its own.
    pub const fn german_title(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "Nicht gefunden",
            ErrorKind::Denied => "Keine Berechtigung",
            ErrorKind::Unauthenticated => "Nicht angemeldet",
            ErrorKind::Invalid => "Eingabe nicht möglich",
            ErrorKind::Conflict => "Schon vorhanden",
            ErrorKind::Aborted => "Gleichzeitig geändert",
            ErrorKind::FailedPrecondition => "Jetzt nicht möglich",
            ErrorKind::ResourceExhausted => "Zu viele Versuche",
            ErrorKind::Unavailable | ErrorKind::Internal => "Vorübergehend nicht verfügbar",
        }
    }

    pub const fn german(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "Das gibt es nicht, oder Sie dürfen es nicht sehen.",
            ErrorKind::Denied => "Dafür fehlt Ihnen die Berechtigung.",
            ErrorKind::Unauthenticated => "Bitte melden Sie sich an.",
            ErrorKind::Invalid => "Die Eingabe ist ungültig. Bitte prüfen Sie das Formular.",
            ErrorKind::Conflict => "Das gibt es schon.",
            ErrorKind::Aborted => {
                "Jemand hat das gerade geändert. Bitte laden Sie die Seite neu und versuchen Sie \
                 es noch einmal."
            }
            ErrorKind::FailedPrecondition => "Das ist im jetzigen Zustand nicht möglich.",
            ErrorKind::ResourceExhausted => "Zu viele Versuche. Bitte warten Sie eine Minute.",
            ErrorKind::Unavailable | ErrorKind::Internal => {
                "Der Dienst ist gerade nicht erreichbar. Bitte versuchen Sie es später."
            }
        }
    }

    pub const fn grpc_code(self) -> Code {
        self.codes().0
    }

    pub const fn http_status(self) -> StatusCode {
        self.codes().1
    }
}

/// An error of the service layer: a kind, a message for the caller, and
/// for RESOURCE_EXHAUSTED optionally when to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
    /// One response header for the client (gRPC metadata), e.g. the
    /// step-up methods a refused session start asks for.
    hint: Option<(&'static str, &'static str)>,
    /// The same refusal in German, for the portal's pages; the gRPC text
    /// (`message`) stays English. Without it the portal shows its kind's
    /// German sentence (`ErrorKind::german`), never the English text.
    /// Boxed: small enough that `Result<_, AppError>` stays cheap.
    german: Option<Box<str>>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        AppError {
            kind,
            message: message.into(),
            retry_after: None,
            hint: None,
            german: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn aborted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Aborted, message)
    }
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FailedPrecondition, message)
    }
    pub fn exhausted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceExhausted, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The time to wait before retrying (sent as `retry-after`).
    /// Adds a response header (key in lowercase ASCII, value ASCII).
    pub fn with_hint(mut self, key: &'static str, value: &'static str) -> Self {
        self.hint = Some((key, value));
        self
    }

    pub fn hint(&self) -> Option<(&'static str, &'static str)> {
        self.hint
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Adds the German text the portal shows (gRPC keeps `message`).
    pub fn with_german(mut self, text: impl Into<String>) -> Self {
        self.german = Some(text.into().into_boxed_str());
        self
    }

    /// The German text for a page: the one given, else the kind's.
    pub fn german(&self) -> &str {
        self.german.as_deref().unwrap_or(self.kind.german())
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    pub fn http_status(&self) -> StatusCode {
        self.kind.http_status()
    }
}

/// Storage errors: NOT_FOUND and conflicts keep their text; database
/// details are logged, not sent (they may name tables or values).
impl From<StorageError> for AppError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::NotFound(what) => AppError::not_found(format!("{what} not found")),
            StorageError::Conflict(what) => AppError::conflict(format!("{what} already exists")),
            StorageError::TokenUnusable(why) => AppError::denied(why),
            other => {
                tracing::error!(error = %other, "storage failure");
                AppError::unavailable("storage unavailable; see the server log")
            }
        }
    }
}

impl From<AuthError> for AppError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Storage(e) => e.into(),
            other => AppError::unauthenticated(other.to_string()),
        }
    }
}

impl From<AppError> for tonic::Status {
    fn from(err: AppError) -> Self {
        let code = err.kind.grpc_code();
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(after) = err.retry_after {
            let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(value) = seconds.to_string().parse() {
                metadata.insert("retry-after", value);
            }
        }
        if let Some((key, value)) = err.hint
            && let Ok(value) = value.parse()
        {
            metadata.insert(key, value);
        }
        if metadata.is_empty() {
            tonic::Status::new(code, err.message)
        } else {
            tonic::Status::with_metadata(code, err.message, metadata)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is total and one-to-one on the gRPC side, so a status
    /// maps back to the kind it came from.
    #[test]
    fn every_kind_has_its_own_grpc_code() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(seen.insert(kind.grpc_code()), "{kind:?} shares a code");
            let http = kind.http_status();
            assert!(http.is_client_error() || http.is_server_error(), "{kind:?}");
        }
        assert_eq!(ErrorKind::NotFound.http_status(), StatusCode::NOT_FOUND);
        assert_eq!(
            ErrorKind::Unavailable.grpc_code(),
            Code::Unavailable,
            "clients retry on UNAVAILABLE"
        );
    }

    #[test]
    fn statuses_keep_kind_message_and_retry_hint() {
        let status: tonic::Status = AppError::exhausted("too many; try again in 2 s")
            .with_retry_after(Duration::from_millis(1500))
            .into();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "too many; try again in 2 s");
        assert_eq!(status.metadata().get("retry-after").unwrap(), "2");
        let status: tonic::Status = AppError::denied("no").into();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.metadata().get("retry-after").is_none());
    }

    /// Every kind has German for the portal; gRPC keeps the English text.
    #[test]
    fn every_kind_has_german_and_grpc_keeps_english() {
        for kind in ErrorKind::ALL {
            let err = AppError::new(kind, "english text");
            assert_ne!(err.german(), "english text", "{kind:?}");
            assert!(!kind.german_title().is_empty());
        }
        let err = AppError::invalid("device class \"X\" is invalid")
            .with_german("Geräteklasse „X“ ist ungültig.");
        assert_eq!(err.german(), "Geräteklasse „X“ ist ungültig.");
        let status: tonic::Status = err.into();
        assert_eq!(status.message(), "device class \"X\" is invalid");
    }

    /// Database details never reach the caller.
    #[test]
    fn storage_errors_hide_details() {
        let err = AppError::from(StorageError::Corrupt("table secrets row 7".into()));
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(!err.message().contains("secrets"));
        let err = AppError::from(StorageError::NotFound("school \"x\"".into()));
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.message(), "school \"x\" not found");
        let err = AppError::from(AuthError::Expired);
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    }
}
