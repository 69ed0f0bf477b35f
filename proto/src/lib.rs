//! The wire protocol of schoolfleet.
//!
//! Everything that crosses the network lives here: the generated messages and
//! services of `schoolfleet.v1`, the descriptor set for server reflection,
//! the scope syntax, and the helpers that turn timestamps into chrono values.

pub mod codec;
pub mod exec_env;
pub mod files;
pub mod minimise;
pub mod redact;
pub mod scope;
pub mod text;
pub mod time;
pub mod tokens;
pub mod transport;

/// Generated code for the `schoolfleet.v1` package.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("schoolfleet.v1");
}

/// Encoded `FileDescriptorSet` of all schoolfleet protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/schoolfleet_descriptor.bin"));

/// gRPC metadata key that carries the admin's API token.
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// Largest gRPC message either side accepts. Inventories of machines with
/// thousands of packages stay well below this; anything larger is refused
/// with RESOURCE_EXHAUSTED instead of being buffered.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Largest payload (input, output, file data) of one session frame, on
/// every hop: the CLI splits its writes to fit, the server refuses bigger
/// input frames with INVALID_ARGUMENT, and the agent neither sends nor
/// accepts more. One number, so a frame the CLI may send is one the agent
/// takes.
pub const MAX_FRAME_PAYLOAD: usize = 256 * 1024;
