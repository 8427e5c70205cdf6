//! Interoperability with tokio-tungstenite in both roles: whole and
//! fragmented messages, text and binary, and close codes both ways.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{binary, listen, text, within};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as TtCloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode as TtCloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::{Message as TtMessage, Utf8Bytes};
use weft::proto::State;
use weft::{CloseCode, CloseFrame, DataKind, Message};

const SIZES: [usize; 5] = [0, 125, 126, 70_000, 1 << 20];

fn tt_close(code: u16, reason: &'static str) -> TtCloseFrame {
    TtCloseFrame {
        code: TtCloseCode::from(code),
        reason: Utf8Bytes::from_static(reason),
    }
}

fn tt_fragment(data: &[u8], op: Data, fin: bool) -> TtMessage {
    TtMessage::Frame(Frame::message(Bytes::copy_from_slice(data), OpCode::Data(op), fin))
}

/// The text pieces "frag", "ment", "ed ☃" with the snowman split across the
/// last two frames.
fn text_pieces() -> (Vec<Vec<u8>>, String) {
    let whole = "fragmented ☃ text".to_owned();
    let b = whole.as_bytes();
    let cut = whole.find('☃').unwrap() + 1; // inside the snowman
    (vec![b[..4].to_vec(), b[4..cut].to_vec(), b[cut..].to_vec()], whole)
}

