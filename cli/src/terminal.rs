//! The admin's terminal during `schoolfleet shell`: raw mode on, and back to
//! normal on every way out.
//!
//! * normal return, `?` errors, remote exit, session end: [`RawGuard`]'s
//!   `Drop`;
//! * SIGINT/SIGTERM/SIGHUP: the shell loop turns them into an ordinary
//!   return (see `commands/shell.rs`), so the guard drops;
//! * panic: [`install_panic_hook`] restores before the message is printed
//!   (the release profile aborts on panic, so `Drop` would not run).

use std::io;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Switching a terminal into raw mode and back; a trait so the guard can be
/// tested without a terminal.
pub trait RawMode {
    fn enable(&self) -> io::Result<()>;
    fn disable(&self) -> io::Result<()>;
}

/// Whether the real terminal is in raw mode because of us: the panic hook
/// must not touch a terminal we did not change.
static REAL_TERMINAL_RAW: AtomicBool = AtomicBool::new(false);

/// The process's controlling terminal, through crossterm (which keeps the
/// original settings and puts them back).
#[derive(Debug, Clone, Copy)]
pub struct Crossterm;

impl RawMode for Crossterm {
    fn enable(&self) -> io::Result<()> {
        crossterm::terminal::enable_raw_mode()?;
        REAL_TERMINAL_RAW.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn disable(&self) -> io::Result<()> {
        restore_once(&REAL_TERMINAL_RAW, self)
    }
}

/// Disables raw mode if `flag` says it is on, and clears the flag first, so
/// the guard and the panic hook never restore twice.
pub fn restore_once(flag: &AtomicBool, mode: &dyn RawModeOff) -> io::Result<()> {
    if flag.swap(false, Ordering::SeqCst) {
        mode.off()
    } else {
        Ok(())
    }
}

/// The restoring half of [`RawMode`], object-safe for [`restore_once`].
pub trait RawModeOff {
    fn off(&self) -> io::Result<()>;
}

impl RawModeOff for Crossterm {
    fn off(&self) -> io::Result<()> {
        crossterm::terminal::disable_raw_mode()
    }
}

/// Raw mode for as long as it lives.
#[derive(Debug)]
pub struct RawGuard<M: RawMode> {
    mode: M,
}

impl<M: RawMode> RawGuard<M> {
    pub fn enable(mode: M) -> io::Result<Self> {
        mode.enable()?;
        Ok(Self { mode })
    }
}

impl<M: RawMode> Drop for RawGuard<M> {
    fn drop(&mut self) {
        // Nothing sensible to do if this fails; the terminal is gone.
        let _ = self.mode.disable();
    }
}

/// Puts the terminal back before a panic message is printed. Installed once;
/// the previous hook (the default message) still runs afterwards.
pub fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = restore_once(&REAL_TERMINAL_RAW, &Crossterm);
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Records what the guard does, with its own "is raw" flag like the
    /// real terminal has.
    #[derive(Clone, Default)]
    struct FakeTerminal {
        log: Rc<RefCell<Vec<&'static str>>>,
        raw: Rc<AtomicBool>,
    }

    impl RawMode for FakeTerminal {
        fn enable(&self) -> io::Result<()> {
            self.log.borrow_mut().push("raw");
            self.raw.store(true, Ordering::SeqCst);
            Ok(())
        }
        fn disable(&self) -> io::Result<()> {
            restore_once(&self.raw, self)
        }
    }

    impl RawModeOff for FakeTerminal {
        fn off(&self) -> io::Result<()> {
            self.log.borrow_mut().push("restored");
            Ok(())
        }
    }

    fn session_that_fails(terminal: FakeTerminal) -> anyhow::Result<()> {
        let _guard = RawGuard::enable(terminal)?;
        anyhow::bail!("device gone")
    }

    #[test]
    fn guard_restores_on_error_return() {
        let terminal = FakeTerminal::default();
        assert!(session_that_fails(terminal.clone()).is_err());
        assert_eq!(*terminal.log.borrow(), ["raw", "restored"]);
    }

    #[test]
    fn guard_restores_on_unwind() {
        let terminal = FakeTerminal::default();
        let inner = terminal.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _guard = RawGuard::enable(inner).unwrap();
            panic!("bug in the shell loop");
        }));
        assert!(result.is_err());
        assert_eq!(*terminal.log.borrow(), ["raw", "restored"]);
    }

    #[test]
    fn panic_hook_path_and_guard_restore_only_once() {
        let terminal = FakeTerminal::default();
        let guard = RawGuard::enable(terminal.clone()).unwrap();
        // What the panic hook does, then the guard drops during unwinding.
        restore_once(&terminal.raw, &terminal).unwrap();
        drop(guard);
        assert_eq!(*terminal.log.borrow(), ["raw", "restored"]);
    }

    #[test]
    fn nothing_is_restored_that_was_not_changed() {
        let terminal = FakeTerminal::default();
        restore_once(&terminal.raw, &terminal).unwrap();
        assert!(terminal.log.borrow().is_empty());
    }
}
