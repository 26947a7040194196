//! The connection to the shop, owned by one task: it connects (again, with
//! growing pauses, whenever the connection drops), loads the catalogue and
//! the customer's orders, forwards every push as an [`Action`], and runs
//! the commands the app asks for. Signed in with an operator's token, it
//! also carries the operator's catalogue changes.

use std::time::Duration;

use shop_client::tokens::Tokens;
use shop_client::{Client, ClientError, Push, TlsProblem, Trust};
use shop_shared::catalog::CatalogChange;
use shop_shared::protocol::ErrorCode;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::app::Action;

/// What the app asks of the shop.
#[derive(Debug)]
pub enum Command {
    Place {
        lines: Vec<(String, i64)>,
        idempotency_key: String,
    },
    Cancel(Uuid),
    /// An operator's change; the same key for a retry of the same change.
    Admin {
        idempotency_key: String,
        change: CatalogChange,
    },
}

/// Who to be, and where.
pub struct Settings {
    pub gateway: String,
    pub profile: String,
    pub tokens: Tokens,
    /// The certificates trusted over TLS (`--ca-cert`).
    pub trust: Trust,
    /// A token to connect with instead of the profile's, never saved
    /// (`SHOP_OPERATOR_TOKEN`).
    pub operator_token: Option<String>,
    /// Whether an operator may sign in here: not over SSH, where every
    /// session is a customer's.
    pub operators: bool,
}

const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(10);
/// How long one command may wait for its answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the connection task; returns where to send commands.
pub fn spawn(
    settings: Settings,
    actions: mpsc::UnboundedSender<Action>,
) -> mpsc::UnboundedSender<Command> {
    let (commands, receiver) = mpsc::unbounded_channel();
    tokio::spawn(run(settings, actions, receiver));
    commands
}

async fn run(
    settings: Settings,
    actions: mpsc::UnboundedSender<Action>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut attempt = 1;
    let mut pause = FIRST_PAUSE;
    // This session's customer when the shop refuses the saved token.
    let mut stand_in: Option<String> = None;
    loop {
        if actions.send(Action::Connecting { attempt }).is_err() {
            return;
        }
        let reason = match connect(&settings, &mut stand_in).await {
            Ok((client, notice)) => {
                attempt = 1;
                pause = FIRST_PAUSE;
                if let Some(notice) = notice {
                    let _ = actions.send(Action::Failed(notice));
                }
                match serve(&client, &actions, &mut commands).await {
                    Served::Lost(reason) => reason,
                    Served::AppGone => {
                        // Commands still running hold the client: close
                        // the connection now rather than when they end.
                        client.close();
                        return;
                    }
                }
            }
            // The hint first: the status bar may be narrow.
            Err(ClientError::Tls {
                problem: problem @ TlsProblem::Untrusted(_),
                ..
            }) => format!("certificate not trusted: pass --ca-cert FILE ({problem})"),
            Err(ClientError::Tls { problem, .. }) => format!("no secure connection: {problem}"),
            Err(error) => error.to_string(),
        };
        if actions
            .send(Action::Offline {
                reason: reason.clone(),
                retry_in: pause,
            })
            .is_err()
        {
            return;
        }
        // Commands sent meanwhile cannot be carried out.
        let wait = tokio::time::sleep(pause);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                command = commands.recv() => match command {
                    Some(Command::Admin { .. }) => {
                        let _ = actions.send(Action::ChangeFailed {
                            message: "not connected to the shop".into(),
                            retry: true,
                        });
                    }
                    Some(_) => {
                        let _ = actions.send(Action::Failed("not connected to the shop; try again once online".into()));
                    }
                    None => return,
                },
            }
        }
        attempt += 1;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// How an operator's token begins.
const OPERATOR_TOKEN_PREFIX: &str = "op1.";

/// What the customer is told when the shop refuses the saved token.
const REFUSED_TOKEN: &str = "the shop did not accept this profile's saved sign-in (its token secret may have changed): \
     you shop as a new customer for now, and the saved one is kept for when the shop accepts it again";

