//! A client that breaks the protocol gets a close frame with the right code
//! before the server closes TCP; other connections are unaffected.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{listen, raw_client, read_frame, read_to_end, within};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use weft::proto::{Error as ProtoError, ProtocolError, State};
use weft::{CloseCode, Error, Message};

/// An echo server that reports how each connection's receive loop ended.
async fn spawn_reporting_echo() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<(Option<Result<Message, Error>>, State)>,
) {
    let (listener, addr) = listen().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut ws = weft::accept(tcp).await.unwrap();
                let last = loop {
                    match ws.recv().await {
                        Some(Ok(m)) => ws.send(m).await.unwrap(),
                        other => break other,
                    }
                };
                let _ = tx.send((last, ws.state()));
            });
        }
    });
    (addr, rx)
}

/// Send `bytes` after the handshake and expect a close frame with `code`,
/// then the end of the connection.
async fn violate(addr: SocketAddr, bytes: &[u8], code: u16) {
    let mut tcp = raw_client(addr).await;
    tcp.write_all(bytes).await.unwrap();
    let (b0, payload) = within("close frame", read_frame(&mut tcp)).await;
    assert_eq!(b0, 0x88, "a final close frame");
    assert!(payload.len() >= 2, "the close frame carries a code");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
    assert!(std::str::from_utf8(&payload[2..]).is_ok(), "the reason is UTF-8");
    // Nothing follows the close frame; the server closes TCP.
    assert!(within("EOF", read_to_end(&mut tcp)).await.is_empty());
}

#[tokio::test]
async fn an_unmasked_frame_gets_1002_and_other_clients_keep_working() {
    let (addr, mut ends) = spawn_reporting_echo().await;

    // A well-behaved client, connected before and working throughout.
    let mut good = weft::connect(&format!("ws://{addr}/")).await.unwrap();
    good.send("before").await.unwrap();
    assert_eq!(good.recv().await.unwrap().unwrap().as_text(), Some("before"));

    // An unmasked text frame from a client.
    let mut tcp = raw_client(addr).await;
    tcp.write_all(&common::frame(0x81, b"hello", None)).await.unwrap();
    // Everything the server sends until it closes TCP: one close frame.
    let raw = within("close frame and EOF", read_to_end(&mut tcp)).await;
    let reason = b"unmasked client frame";
    assert_eq!(raw.len(), 4 + reason.len(), "{raw:02x?}");
    assert_eq!(
        raw[..4],
        [0x88, 2 + reason.len() as u8, 0x03, 0xea],
        "close 1002: {raw:02x?}"
    );
    assert_eq!(&raw[4..], reason);

    let (last, state) = within("server end", ends.recv()).await.unwrap();
    match last {
        Some(Err(e)) => {
            assert_eq!(e.close_code(), Some(CloseCode::PROTOCOL_ERROR));
            assert!(
                matches!(e, Error::Protocol(ProtoError::Protocol(ProtocolError::UnmaskedFrame))),
                "{e:?}"
            );
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(state, State::Failed);

    // The other connection never noticed.
    good.send(vec![1u8, 2, 3]).await.unwrap();
    assert_eq!(good.recv().await.unwrap().unwrap(), Message::from(vec![1u8, 2, 3]));
    good.close(CloseCode::NORMAL, "").await.unwrap();
    let (last, state) = within("good end", ends.recv()).await.unwrap();
    assert!(last.is_none(), "a clean close ends recv with None: {last:?}");
    assert_eq!(state, State::Closed);
}

#[tokio::test]
async fn other_violations_get_their_codes() {
    let (addr, mut ends) = spawn_reporting_echo().await;
    let m = Some([1, 2, 3, 4]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("reserved bit", common::frame(0xc1, b"x", m), 1002),
        ("reserved opcode", common::frame(0x83, b"x", m), 1002),
        ("continuation first", common::frame(0x80, b"x", m), 1002),
        ("fragmented ping", common::frame(0x09, b"x", m), 1002),
        ("ping over 125 bytes", common::frame(0x89, &[0; 126], m), 1002),
        ("close with a 1-byte payload", common::frame(0x88, &[3], m), 1002),
        (
            "close with code 1005",
            common::frame(0x88, &1005u16.to_be_bytes(), m),
            1002,
        ),
        ("invalid UTF-8 text", common::frame(0x81, &[0xff, 0xfe], m), 1007),
        ("truncated UTF-8 at fin", common::frame(0x81, &[0xe2, 0x98], m), 1007),
        (
            "frame over 16 MiB",
            {
                let mut f = vec![0x82, 0x80 | 127];
                f.extend_from_slice(&((16u64 << 20) + 1).to_be_bytes());
                f.extend_from_slice(&[0; 4]);
                f
            },
            1009,
        ),
    ];
    for (what, bytes, code) in cases {
        violate(addr, &bytes, code).await;
        let (last, state) = within(what, ends.recv()).await.unwrap();
        match last {
            Some(Err(e)) => assert_eq!(e.close_code(), Some(CloseCode(code)), "{what}: {e:?}"),
            other => panic!("{what}: expected an error, got {other:?}"),
        }
        assert_eq!(state, State::Failed, "{what}");
    }
}
