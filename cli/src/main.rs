//! `shop`: the scriptable command-line client of the shop. It speaks only
//! the gateway's WebSocket protocol, through the client of `shop-client`.

mod args;
mod commands;
mod error;
mod output;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(error::Exit::Usage as u8),
            };
        }
    };
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if failure.exit != error::Exit::BrokenPipe {
                // Nothing more can be done when stderr is closed as well.
                let _ = writeln!(std::io::stderr(), "shop: {failure}");
            }
            ExitCode::from(failure.exit as u8)
        }
    }
}