#[tokio::test]
async fn weft_server_with_tungstenite_client() {
    let (listener, addr) = listen().await;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = weft::accept(tcp).await.unwrap();
        while let Some(Ok(msg)) = ws.recv().await {
            ws.send(msg).await.unwrap();
        }
        let _ = done_tx.send((ws.close_frame().cloned(), ws.state()));
    });

    let (mut tt, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.unwrap();
    for n in SIZES {
        let t = text(n);
        tt.send(TtMessage::text(t.clone())).await.unwrap();
        match within("text", tt.next()).await.unwrap().unwrap() {
            TtMessage::Text(got) => assert!(got.as_str() == t, "{n} B text differs"),
            other => panic!("expected text, got {other:?}"),
        }
        let b = binary(n);
        tt.send(TtMessage::binary(b.clone())).await.unwrap();
        match within("binary", tt.next()).await.unwrap().unwrap() {
            TtMessage::Binary(got) => assert!(got[..] == b[..], "{n} B binary differs"),
            other => panic!("expected binary, got {other:?}"),
        }
    }

    // Fragmented text, with a ping between the pieces (§5.4: control frames
    // may be interleaved); weft answers the ping and reassembles the text.
    let (pieces, whole) = text_pieces();
    tt.send(tt_fragment(&pieces[0], Data::Text, false)).await.unwrap();
    tt.send(TtMessage::Ping(Bytes::from_static(b"between"))).await.unwrap();
    tt.send(tt_fragment(&pieces[1], Data::Continue, false)).await.unwrap();
    tt.send(tt_fragment(&pieces[2], Data::Continue, true)).await.unwrap();
    // The pong may follow the echo (§5.5.2 asks for it "as soon as is
    // practical"), but it must come, with the ping's payload.
    let (mut pong, mut echoed) = (None, None);
    while pong.is_none() || echoed.is_none() {
        match within("pong and reassembled text", tt.next()).await.unwrap().unwrap() {
            TtMessage::Pong(p) if pong.is_none() => pong = Some(p),
            TtMessage::Text(t) if echoed.is_none() => echoed = Some(t),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(&pong.unwrap()[..], b"between");
    assert_eq!(echoed.unwrap().as_str(), whole);
    // Fragmented binary, 300 KiB in three frames.
    let b = binary(300 * 1024);
    tt.send(tt_fragment(&b[..1000], Data::Binary, false)).await.unwrap();
    tt.send(tt_fragment(&b[1000..200_000], Data::Continue, false))
        .await
        .unwrap();
    tt.send(tt_fragment(&b[200_000..], Data::Continue, true)).await.unwrap();
    match within("reassembled binary", tt.next()).await.unwrap().unwrap() {
        TtMessage::Binary(got) => assert!(got[..] == b[..], "reassembled binary differs"),
        other => panic!("expected binary, got {other:?}"),
    }

    // The client closes with 4000.
    tt.close(Some(tt_close(4000, "tt-bye"))).await.unwrap();
    match within("close reply", tt.next()).await {
        Some(Ok(TtMessage::Close(Some(f)))) => assert_eq!(u16::from(f.code), 4000),
        other => panic!("expected the echoed close, got {other:?}"),
    }
    assert!(within("end of stream", tt.next()).await.is_none());
    let (frame, state) = within("server end", done_rx.recv()).await.unwrap();
    assert_eq!(frame, Some(CloseFrame::new(4000, "tt-bye")));
    assert_eq!(state, State::Closed);
}

#[tokio::test]
async fn weft_server_fragments_and_close_to_tungstenite_client() {
    let (listener, addr) = listen().await;
    let (pieces, whole) = text_pieces();
    let big = binary(200_000);
    let server = {
        let big = big.clone();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = weft::accept(tcp).await.unwrap();
            let n = pieces.len();
            for (i, p) in pieces.into_iter().enumerate() {
                ws.send_fragment(DataKind::Text, p, i + 1 == n).await.unwrap();
            }
            for (i, chunk) in big.chunks(50_000).enumerate() {
                let fin = (i + 1) * 50_000 >= big.len();
                ws.send_fragment(DataKind::Binary, Bytes::copy_from_slice(chunk), fin)
                    .await
                    .unwrap();
            }
            // An empty final fragment ends a message too.
            ws.send_fragment(DataKind::Binary, Bytes::from_static(b"tail"), false)
                .await
                .unwrap();
            ws.send_fragment(DataKind::Binary, Bytes::new(), true).await.unwrap();
            ws.close(CloseCode(4001), "weft-bye").await.unwrap();
            (ws.state(), ws.close_frame().cloned())
        })
    };

    let (mut tt, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.unwrap();
    match within("text", tt.next()).await.unwrap().unwrap() {
        TtMessage::Text(got) => assert_eq!(got.as_str(), whole),
        other => panic!("expected text, got {other:?}"),
    }
    match within("binary", tt.next()).await.unwrap().unwrap() {
        TtMessage::Binary(got) => assert!(got[..] == big[..], "binary differs"),
        other => panic!("expected binary, got {other:?}"),
    }
    match within("binary tail", tt.next()).await.unwrap().unwrap() {
        TtMessage::Binary(got) => assert_eq!(&got[..], b"tail"),
        other => panic!("expected binary, got {other:?}"),
    }
    match within("close", tt.next()).await.unwrap().unwrap() {
        TtMessage::Close(Some(f)) => {
            assert_eq!(u16::from(f.code), 4001);
            assert_eq!(f.reason.as_str(), "weft-bye");
        }
        other => panic!("expected close, got {other:?}"),
    }
    // tungstenite replies by itself; weft then closes TCP.
    while let Some(r) = within("end of stream", tt.next()).await {
        assert!(r.is_ok(), "{r:?}");
    }
    let (state, frame) = within("server", server).await.unwrap();
    assert_eq!(state, State::Closed);
    assert_eq!(
        frame.map(|f| f.code),
        Some(CloseCode(4001)),
        "tungstenite echoed the code"
    );
}

#[tokio::test]
async fn tungstenite_server_with_weft_client() {
    let (listener, addr) = listen().await;
    let (close_tx, mut close_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tt = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(msg)) = tt.next().await {
            match msg {
                TtMessage::Text(_) | TtMessage::Binary(_) => tt.send(msg).await.unwrap(),
                TtMessage::Close(f) => {
                    let _ = close_tx.send(f);
                }
                _ => {}
            }
        }
        // Dropping the stream closes TCP.
    });

    let mut ws = weft::connect(&format!("ws://{addr}/")).await.unwrap();
    for n in SIZES {
        let t = text(n);
        ws.send(t.clone()).await.unwrap();
        let got = within("text", ws.recv()).await.unwrap().unwrap();
        assert!(got.as_text() == Some(t.as_str()), "{n} B text differs");
        let b = binary(n);
        ws.send(b.clone()).await.unwrap();
        let got = within("binary", ws.recv()).await.unwrap().unwrap();
        assert!(got == Message::from(b), "{n} B binary differs");
    }
    // weft fragments; tungstenite reassembles and echoes whole.
    let (pieces, whole) = text_pieces();
    let n = pieces.len();
    for (i, p) in pieces.into_iter().enumerate() {
        ws.send_fragment(DataKind::Text, p, i + 1 == n).await.unwrap();
    }
    assert_eq!(
        within("text", ws.recv()).await.unwrap().unwrap().as_text(),
        Some(whole.as_str())
    );
    let b = binary(100_000);
    ws.send_fragment(DataKind::Binary, b[..10].to_vec(), false)
        .await
        .unwrap();
    ws.ping(&b"mid-message"[..]).await.unwrap();
    ws.send_fragment(DataKind::Binary, b[10..].to_vec(), true)
        .await
        .unwrap();
    let mut saw_pong = false;
    let got = loop {
        match within("binary", ws.recv_event()).await.unwrap().unwrap() {
            weft::Event::Pong(p) => {
                assert_eq!(&p[..], b"mid-message");
                saw_pong = true;
            }
            weft::Event::Message(m) => break m,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(saw_pong, "tungstenite answered the ping sent between fragments");
    assert!(got == Message::from(b), "reassembled binary differs");

    within("close", ws.close(CloseCode(4002), "weft-client-bye"))
        .await
        .unwrap();
    assert_eq!(ws.state(), State::Closed);
    assert_eq!(ws.close_frame().map(|f| f.code), Some(CloseCode(4002)));
    let f = within("server saw close", close_rx.recv()).await.unwrap().unwrap();
    assert_eq!(u16::from(f.code), 4002);
    assert_eq!(f.reason.as_str(), "weft-client-bye");
}

#[tokio::test]
async fn tungstenite_server_fragments_and_close_to_weft_client() {
    let (listener, addr) = listen().await;
    let (pieces, whole) = text_pieces();
    let big = binary(150_000);
    {
        let big = big.clone();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tt = tokio_tungstenite::accept_async(tcp).await.unwrap();
            tt.send(tt_fragment(&pieces[0], Data::Text, false)).await.unwrap();
            tt.send(tt_fragment(&pieces[1], Data::Continue, false)).await.unwrap();
            tt.send(tt_fragment(&pieces[2], Data::Continue, true)).await.unwrap();
            tt.send(tt_fragment(&big[..75_000], Data::Binary, false)).await.unwrap();
            tt.send(tt_fragment(&big[75_000..], Data::Continue, true))
                .await
                .unwrap();
            tt.close(Some(tt_close(4003, "tt-server-bye"))).await.unwrap();
            // Read the reply; the stream then ends and TCP is closed on drop.
            while let Some(Ok(_)) = tt.next().await {}
        });
    }

    let mut ws = weft::connect(&format!("ws://{addr}/")).await.unwrap();
    let m = within("text", ws.recv()).await.unwrap().unwrap();
    assert_eq!(m.as_text(), Some(whole.as_str()));
    let m = within("binary", ws.recv()).await.unwrap().unwrap();
    assert!(m == Message::from(big), "binary differs");
    assert!(within("end", ws.recv()).await.is_none());
    assert_eq!(ws.close_frame(), Some(&CloseFrame::new(4003, "tt-server-bye")));
    assert_eq!(ws.state(), State::Closed);
}
