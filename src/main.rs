//! `theanets-rs`: the command-line tool. Without arguments it trains the default digits
//! classifier; `train`, `eval`, `predict` and `inspect` work on CSV files, MNIST directories and
//! model files (see `--help`). Errors go to stderr as one line plus `caused by:` lines, exit
//! code 1; usage errors are clap's (exit code 2).

mod cli;

use clap::Parser;
use cli::args::{Cli, Command};

fn main() {
    let args = Cli::parse();
    if let Err(e) = run(args) {
        if closed_pipe(e.as_ref()) {
            return;
        }
        eprintln!("error: {e}");
        let mut cause = e.source();
        while let Some(c) = cause {
            eprintln!("  caused by: {c}");
            cause = c.source();
        }
        std::process::exit(1);
    }
}

fn run(args: Cli) -> cli::CliResult<()> {
    let mut out = std::io::stdout().lock();
    match args.command {
        None => cli::commands::digits(args.seed, args.out, &mut out),
        Some(Command::Train(a)) => cli::commands::train(a, &mut out),
        Some(Command::Eval(a)) => cli::commands::eval(a, &mut out),
        Some(Command::Predict(a)) => cli::commands::predict(a, &mut out),
        Some(Command::Inspect(a)) => cli::commands::inspect(a, &mut out),
    }
}

/// Whether the error, or one of its causes, is output piped into a program that stopped
/// reading (`| head`), which is not an error.
fn closed_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        next = err.source();
    }
    false
}
