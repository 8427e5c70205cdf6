//! How a socket's receive buffer is kept and released between large
//! messages.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::within;
use tokio::sync::mpsc;
use weft::proto::Role;
use weft::{Config, Message, WebSocket};

const SIZE: usize = 1 << 20;

async fn next_binary<S>(ws: &mut WebSocket<S>) -> Bytes
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match within("a message", ws.recv()).await {
        Some(Ok(Message::Binary(b))) => b,
        other => panic!("unexpected {other:?}"),
    }
}

/// A client that sends a 1 MiB message each time it is told to.
fn spawn_sender(mut client: WebSocket<tokio::io::DuplexStream>) -> mpsc::Sender<u8> {
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
    tx
}

/// Messages of a size the allocator maps on its own; each is dropped before
/// the next one is sent. While the receive buffer is kept, the second message
/// lands in the memory of the first. A block of the same size allocated in
/// between would have taken that memory had the socket let go of it.
#[tokio::test]
async fn a_large_message_is_read_into_the_memory_of_the_last_one() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let cfg = Config::default();
    let mut server = WebSocket::from_raw(a, Role::Server, &cfg);
    let send = spawn_sender(WebSocket::from_raw(b, Role::Client, &cfg));

    send.send(1).await.unwrap();
    let first = next_binary(&mut server).await;
    assert!(first.iter().all(|&b| b == 1));
    let at = first.as_ptr();
    drop(first);
    let decoy = vec![0u8; SIZE + 64 * 1024];
    send.send(2).await.unwrap();
    let second = next_binary(&mut server).await;
    assert!(second.iter().all(|&b| b == 2));
    assert_eq!(second.as_ptr(), at, "the second message reuses the first one's memory");
    drop(decoy);
}

/// After a second without large messages the buffer is released, so an idle
/// socket holds no memory for the message it once received.
#[tokio::test]
async fn the_kept_buffer_is_released_after_a_quiet_second() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let cfg = Config::default();
    let mut server = WebSocket::from_raw(a, Role::Server, &cfg);
    let send = spawn_sender(WebSocket::from_raw(b, Role::Client, &cfg));

    send.send(1).await.unwrap();
    let first = next_binary(&mut server).await;
    let at = first.as_ptr();
    drop(first);
    // Keep the server polling (as an application waiting in recv does) while
    // the linger runs out.
    let idle = tokio::time::timeout(Duration::from_millis(1500), server.recv()).await;
    assert!(idle.is_err(), "nothing was sent");
    // Take the freed memory, if it was freed, before the next message.
    let decoy = vec![0u8; SIZE + 64 * 1024];
    send.send(2).await.unwrap();
    let second = next_binary(&mut server).await;
    assert!(second.iter().all(|&b| b == 2));
    assert_ne!(second.as_ptr(), at, "the buffer was still held after the linger");
    drop(decoy);
}
