//! The service layer: what the server does, independent of the transport.
//!
//! Functions here take the authenticated [`Principal`](crate::auth::Principal)
//! and typed arguments and return domain records or an [`AppError`]. The
//! gRPC services in `api/` and the web portal are thin adapters over them:
//! they parse their wire format, call one function, and map the result
//! back (an `AppError` through the one table in [`error`]).

pub mod access;
pub mod audit;
pub mod compliance;
pub mod consent;
pub mod devices;
pub mod enrolment;
pub mod error;
pub mod input;
pub mod kb;
pub mod sessions;
pub mod standard;
pub mod tenants;
pub mod tickets;
pub mod users;

pub use error::{AppError, AppResult, ErrorKind};
