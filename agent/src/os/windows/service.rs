//! How the agent is told to stop on Windows: Ctrl+C, Ctrl+Break, closing
//! the console or system shutdown (the service control handler cancels the
//! same token).

use tokio_util::sync::CancellationToken;

pub async fn wait_for_stop(shutdown: CancellationToken) {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};
    let (Ok(mut c), Ok(mut brk), Ok(mut close), Ok(mut down)) =
        (ctrl_c(), ctrl_break(), ctrl_close(), ctrl_shutdown())
    else {
        tracing::error!("cannot install console control handlers");
        return;
    };
    tokio::select! {
        _ = c.recv() => tracing::info!("Ctrl+C: stopping"),
        _ = brk.recv() => tracing::info!("Ctrl+Break: stopping"),
        _ = close.recv() => tracing::info!("console closed: stopping"),
        _ = down.recv() => tracing::info!("system shutdown: stopping"),
        _ = shutdown.cancelled() => {}
    }
    shutdown.cancel();
}

// ---------------------------------------------------------------------------
// The Windows service: registration with the service control manager (SCM),
// the service entry point, and the first-start enrolment an MSI prepares.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

/// The service's name, as `sc query` and the MSI's ServiceInstall know it.
pub const SERVICE_NAME: &str = "schoolfleet-agent";
const DISPLAY_NAME: &str = "schoolfleet agent";
const DESCRIPTION: &str =
    "schoolfleet: inventory and remote support for this PC, over one outbound connection.";
/// Where the MSI leaves the server URL and the path of the token file for
/// the first start (HKLM, written by the installer, read by the service).
pub const SETUP_KEY: &str = "SOFTWARE\\schoolfleet\\agent";
/// Arguments after the exe on the service's command line.
pub const SERVICE_ARGS: [&str; 2] = ["service", "run"];

/// What the service runs once the SCM has started it: the agent's `run`,
/// stopped by cancelling the token.
pub type Entry = Box<dyn FnOnce(CancellationToken) -> anyhow::Result<()> + Send>;

/// The SCM calls `service_main` on a thread of its own with no way to pass
/// a closure, so the entry waits here.
static ENTRY: Mutex<Option<Entry>> = Mutex::new(None);

define_windows_service!(ffi_service_main, service_main);

/// Hands this process to the SCM (blocks until the service has stopped).
/// Fails at once when the process was not started by the SCM.
pub fn run_as_service(entry: Entry) -> anyhow::Result<()> {
    *ENTRY.lock().unwrap_or_else(|e| e.into_inner()) = Some(entry);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).context(
        "not started by the service control manager (in a console use `schoolfleet-agent run`)",
    )
}

fn service_main(_arguments: Vec<OsString>) {
    if let Err(e) = serve() {
        tracing::error!("service failed: {e:#}");
    }
}

fn serve() -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let on_control = {
        let shutdown = shutdown.clone();
        move |control| match control {
            // The same graceful path as SIGTERM on Linux.
            ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
                tracing::info!("service control {control:?}: stopping");
                shutdown.cancel();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        }
    };
    let status = service_control_handler::register(SERVICE_NAME, on_control)
        .context("cannot register the service control handler")?;
    let report = |state, accept, exit_code, wait_hint| {
        status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code,
            checkpoint: 0,
            wait_hint,
            process_id: None,
        })
    };
    report(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        ServiceExitCode::Win32(0),
        Duration::ZERO,
    )?;
    tracing::info!("service running");
    if let Err(e) = set_recovery() {
        // An MSI install has no failure actions of its own; without them
        // the agent still runs, it is just not restarted after a crash.
        tracing::warn!("cannot set the service's recovery actions: {e:#}");
    }
    let entry = ENTRY.lock().unwrap_or_else(|e| e.into_inner()).take();
    let result = match entry {
        Some(entry) => entry(shutdown),
        None => Err(anyhow::anyhow!("service entry point missing")),
    };
    // A non-zero service-specific code counts as a failure, so the recovery
    // actions restart the agent (e.g. when first enrolment found no server).
    let exit_code = match &result {
        Ok(()) => ServiceExitCode::Win32(0),
        Err(e) => {
            tracing::error!("agent stopped with an error: {e:#}");
            ServiceExitCode::ServiceSpecific(1)
        }
    };
    report(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        exit_code,
        Duration::ZERO,
    )?;
    Ok(())
}

/// Registers this exe as the automatic LocalSystem service
/// `schoolfleet-agent` running `<exe> [--state-dir DIR] service run`, with
/// restart-on-failure recovery.
pub fn install(state_dir: Option<&Path>) -> anyhow::Result<()> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .context("cannot open the service control manager (run as Administrator)")?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut launch_arguments: Vec<OsString> = Vec::new();
    if let Some(dir) = state_dir {
        launch_arguments.push("--state-dir".into());
        launch_arguments.push(dir.into());
    }
    launch_arguments.extend(SERVICE_ARGS.map(OsString::from));
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe,
        launch_arguments,
        dependencies: vec![],
        account_name: None, // LocalSystem
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG)
        .with_context(|| format!("cannot create the service {SERVICE_NAME}"))?;
    service.set_description(DESCRIPTION)?;
    configure_recovery(&service)?;
    Ok(())
}

