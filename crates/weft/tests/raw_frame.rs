//! `feed_raw`: one pre-encoded frame fed to many sockets.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use tokio::io::DuplexStream;
use weft::proto::frame::encode_server_frame;
use weft::proto::{Role, SendError};
use weft::{CloseCode, Config, DataKind, Error, Message, WebSocket};

fn pair() -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let cfg = Config::default();
    (
        WebSocket::from_raw(a, Role::Server, &cfg),
        WebSocket::from_raw(b, Role::Client, &cfg),
    )
}

#[tokio::test]
async fn one_frame_fed_to_many_sockets_arrives_everywhere_in_order() {
    let frame = encode_server_frame(DataKind::Text, b"to everyone").unwrap();
    let mut pairs: Vec<_> = (0..4).map(|_| pair()).collect();
    for (s, _) in &mut pairs {
        s.feed("before").await.unwrap();
        s.feed_raw(frame.clone()).await.unwrap();
        s.feed(Message::Binary(Bytes::from_static(b"after"))).await.unwrap();
        s.flush().await.unwrap();
    }
    for (_, c) in &mut pairs {
        assert_eq!(c.recv().await.unwrap().unwrap(), Message::from("before"));
        assert_eq!(c.recv().await.unwrap().unwrap(), Message::from("to everyone"));
        assert_eq!(
            c.recv().await.unwrap().unwrap(),
            Message::Binary(Bytes::from_static(b"after"))
        );
    }
}

#[tokio::test]
async fn write_half_feeds_raw_frames_too() {
    let (s, mut c) = pair();
    let (_r, mut w) = s.split();
    let frame = encode_server_frame(DataKind::Binary, &[1, 2, 3]).unwrap();
    w.feed_raw(frame).await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(
        c.recv().await.unwrap().unwrap(),
        Message::Binary(Bytes::from_static(&[1, 2, 3]))
    );
}

#[tokio::test]
async fn client_sockets_and_closed_sockets_refuse_raw_frames() {
    let (mut s, mut c) = pair();
    let frame = encode_server_frame(DataKind::Text, b"x").unwrap();
    assert!(matches!(
        c.feed_raw(frame.clone()).await,
        Err(Error::Send(SendError::RawFrameRole))
    ));
    s.start_close(Some(weft::CloseFrame::new(CloseCode::NORMAL, "bye")))
        .await
        .unwrap();
    assert!(matches!(s.feed_raw(frame).await, Err(Error::Send(SendError::Closed))));
}

#[tokio::test]
async fn backpressure_applies_to_raw_frames() {
    // A small threshold and a peer that does not read: the second feed waits.
    let (a, _b) = tokio::io::duplex(1024);
    let cfg = Config::default().write_buffer_size(4096);
    let mut s = WebSocket::from_raw(a, Role::Server, &cfg);
    let frame = encode_server_frame(DataKind::Binary, &[0u8; 8192]).unwrap();
    s.feed_raw(frame.clone()).await.unwrap();
    let second = tokio::time::timeout(std::time::Duration::from_millis(100), s.feed_raw(frame)).await;
    assert!(second.is_err(), "feed_raw waited for the socket");
    assert!(s.buffered_amount() <= 8192 + 10);
}
