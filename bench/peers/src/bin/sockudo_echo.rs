//! sockudo-ws echo server: its HTTP/1.1 server handshake on the TCP stream,
//! then the `WebSocketStream` Stream/Sink API with the default `Config`
//! (write coalescing on, UTF-8 validation on), as `WebSocketServer::accept_raw`
//! does (that type needs the crate's http2 or http3 feature).

use sockudo_ws::{Config, Message, Role, WebSocketStream};

fn main() {
    weft_bench_peers::serve("sockudo_echo", |mut tcp| async move {
        let Ok(hs) = sockudo_ws::handshake::server_handshake(&mut tcp).await else {
            return;
        };
        let mut ws = WebSocketStream::from_raw_with_leftover(tcp, Role::Server, Config::default(), hs.leftover);
        weft_bench_peers::echo_batched(&mut ws, |m: &Message| matches!(m, Message::Text(_) | Message::Binary(_)))
            .await;
    });
}