/// Restart after 10 s, 1 min, then every 5 min; the count resets after a
/// day without failure. Also for a clean exit with an error code.
fn configure_recovery(service: &windows_service::service::Service) -> anyhow::Result<()> {
    let restart = |secs| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart(10), restart(60), restart(300)]),
        })
        .context("cannot set the recovery actions")?;
    service
        .set_failure_actions_on_non_crash_failures(true)
        .context("cannot set the recovery actions")?;
    Ok(())
}

/// The running service sets its own recovery actions, so an MSI install
/// (whose ServiceInstall table has none) gets the same as `service install`.
fn set_recovery() -> anyhow::Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    let service = manager.open_service(SERVICE_NAME, ServiceAccess::CHANGE_CONFIG)?;
    configure_recovery(&service)
}

/// Stops (if running) and removes the service; with `purge` also the state
/// directory (identity, spool, logs).
pub fn uninstall(state_dir: &Path, purge: bool) -> anyhow::Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("cannot open the service control manager (run as Administrator)")?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .with_context(|| format!("cannot open the service {SERVICE_NAME}"))?;
    // Marked for deletion first: the SCM removes it once it has stopped.
    service.delete().context("cannot delete the service")?;
    if service.query_status()?.current_state != ServiceState::Stopped {
        service.stop().context("cannot stop the service")?;
        wait_for_state(&service, ServiceState::Stopped)?;
    }
    drop(service);
    if purge {
        self::purge(state_dir)?;
    }
    Ok(())
}

/// Deletes the state directory (identity, spool, logs); gone already is fine.
pub fn purge(state_dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(state_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", state_dir.display())),
    }
}

/// Starts the service and waits until it runs.
pub fn start() -> anyhow::Result<()> {
    let service = open(ServiceAccess::START | ServiceAccess::QUERY_STATUS)?;
    service
        .start::<&str>(&[])
        .context("cannot start the service")?;
    wait_for_state(&service, ServiceState::Running)
}

/// Stops the service and waits until it has stopped.
pub fn stop() -> anyhow::Result<()> {
    let service = open(ServiceAccess::STOP | ServiceAccess::QUERY_STATUS)?;
    service.stop().context("cannot stop the service")?;
    wait_for_state(&service, ServiceState::Stopped)
}

fn open(access: ServiceAccess) -> anyhow::Result<windows_service::service::Service> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("cannot open the service control manager (run as Administrator)")?;
    manager
        .open_service(SERVICE_NAME, access)
        .with_context(|| format!("cannot open the service {SERVICE_NAME} (installed?)"))
}

/// The agent stops within its graceful-shutdown time; 30 s is generous.
fn wait_for_state(
    service: &windows_service::service::Service,
    want: ServiceState,
) -> anyhow::Result<()> {
    for _ in 0..60 {
        if service.query_status()?.current_state == want {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    anyhow::bail!("the service did not reach {want:?} within 30 s")
}

/// What the MSI left for the first start: the server URL and the token
/// file, from HKLM\SOFTWARE\schoolfleet\agent (`Server`, `TokenFile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEnrolment {
    pub server: String,
    pub token_file: PathBuf,
}

/// The setup values, if the installer left both.
pub fn pending_enrolment() -> Option<PendingEnrolment> {
    use winreg::RegKey;
    use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ, KEY_WOW64_64KEY};
    let key = RegKey::predef(HKEY_LOCAL_MACHINE)
        .open_subkey_with_flags(SETUP_KEY, KEY_READ | KEY_WOW64_64KEY)
        .ok()?;
    let server: String = key.get_value("Server").ok()?;
    let token_file: String = key.get_value("TokenFile").ok()?;
    let (server, token_file) = (server.trim(), token_file.trim());
    (!server.is_empty() && !token_file.is_empty()).then(|| PendingEnrolment {
        server: server.to_owned(),
        token_file: token_file.into(),
    })
}

/// The consent floor the installer wrote (`CONSENT_MIN` of the MSI, value
/// `ConsentMin`), if any: kept across starts, unlike the token file.
pub fn setup_consent_min() -> Option<String> {
    use winreg::RegKey;
    use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ, KEY_WOW64_64KEY};
    let key = RegKey::predef(HKEY_LOCAL_MACHINE)
        .open_subkey_with_flags(SETUP_KEY, KEY_READ | KEY_WOW64_64KEY)
        .ok()?;
    key.get_value::<String, _>("ConsentMin").ok()
}

/// Forgets the token file once it was used (or is no longer needed), so
/// a later start never tries the one-time token again. The server URL
/// stays for the admin to see.
pub fn clear_pending_enrolment() -> anyhow::Result<()> {
    use winreg::RegKey;
    use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_SET_VALUE, KEY_WOW64_64KEY};
    let key = RegKey::predef(HKEY_LOCAL_MACHINE)
        .open_subkey_with_flags(SETUP_KEY, KEY_SET_VALUE | KEY_WOW64_64KEY)
        .context("cannot open the setup key")?;
    match key.delete_value("TokenFile") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).context("cannot remove the setup key's TokenFile"),
    }
}

/// Log files for the service: `<state>\logs\agent.YYYY-MM-DD.log`, one a
/// day, the last 14 kept.
pub fn log_writer(
    state_dir: &Path,
) -> anyhow::Result<tracing_appender::rolling::RollingFileAppender> {
    let dir = state_dir.join("logs");
    super::files::create_private_dir(state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("agent")
        .filename_suffix("log")
        .max_log_files(14)
        .build(&dir)
        .context("cannot open the log file")
}
