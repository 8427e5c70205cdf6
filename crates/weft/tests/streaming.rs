//! Streaming mode: large messages come up as fragments while they arrive.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{binary, listen, raw_client, text, within};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use weft::proto::Fragment;
use weft::{Config, DataKind, Error, Event, Server, WebSocket};

const MIB: usize = 1 << 20;

fn streaming_server() -> Server {
    Server::new().with_config(Config::default().protocol(weft::proto::Config::default().deliver_fragments(true)))
}

/// Collect one message's fragments, reporting each as it comes.
async fn collect<S>(ws: &mut WebSocket<S>, each: Option<&mpsc::UnboundedSender<usize>>) -> Vec<Fragment>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut pieces: Vec<Fragment> = Vec::new();
    loop {
        match ws.recv_event().await.unwrap().unwrap() {
            Event::Fragment(f) => {
                let fin = f.fin;
                pieces.push(f);
                if let Some(tx) = each {
                    let _ = tx.send(pieces.iter().map(|p| p.data.len()).sum());
                }
                if fin {
                    return pieces;
                }
            }
            other => panic!("expected fragments, got {other:?}"),
        }
    }
}

fn check(pieces: &[Fragment], kind: DataKind, expected: &[u8]) {
    assert!(!pieces.is_empty());
    assert!(pieces[0].first, "the first piece is marked first");
    assert!(pieces.iter().skip(1).all(|p| !p.first), "only the first piece is first");
    assert!(pieces.last().unwrap().fin, "the last piece is marked fin");
    assert!(
        pieces.iter().rev().skip(1).all(|p| !p.fin),
        "only the last piece is fin"
    );
    assert!(pieces.iter().all(|p| p.kind == kind));
    let whole: Vec<u8> = pieces.iter().flat_map(|p| p.data.iter().copied()).collect();
    assert_eq!(whole.len(), expected.len());
    assert!(whole == expected, "the concatenation differs");
}

async fn accept_one(server: Server) -> (SocketAddr, tokio::task::JoinHandle<WebSocket<tokio::net::TcpStream>>) {
    let (listener, addr) = listen().await;
    let h = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server.accept(tcp).await.unwrap()
    });
    (addr, h)
}

#[tokio::test]
async fn one_mib_messages_come_up_as_fragments() {
    let (addr, server) = accept_one(streaming_server()).await;
    let mut client = weft::connect(&format!("ws://{addr}/")).await.unwrap();
    let mut ws = server.await.unwrap();

    // One 1 MiB binary frame.
    let b = binary(MIB);
    client.send(b.clone()).await.unwrap();
    let pieces = within("binary fragments", collect(&mut ws, None)).await;
    check(&pieces, DataKind::Binary, &b);

    // 1 MiB of text sent as 16 frames, cut without regard for code points.
    let t = text(MIB);
    let chunks: Vec<&[u8]> = t.as_bytes().chunks(MIB / 16).collect();
    for (i, c) in chunks.iter().enumerate() {
        client
            .send_fragment(DataKind::Text, c.to_vec(), i + 1 == chunks.len())
            .await
            .unwrap();
    }
    let pieces = within("text fragments", collect(&mut ws, None)).await;
    assert!(pieces.len() >= 16, "at least one piece per frame, got {}", pieces.len());
    check(&pieces, DataKind::Text, t.as_bytes());

    // recv() refuses streaming mode instead of dropping pieces.
    client.send("small").await.unwrap();
    assert!(matches!(
        within("recv", ws.recv()).await,
        Some(Err(Error::StreamingMode))
    ));
}

#[tokio::test]
async fn pieces_arrive_before_the_frame_is_complete() {
    let (addr, server) = accept_one(streaming_server()).await;
    let mut tcp = raw_client(addr).await;
    let mut ws = server.await.unwrap();
    let (tx, mut progress) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move { collect(&mut ws, Some(&tx)).await });

    // Send the header and half of a 1 MiB frame, and wait until the server
    // has handed all of that half up: it did not wait for the whole frame.
    let b = binary(MIB);
    let frame = common::frame(0x82, &b, Some([0xa1, 0xb2, 0xc3, 0xd4]));
    let header = frame.len() - b.len();
    tcp.write_all(&frame[..header + MIB / 2]).await.unwrap();
    within("the first half as fragments", async {
        while progress.recv().await.unwrap() < MIB / 2 {}
    })
    .await;
    tcp.write_all(&frame[header + MIB / 2..]).await.unwrap();
    let pieces = within("the rest", reader).await.unwrap();
    assert!(pieces.len() >= 2);
    check(&pieces, DataKind::Binary, &b);
}
