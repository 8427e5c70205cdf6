//! The chat of `weft serve` with permessage-deflate: members whose sockets
//! negotiated compression get each room message compressed, compressed once
//! for all of them; members without it get the same message uncompressed.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

async fn start(args: &[&str]) -> (Child, SocketAddr) {
    let s = common::start_serve(args).await;
    common::drain(s.lines);
    (s.child, s.addr)
}

/// Read a response head byte by byte, then a body of its Content-Length.
async fn read_response(tcp: &mut TcpStream) -> io::Result<(String, Vec<u8>)> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await?);
    }
    let head = String::from_utf8(head).unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; len];
    tcp.read_exact(&mut body).await?;
    Ok((head, body))
}

/// Join `room` by hand; returns the socket and the response head.
async fn join(addr: SocketAddr, room: &str, nick: &str, extensions: Option<&str>) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let ext = extensions.map_or(String::new(), |e| format!("Sec-WebSocket-Extensions: {e}\r\n"));
    let req = format!(
        "GET /chat/{room}?nick={nick} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let (head, _) = within(10, "the upgrade", read_response(&mut tcp)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (tcp, head)
}

fn extensions_header(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| v.trim().to_owned())
    })
}

async fn read_frame<R: AsyncRead + Unpin>(tcp: &mut R) -> io::Result<(u8, Vec<u8>)> {
    let b0 = tcp.read_u8().await?;
    let b1 = tcp.read_u8().await?;
    let len = match b1 & 0x7f {
        126 => u64::from(tcp.read_u16().await?),
        127 => tcp.read_u64().await?,
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    tcp.read_exact(&mut payload).await?;
    Ok((b0, payload))
}

fn text_frame(text: &str) -> Vec<u8> {
    let p = text.as_bytes();
    assert!(p.len() < 0x10000);
    let mut out = vec![0x81, 0x80 | 126];
    out.extend_from_slice(&(p.len() as u16).to_be_bytes());
    out.extend_from_slice(&MASK);
    out.extend(p.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// A compressed message sent without context takeover, inflated alone.
fn inflate(payload: &[u8]) -> String {
    let mut d = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 16);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    String::from_utf8(out).unwrap()
}

/// Frames until one carries `needle`: (compressed, text).
async fn wait_for(tcp: &mut TcpStream, needle: &str) -> (bool, String) {
    within(10, "the room message", async {
        loop {
            let (b0, payload) = read_frame(tcp).await.unwrap();
            assert_eq!(b0 & 0x8f, 0x81, "a whole text frame, got {b0:#04x}");
            let compressed = b0 & 0x40 != 0;
            let text = if compressed {
                inflate(&payload)
            } else {
                String::from_utf8(payload).unwrap()
            };
            if text.contains(needle) {
                return (compressed, text);
            }
        }
    })
    .await
}

fn stat(body: &str, key: &str) -> u64 {
    let at = body.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

async fn stats(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET /hub/stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (_, body) = within(10, "the stats", read_response(&mut tcp)).await.unwrap();
    String::from_utf8(body).unwrap()
}

#[tokio::test]
async fn a_room_message_is_compressed_once_for_every_deflate_member() {
    let (_server, addr) = start(&[]).await;
    let offer = Some("permessage-deflate; client_max_window_bits");
    // A member is subscribed once its welcome has come.
    let (mut a, head_a) = join(addr, "lobby", "ada", offer).await;
    wait_for(&mut a, r#""type":"welcome""#).await;
    let (mut b, head_b) = join(addr, "lobby", "bob", offer).await;
    wait_for(&mut b, r#""type":"welcome""#).await;
    let (mut c, head_c) = join(addr, "lobby", "cy", None).await;
    wait_for(&mut c, r#""type":"welcome""#).await;
    for head in [&head_a, &head_b] {
        let ext = extensions_header(head).expect("permessage-deflate accepted");
        assert!(ext.starts_with("permessage-deflate"), "{ext}");
        assert!(ext.contains("server_no_context_takeover"), "{ext}");
    }
    assert_eq!(extensions_header(&head_c), None);
    // cy's join notice, published after cy subscribed, reaches ada.
    wait_for(&mut a, r#""nick":"cy""#).await;
    let text = "compress me once, send me to everyone; ".repeat(20);
    a.write_all(&text_frame(&text)).await.unwrap();
    for (tcp, deflate) in [(&mut a, true), (&mut b, true), (&mut c, false)] {
        let (compressed, got) = wait_for(tcp, "compress me once").await;
        assert_eq!(compressed, deflate);
        assert!(got.contains(&text) && got.contains(r#""from":"ada""#), "{got}");
    }
    let body = stats(addr).await;
    assert_eq!(stat(&body, "compressions"), 1, "{body}");
    assert_eq!(stat(&body, "delivered_compressed"), 2, "{body}");
}

#[tokio::test]
async fn no_compression_turns_it_off_for_the_chat() {
    let (_server, addr) = start(&["--no-compression"]).await;
    let (_a, head) = join(addr, "lobby", "ada", Some("permessage-deflate")).await;
    assert_eq!(extensions_header(&head), None);
}
