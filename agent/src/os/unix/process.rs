//! Process trees on Unix: every child the agent starts for a session leads
//! its own process group, so one signal reaches everything it started.

use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

/// A started program and the tree (process group) it leads.
#[derive(Debug)]
pub struct TreeChild {
    child: Child,
    pgid: u32,
}

impl TreeChild {
    /// Starts `command` as the leader of a new process group. The leader is
    /// killed when this is dropped; the rest of the group only by
    /// [`TreeChild::kill_tree`] or [`TreeChild::terminate`] (a finished
    /// command may leave a daemon behind on purpose).
    pub fn spawn(mut command: Command) -> std::io::Result<TreeChild> {
        command.process_group(0).kill_on_drop(true);
        let child = command.spawn()?;
        let pgid = child.id().unwrap_or(0);
        Ok(TreeChild { child, pgid })
    }

    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Waits for the leader (not the whole tree).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// SIGTERM to the group, SIGKILL after `grace` (and to any member that
    /// outlived the leader).
    pub async fn terminate(&mut self, grace: Duration) {
        kill_group(self.pgid, Signal::SIGTERM);
        let _ = tokio::time::timeout(grace, self.child.wait()).await;
        kill_group(self.pgid, Signal::SIGKILL);
        let _ = self.child.kill().await;
    }

    /// SIGKILL to the whole group, now.
    pub fn kill_tree(&self) {
        kill_group(self.pgid, Signal::SIGKILL);
    }

    /// A guard that kills the whole tree when dropped. Declare it after the
    /// `TreeChild` so it drops first, while the leader is not yet reaped and
    /// its id cannot have been reused.
    pub fn kill_on_drop_guard(&self) -> TreeGuard {
        TreeGuard(self.pgid)
    }
}

/// Kills a process tree when dropped.
#[derive(Debug)]
pub struct TreeGuard(u32);

impl Drop for TreeGuard {
    fn drop(&mut self) {
        kill_group(self.0, Signal::SIGKILL);
    }
}

/// Sends `signal` to the process group `pgid`. Never to group 0 or 1 (that
/// would be the agent's own group or init).
pub fn kill_group(pgid: u32, signal: Signal) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
}

/// Exit status as a shell reports it: the code, or 128+N for signal N.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}
/// Where session commands start.
pub const WORK_DIR: &str = "/";
