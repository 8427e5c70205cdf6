//! Split halves driven by separate tasks at the same time.
#![allow(clippy::unwrap_used)]

mod common;

use common::{binary, listen, raw_client, read_frame, spawn_echo, within};
use tokio::io::AsyncWriteExt;
use weft::proto::State;
use weft::{CloseCode, Message, Server};

fn message(i: usize, size: usize) -> Message {
    if i.is_multiple_of(2) {
        Message::from(format!("{i}:{}", "x".repeat(size)))
    } else {
        let mut b = binary(size);
        b.extend_from_slice(&(i as u32).to_be_bytes());
        Message::from(b)
    }
}

/// A reader task and a writer task on one socket; `size` sets how much is in
/// flight, from a few bytes to more than the socket buffers hold.
async fn reader_and_writer(count: usize, size: usize) {
    let addr = spawn_echo(Server::new()).await;
    let ws = weft::connect(&format!("ws://{addr}/")).await.unwrap();
    let (mut rx, mut tx) = ws.split();

    // The reader starts first and waits while nothing has been sent.
    let reader = tokio::spawn(async move {
        for i in 0..count {
            let got = rx.recv().await.unwrap().unwrap();
            assert!(got == message(i, size), "message {i} differs");
        }
        // Then the close the writer starts comes back.
        assert!(rx.recv().await.is_none());
        assert_eq!(rx.close_frame().map(|f| f.code), Some(CloseCode::NORMAL));
        rx
    });
    let writer = tokio::spawn(async move {
        for i in 0..count {
            tx.send(message(i, size)).await.unwrap();
        }
        tx.close(CloseCode::NORMAL, "").await.unwrap();
        tx
    });
    let tx = within("writer", writer).await.unwrap();
    let rx = within("reader", reader).await.unwrap();
    let ws = rx.reunite(tx).unwrap();
    assert_eq!(ws.state(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_and_writer_tasks_with_small_messages() {
    reader_and_writer(2000, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_and_writer_tasks_with_large_messages() {
    // 64 × 256 KiB each way: the writer fills the socket while the reader is
    // draining the echoes.
    reader_and_writer(64, 256 * 1024).await;
}

#[tokio::test]
async fn reader_and_writer_tasks_on_one_thread() {
    reader_and_writer(32, 256 * 1024).await;
}

#[tokio::test]
async fn a_ping_is_answered_while_only_the_read_half_is_polled() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = weft::accept(tcp).await.unwrap();
        let (mut rx, tx) = ws.split();
        // Only the read half is polled; the write half sits unused.
        let m = rx.recv().await.unwrap().unwrap();
        (m, rx, tx)
    });

    let mut tcp = raw_client(addr).await;
    tcp.write_all(&common::frame(0x89, b"are you there?", Some([1, 2, 3, 4])))
        .await
        .unwrap();
    let (b0, payload) = within("pong", read_frame(&mut tcp)).await;
    assert_eq!(b0, 0x8a, "a final pong");
    assert_eq!(payload, b"are you there?");

    // A second ping, then data: each ping gets its pong.
    tcp.write_all(&common::frame(0x89, b"", Some([5, 6, 7, 8])))
        .await
        .unwrap();
    let (b0, payload) = within("second pong", read_frame(&mut tcp)).await;
    assert_eq!((b0, payload.len()), (0x8a, 0));

    tcp.write_all(&common::frame(0x81, b"now data", Some([9, 9, 9, 9])))
        .await
        .unwrap();
    let (m, rx, tx) = within("server", server).await.unwrap();
    assert_eq!(m.as_text(), Some("now data"));
    let ws = rx.reunite(tx).unwrap();
    assert_eq!(ws.state(), State::Open);
}

#[tokio::test]
async fn halves_of_different_sockets_do_not_reunite() {
    let addr = spawn_echo(Server::new()).await;
    let (r1, w1) = weft::connect(&format!("ws://{addr}/")).await.unwrap().split();
    let (r2, w2) = weft::connect(&format!("ws://{addr}/")).await.unwrap().split();
    let (r1, w2) = r1.reunite(w2).unwrap_err();
    let mut a = r1.reunite(w1).unwrap();
    let mut b = r2.reunite(w2).unwrap();
    a.send("a").await.unwrap();
    b.send("b").await.unwrap();
    assert_eq!(a.recv().await.unwrap().unwrap().as_text(), Some("a"));
    assert_eq!(b.recv().await.unwrap().unwrap().as_text(), Some("b"));
}
