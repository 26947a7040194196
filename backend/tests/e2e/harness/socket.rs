//! Raw WebSockets to the gateway, for tests that speak below the client.

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use super::WAIT;

/// A raw WebSocket to the gateway.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The code of the close frame the gateway ends `socket` with, reading
/// (and answering pings) until then; `None` for a close without a code or
/// a connection that ends without a close frame.
pub async fn close_code(socket: &mut Socket) -> Option<u16> {
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|frame| u16::from(frame.code));
            }
        }
        None
    })
    .await
    .expect("the gateway closes the connection")
}