/// Connects as the operator of `SHOP_OPERATOR_TOKEN` when given, else as
/// the profile's customer or operator ([`connect_as_profile`]); refuses an
/// operator where operators may not sign in.
async fn connect(
    settings: &Settings,
    stand_in: &mut Option<String>,
) -> Result<(Client, Option<String>), ClientError> {
    let (client, notice) = match &settings.operator_token {
        Some(token) => {
            let client =
                Client::connect_with(&settings.gateway, Some(token), &settings.trust).await?;
            (client.with_reply_timeout(COMMAND_TIMEOUT), None)
        }
        None => connect_as_profile(settings, stand_in).await?,
    };
    if client.operator().is_some() && !settings.operators {
        client.close();
        return Err(ClientError::Server {
            code: ErrorCode::Forbidden,
            message: "an operator's token does not sign in here: use shop-tui or shop admin".into(),
        });
    }
    Ok((client, notice))
}

/// Connects as the profile's customer, keeping a new customer's token;
/// also what to tell the customer: that the shop refused the saved token,
/// or that a new one cannot be kept. A profile whose
/// saved token is an operator's (`shop admin login`) connects as that
/// operator.
///
/// A refused token is never replaced: a shop whose token secret was
/// mistyped for a while would otherwise take every customer's account
/// away for good (an SSH key's customer among them). The session then
/// goes on as `stand_in`, a customer of its own, the same across
/// reconnections.
async fn connect_as_profile(
    settings: &Settings,
    stand_in: &mut Option<String>,
) -> Result<(Client, Option<String>), ClientError> {
    let (tokens, profile, gateway) = (&settings.tokens, &settings.profile, &settings.gateway);
    // A claim that cannot be taken only loses the guarantee that clients
    // started together become one customer.
    let (saved, _claim) = tokens
        .get_or_claim(profile, gateway)
        .await
        .unwrap_or_else(|_| (tokens.get(profile, gateway), None));
    let connect = |token| Client::connect_with(&settings.gateway, token, &settings.trust);
    let refused = |result: &Result<Client, ClientError>| {
        matches!(
            result,
            Err(ClientError::Server {
                code: ErrorCode::InvalidToken,
                ..
            })
        )
    };
    // An operator's refused token (`op1.…`, docs/protocol.md) gets no
    // stand-in: an operator is nobody's customer, so the refusal shows.
    let operators = saved
        .as_deref()
        .is_some_and(|token| token.starts_with(OPERATOR_TOKEN_PREFIX));
    let first = connect(saved.as_deref()).await;
    if refused(&first) && saved.is_some() && !operators {
        let mut client = connect(stand_in.as_deref()).await;
        if refused(&client) {
            client = connect(None).await;
        }
        let client = client?;
        *stand_in = Some(client.token().to_owned());
        return Ok((
            client.with_reply_timeout(COMMAND_TIMEOUT),
            Some(REFUSED_TOKEN.into()),
        ));
    }
    let client = first?;
    let mut notice = None;
    if saved.as_deref() != Some(client.token())
        && let Err(error) =
            settings
                .tokens
                .save(&settings.profile, &settings.gateway, client.token())
    {
        // Without it the next start is another customer: say so, with
        // the whole error for whoever runs the program (a server's paths
        // are not shown to an SSH customer).
        tracing::warn!(
            profile = %settings.profile,
            %error,
            "cannot keep a new customer's token: the profile's next session is another customer"
        );
        notice = Some(format!(
            "cannot keep this sign-in ({}): the next start is a new customer",
            error.kind()
        ));
    }
    Ok((client.with_reply_timeout(COMMAND_TIMEOUT), notice))
}

enum Served {
    Lost(String),
    AppGone,
}

