//! How a socket's receive buffer is kept and released between large
//! messages.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::within;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::mpsc;
use weft::proto::Role;
use weft::{Config, Message, WebSocket};

const SIZE: usize = 1 << 20;

async fn next_binary<S>(ws: &mut WebSocket<S>) -> Bytes
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match within("a message", ws.recv()).await {
        Some(Ok(Message::Binary(b))) => b,
        other => panic!("unexpected {other:?}"),
    }
}

/// A server socket, and a client beside it that sends a 1 MiB message filled
/// with the byte it is given each time it is given one.
fn pair() -> (WebSocket<DuplexStream>, mpsc::Sender<u8>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let cfg = Config::default();
    let mut client = WebSocket::from_raw(b, Role::Client, &cfg);
    let (tx, mut rx) = mpsc::channel::<u8>(1);
    tokio::spawn(async move {
        while let Some(fill) = rx.recv().await {
            client
                .send(Message::Binary(Bytes::from(vec![fill; SIZE])))
                .await
                .unwrap();
        }
        let _ = client.close(weft::CloseCode::NORMAL, "").await;
    });
    (WebSocket::from_raw(a, Role::Server, &cfg), tx)
}

/// Ask for a message filled with `fill` and receive it.
async fn round(server: &mut WebSocket<DuplexStream>, send: &mpsc::Sender<u8>, fill: u8) -> Bytes {
    send.send(fill).await.unwrap();
    let got = next_binary(server).await;
    assert_eq!(got.len(), SIZE);
    assert!(got.iter().all(|&b| b == fill));
    got
}

/// Messages of a size the allocator maps on its own; each is dropped before
/// the next one is sent. While the receive buffer is kept, the second message
/// lands in the memory of the first. A block of the same size allocated in
/// between would have taken that memory had the socket let go of it.
#[tokio::test]
async fn a_large_message_is_read_into_the_memory_of_the_last_one() {
    let (mut server, send) = pair();
    let first = round(&mut server, &send, 1).await;
    let at = first.as_ptr();
    drop(first);
    let decoy = vec![0u8; SIZE + 64 * 1024];
    let second = round(&mut server, &send, 2).await;
    assert_eq!(second.as_ptr(), at, "the second message reuses the first one's memory");
    drop(decoy);
}

/// After a second without large messages the buffer is released, so an idle
/// socket holds no memory for the message it once received.
#[tokio::test]
async fn the_kept_buffer_is_released_after_a_quiet_second() {
    let (mut server, send) = pair();
    let first = round(&mut server, &send, 1).await;
    let at = first.as_ptr();
    drop(first);
    // Keep the server polling (as an application waiting in recv does) while
    // the linger runs out.
    let idle = tokio::time::timeout(Duration::from_millis(1500), server.recv()).await;
    assert!(idle.is_err(), "nothing was sent");
    // Take the freed memory, if it was freed, before the next message.
    let decoy = vec![0u8; SIZE + 64 * 1024];
    let second = round(&mut server, &send, 2).await;
    assert_ne!(second.as_ptr(), at, "the buffer was still held after the linger");
    drop(decoy);
}
