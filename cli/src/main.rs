//! `schoolfleet`: the admin CLI. Exit codes: 0 success, 1 error, 2 usage
//! error; `shell` and `exec` exit with the remote status, or 255 when the
//! session failed.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use schoolfleet::args::Cli;
use schoolfleet::exit::Exit;
use schoolfleet::output::Ui;
use schoolfleet::profile::Environment;

fn main() -> ExitCode {
    // Usage errors and --help/--version exit here (code 2 resp. 0).
    let cli = Cli::parse();
    let env = Environment::from_process();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut err = io::stderr();
    let stdin = io::stdin();
    let interactive = stdin.is_terminal();
    // Not `stdin.lock()`: `shell` and `exec` read stdin from a thread of
    // their own, which a lock held here for the whole run would block.
    let mut input = io::BufReader::new(stdin);
    let mut ui = Ui {
        format: cli.global.output,
        out: &mut out,
        err: &mut err,
        input: &mut input,
        interactive,
    };

    let result = runtime.block_on(schoolfleet::run(cli, env, &mut ui));
    let result = result.and_then(|()| out.flush().map_err(anyhow::Error::from));
    // A thread blocked reading stdin (shell, exec) must not keep the
    // process alive.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Exit>() => {
            let _ = out.flush();
            let exit = e.downcast_ref::<Exit>().expect("checked");
            if let Some(message) = &exit.message {
                eprintln!("error: {message}");
            }
            ExitCode::from(exit.code)
        }
        // `schoolfleet devices | head` closes the pipe early: not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
