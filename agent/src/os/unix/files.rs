//! Private state on Unix: directories 0700, secrets 0600 (the mode is
//! given to `schoolfleet_proto::files::write_durably`).

use std::path::Path;

/// Creates `dir` (and its parents) so that only the agent's user can use it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
