//! What can go wrong, as one line for people and an exit code for scripts.

use std::fmt;

use shop_client::{ClientError, TlsProblem};
use shop_shared::protocol::ErrorCode;

/// Exit codes, documented in `shop --help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Bad arguments or input: a malformed line, an unknown sku or order.
    Usage = 1,
    /// The gateway cannot be reached.
    Unreachable = 2,
    /// The order was cancelled or its deadline passed.
    Cancelled = 3,
    /// The wait for the shop timed out.
    Timeout = 4,
    /// The shop refused the command (the order is paid already, the
    /// customer holds or orders too much, …).
    Refused = 5,
    /// The shop is up but cannot serve now, or failed.
    Unavailable = 6,
    /// The reader of the output went away (`shop watch | head -1`): 128 +
    /// `SIGPIPE` (13), what a shell reports for a program that pipe stopped.
    BrokenPipe = 141,
}

/// A failed command.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(Exit::Usage, message)
    }

    /// A client error, with what to do about it.
    pub fn from_client(error: ClientError, gateway: &str) -> Self {
        match error {
            ClientError::Connect { reason, .. } => CliError::new(
                Exit::Unreachable,
                format!(
                    "cannot reach the shop at {gateway} ({reason}); start the backend with \
                     `cargo run --release -p shop-backend`, or point --gateway or SHOP_GATEWAY at a running one"
                ),
            ),
            ClientError::Tls {
                problem: problem @ TlsProblem::Untrusted(_),
                ..
            } => CliError::new(
                Exit::Unreachable,
                format!(
                    "no secure connection to the shop at {gateway}: {problem}; if its certificate \
                     comes from a private certificate authority, pass that CA's certificate with \
                     --ca-cert FILE or SHOP_CA_CERT"
                ),
            ),
            ClientError::Tls { problem, .. } => CliError::new(
                Exit::Unreachable,
                format!("no secure connection to the shop at {gateway}: {problem}"),
            ),
            ClientError::Closed => CliError::new(
                Exit::Unreachable,
                format!("the connection to the shop at {gateway} was lost; try again"),
            ),
            ClientError::Timeout(after) => CliError::new(
                Exit::Timeout,
                format!(
                    "the shop did not answer within {}; try again or pass a longer --timeout",
                    humantime::format_duration(after)
                ),
            ),
            ClientError::Server {
                code: ErrorCode::HoldLimit,
                message,
            } => CliError::new(
                Exit::Refused,
                format!(
                    "the shop refused the order: {message}. `shop orders` lists your unpaid \
                     orders; `shop pay ORDER` pays one, `shop cancel ORDER` cancels one"
                ),
            ),
            ClientError::Server {
                code: ErrorCode::RateLimited,
                message,
            } => CliError::new(
                Exit::Refused,
                format!(
                    "the shop refused the order: {message}; nothing was ordered, so running \
                     the same command then orders it once"
                ),
            ),
            ClientError::Server { code, message } => {
                let exit = match code {
                    ErrorCode::OrderNotCancellable
                    | ErrorCode::IdempotencyKeyReused
                    | ErrorCode::Forbidden
                    | ErrorCode::ProductWithdrawn
                    | ErrorCode::ProductExists
                    | ErrorCode::NotEnoughStock => Exit::Refused,
                    ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::TooManyRequests => {
                        Exit::Unavailable
                    }
                    _ => Exit::Usage,
                };
                CliError::new(exit, message)
            }
            ClientError::Protocol(detail) => CliError::new(
                Exit::Unavailable,
                format!(
                    "the shop at {gateway} answered something this client does not understand: {detail}"
                ),
            ),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
