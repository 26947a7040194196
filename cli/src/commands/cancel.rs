//! `shop cancel`: cancel an unpaid order.

use super::{Context, resolve};
use crate::error::CliError;
use crate::output::out;

pub(super) async fn cancel(context: &Context, text: &str) -> Result<(), CliError> {
    let client = context.connect().await?;
    let order = resolve(context, &client, text).await?;
    let order = client
        .cancel_order(&order.id.to_string())
        .await
        .map_err(|error| context.fail(error))?;
    if context.global.json {
        context.json(&order)?;
    } else {
        out!(
            "Order {} is cancelled; its items are back in stock.",
            order.short_id()
        )?;
    }
    Ok(())
}
