//! tokio-tungstenite 0.30 echo server.

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn main() {
    weft_bench_peers::serve("tungstenite_echo", |tcp| async move {
        // The defaults: 128 KiB write buffer, 64 MiB messages, 16 MiB frames.
        let config = WebSocketConfig::default();
        let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else {
            return;
        };
        weft_bench_peers::echo_batched(&mut ws, |m: &tokio_tungstenite::tungstenite::Message| {
            m.is_text() || m.is_binary()
        })
        .await;
    });
}