/// Loads the state, then forwards pushes and runs commands until the
/// connection drops.
async fn serve(
    client: &Client,
    actions: &mpsc::UnboundedSender<Action>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Served {
    // Subscribe first, so that no change between loading and listening is
    // lost; older pushes are ignored by version.
    let mut pushes = client.subscribe();
    if let Err(error) = resync(client, actions).await {
        return Served::Lost(error.to_string());
    }
    loop {
        tokio::select! {
            push = pushes.recv() => match push {
                Ok(Push::Product(product)) => { let _ = actions.send(Action::ProductChanged(product)); }
                Ok(Push::Order(order)) => { let _ = actions.send(Action::OrderChanged(order)); }
                Ok(Push::Error { .. }) => {}
                Ok(Push::Disconnected) | Err(broadcast::error::RecvError::Closed) => {
                    return Served::Lost("the connection to the shop closed".into());
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Err(error) = resync(client, actions).await {
                        return Served::Lost(error.to_string());
                    }
                }
            },
            command = commands.recv() => match command {
                Some(command) => {
                    let client = client.clone();
                    let actions = actions.clone();
                    tokio::spawn(async move {
                        let _ = actions.send(execute(&client, command).await);
                    });
                }
                None => return Served::AppGone,
            },
        }
    }
}

async fn resync(
    client: &Client,
    actions: &mpsc::UnboundedSender<Action>,
) -> Result<(), ClientError> {
    let products = client.products().await?;
    let orders = client.orders().await?;
    let _ = actions.send(Action::Online {
        customer_id: client.customer_id(),
        operator: client.operator().map(str::to_owned),
        products,
        orders,
    });
    Ok(())
}

/// The words for an order refused over one of the customer's limits: the
/// gateway's message (which limit, the numbers), then what to do here.
pub fn refusal_text(code: ErrorCode, message: &str) -> String {
    let what_to_do = match code {
        ErrorCode::HoldLimit => {
            "Pay an unpaid order (p in My orders) or cancel one (c), or take units out of \
             the cart (-), then press o again."
        }
        ErrorCode::RateLimited => "Press o again once the wait is over.",
        _ => "",
    };
    let mut message = message.trim_end_matches('.').to_owned();
    if let Some(first) = message.get(..1) {
        message.replace_range(..1, &first.to_uppercase());
    }
    format!("{message}.\n\n{what_to_do}")
}

async fn execute(client: &Client, command: Command) -> Action {
    match command {
        Command::Place {
            lines,
            idempotency_key,
        } => {
            let borrowed: Vec<(&str, i64)> = lines
                .iter()
                .map(|(sku, quantity)| (sku.as_str(), *quantity))
                .collect();
            match client.place_order(&borrowed, &idempotency_key).await {
                Ok(order) => Action::Placed(order),
                Err(ClientError::Server {
                    code: code @ (ErrorCode::HoldLimit | ErrorCode::RateLimited),
                    message,
                }) => Action::Refused(refusal_text(code, &message)),
                Err(error) => Action::Failed(format!("the order was not placed: {error}")),
            }
        }
        Command::Cancel(id) => match client.cancel_order(&id.to_string()).await {
            Ok(order) => Action::Cancelled(order),
            Err(error) => Action::Failed(format!("the order was not cancelled: {error}")),
        },
        Command::Admin {
            idempotency_key,
            change,
        } => match client.admin(&idempotency_key, change.clone()).await {
            Ok((_, product)) => Action::Changed { change, product },
            // Unavailable: the shop may not have taken it; the same key
            // makes sending it again safe.
            Err(ClientError::Server {
                code: ErrorCode::Unavailable,
                message,
            }) => Action::ChangeFailed {
                message,
                retry: true,
            },
            Err(ClientError::Server { code, message }) => Action::ChangeFailed {
                message: format!("the shop refused: {message} ({code})"),
                retry: false,
            },
            Err(error) => Action::ChangeFailed {
                message: format!("no answer from the shop: {error}"),
                retry: true,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_over_a_limit_says_the_limit_and_what_to_do_here() {
        let held = refusal_text(
            ErrorCode::HoldLimit,
            "a customer may hold at most 5 units in unpaid orders at once; you hold 3, so \
             this order of 3 would go 1 over (2 more fit). Pay or cancel an unpaid order, or \
             order fewer units",
        );
        assert!(
            held.starts_with("A customer may hold at most 5 units"),
            "{held}"
        );
        assert!(
            held.contains("(p in My orders)") && held.contains("cancel one (c)"),
            "{held}"
        );
        let rated = refusal_text(
            ErrorCode::RateLimited,
            "a customer may place at most 2 orders a minute; wait 30 s and place the order again",
        );
        assert!(
            rated.contains("wait 30 s") && rated.ends_with("Press o again once the wait is over."),
            "{rated}"
        );
    }
}
