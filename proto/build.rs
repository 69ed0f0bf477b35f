//! Compiles `proto/` with protox (pure Rust), so a fresh machine needs only cargo.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "proto/schoolfleet/v1/common.proto",
        "proto/schoolfleet/v1/agent.proto",
        "proto/schoolfleet/v1/admin.proto",
        "proto/schoolfleet/v1/compliance.proto",
        "proto/schoolfleet/v1/service_desk.proto",
        "proto/schoolfleet/v1/session.proto",
    ];
    let fds = protox::compile(files, ["proto"])?;

    // Server reflection serves this descriptor set.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("schoolfleet_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // A variable's value is a secret: `exec_env` writes its Debug.
        .skip_debug(["schoolfleet.v1.EnvVar"])
        // prost with small starting buffers (see `src/codec.rs`).
        .codec_path("crate::codec::LeanCodec")
        .compile_fds(fds)?;
    Ok(())
}
