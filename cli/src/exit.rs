//! Exit codes other than "0 ok, 1 error": `exec` and `shell` exit with the
//! remote command's status, and with 255 when the session itself failed
//! (as ssh does), so scripts can tell the two apart.

use std::fmt;

/// Exit code for transport and session errors of `shell` and `exec`.
pub const SESSION_FAILURE: u8 = 255;

/// Exit code when the device cannot find the program to run, as a shell
/// (and so ssh) reports it.
pub const COMMAND_NOT_FOUND: u8 = 127;

/// Ends the process with `code`; `message` (if any) goes to stderr as
/// "error: …". Commands return it as an `anyhow::Error`; `main` looks for it.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: Option<String>,
}

impl Exit {
    /// An exit code that needs no message (it was already explained).
    pub fn silent(code: u8) -> Self {
        Self {
            code,
            message: None,
        }
    }

    pub fn with_message(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: Some(message.into()),
        }
    }

    /// The exit code for a remote status: 0..=255 as is, anything else
    /// (a negative or huge value from a broken agent) counts as failure.
    pub fn remote_status(status: i32) -> Self {
        Self::silent(u8::try_from(status).unwrap_or(SESSION_FAILURE))
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(message) => f.write_str(message),
            None => write!(f, "exit {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

/// Turns any error of a session command into exit 255 with its message,
/// keeping an [`Exit`] that is already there (the remote status).
pub fn as_session_failure(error: anyhow::Error) -> anyhow::Error {
    if error.is::<Exit>() {
        error
    } else {
        Exit::with_message(SESSION_FAILURE, format!("{error:#}")).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_status_maps_out_of_range_to_failure() {
        assert_eq!(Exit::remote_status(0).code, 0);
        assert_eq!(Exit::remote_status(130).code, 130);
        assert_eq!(Exit::remote_status(-1).code, SESSION_FAILURE);
        assert_eq!(Exit::remote_status(256).code, SESSION_FAILURE);
    }

    #[test]
    fn session_failure_keeps_remote_status() {
        let kept = as_session_failure(Exit::silent(3).into());
        assert_eq!(kept.downcast_ref::<Exit>().unwrap().code, 3);
        let wrapped = as_session_failure(anyhow::anyhow!("not found: device pc9"));
        let exit = wrapped.downcast_ref::<Exit>().unwrap();
        assert_eq!(exit.code, SESSION_FAILURE);
        assert_eq!(exit.message.as_deref(), Some("not found: device pc9"));
    }
}
