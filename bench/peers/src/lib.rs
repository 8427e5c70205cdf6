//! What the echo servers share: the port from argv, a single-threaded tokio
//! runtime (so that pinning the process to one core is fair), the accept loop
//! and a batching echo loop for `Stream + Sink` sockets.

use std::future::Future;

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};

/// Serve `handle` for every accepted connection on 127.0.0.1:PORT (the
/// first argument), on a current-thread runtime.
pub fn serve<F, Fut>(name: &str, handle: F)
where
    F: Fn(TcpStream) -> Fut + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: {name} PORT");
            std::process::exit(2)
        });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        eprintln!("{name}: listening on 127.0.0.1:{port}");
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(handle(tcp));
        }
    });
}

/// Echo data messages until the stream ends: each message received is
/// queued with `feed`, and the socket is flushed once nothing more has
/// already arrived (the same batching `weft serve` does).
pub async fn echo_batched<S, M, E>(ws: &mut S, is_data: impl Fn(&M) -> bool)
where
    S: Stream<Item = Result<M, E>> + Sink<M> + Unpin,
{
    while let Some(Ok(mut msg)) = ws.next().await {
        loop {
            if is_data(&msg) && ws.feed(msg).await.is_err() {
                return;
            }
            match ws.next().now_or_never() {
                Some(Some(Ok(m))) => msg = m,
                Some(_) => {
                    let _ = ws.flush().await;
                    return;
                }
                None => break,
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}
