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

fn main() -> ExitCode {
    // Before any thread exists: the only time the local offset can be read.
    let clock = shop_client::words::Clock::local();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "shop: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(clock))
}

async fn run(clock: shop_client::words::Clock) -> ExitCode {
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
    match commands::run(cli, clock).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if failure.exit != error::Exit::BrokenPipe {
                // Nothing more can be done when stderr is closed as well.
                // The message may quote the shop (a product name): shown safely.
                let message = shop_client::text::visible(&failure.message);
                let _ = writeln!(std::io::stderr(), "shop: {message}");
            }
            ExitCode::from(failure.exit as u8)
        }
    }
}
