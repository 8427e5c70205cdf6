//! tokio-websockets 0.13 echo server (as its own echo example: whole frames
//! out, default limits).

use tokio_websockets::{Config, ServerBuilder};

fn main() {
    weft_bench_peers::serve("tokio_websockets_echo", |tcp| {
        tokio::task::unconstrained(async move {
            let Ok((_request, mut ws)) = ServerBuilder::new()
                .config(Config::default().frame_size(usize::MAX))
                .accept(tcp)
                .await
            else {
                return;
            };
            weft_bench_peers::echo_batched(&mut ws, |m: &tokio_websockets::Message| m.is_text() || m.is_binary())
                .await;
        })
    });
}
