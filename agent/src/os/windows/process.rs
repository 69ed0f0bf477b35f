//! Process trees on Windows: every child the agent starts for a session is
//! put into its own Job Object with kill-on-close (process-wrap creates the
//! process suspended and assigns it before it runs, so nothing escapes).

use std::process::ExitStatus;
use std::time::Duration;

use process_wrap::tokio::{JobObject, KillOnDrop, TokioChildWrapper, TokioCommandWrap};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};

/// Where session commands start.
pub const WORK_DIR: &str = "C:\\";

/// A started program and the Job Object that holds it and its children.
pub struct TreeChild {
    child: Box<dyn TokioChildWrapper>,
}

impl std::fmt::Debug for TreeChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeChild").field("id", &self.id()).finish()
    }
}

impl TreeChild {
    /// Starts `command` inside a new Job Object. Dropping this closes the
    /// job, which kills every process in it.
    pub fn spawn(command: Command) -> std::io::Result<TreeChild> {
        let child = TokioCommandWrap::from(command)
            .wrap(JobObject)
            .wrap(KillOnDrop)
            .spawn()?;
        Ok(TreeChild { child })
    }

    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin().take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout().take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr().take()
    }

    /// Waits for the leader only, as on Unix (the job's other members are
    /// killed when the session ends).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.inner_mut().wait().await
    }

    /// Windows has no polite stop for a console tree: the job is
    /// terminated at once; `grace` bounds the wait for the leader.
    pub async fn terminate(&mut self, grace: Duration) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(grace, self.child.inner_mut().wait()).await;
    }

    /// Terminates every process in the job, now.
    pub fn kill_tree(&mut self) {
        let _ = self.child.start_kill();
    }

    /// On Windows the job itself kills the tree when the `TreeChild` is
    /// dropped; the guard exists so callers are the same on both systems.
    pub fn kill_on_drop_guard(&self) -> TreeGuard {
        TreeGuard
    }
}

#[derive(Debug)]
pub struct TreeGuard;

/// The process's exit code (Windows has no signals; a terminated job
/// gives the code TerminateJobObject set).
pub fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or(255)
}
