//! Helpers shared by the integration tests: listeners, echo servers, payloads,
//! a raw RFC 6455 peer for byte-level checks, and a transport recorder.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The sample key of RFC 6455 §1.3.
pub(crate) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// Its accept value.
pub(crate) const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Bound every await of a test so a hang fails instead of stalling the suite.
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(20), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A listener on 127.0.0.1, port 0.
pub(crate) async fn listen() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A port that refuses connections: bound but not listening, so that
/// nothing else can take it while the socket is held.
pub(crate) fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Echo every message until the peer closes or fails.
pub(crate) async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: weft::WebSocket<S>) {
    while let Some(Ok(msg)) = ws.recv().await {
        if ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// Run `server` on a fresh listener, echoing on every connection.
pub(crate) async fn spawn_echo(server: weft::Server) -> SocketAddr {
    let (listener, addr) = listen().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                if let Ok(ws) = server.accept(tcp).await {
                    echo(ws).await;
                }
            });
        }
    });
    addr
}

/// `n` bytes of a pattern that is not periodic on any small stride.
pub(crate) fn binary(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Exactly `n` bytes of valid UTF-8 with one-, two-, three- and four-byte
/// characters, padded with ASCII.
pub(crate) fn text(n: usize) -> String {
    let pieces = ["weft ", "é", "ß", "€", "☃", "🦀", "z", "\u{7ff}", "\u{800}"];
    let mut s = String::with_capacity(n);
    let mut i = 0;
    loop {
        let p = pieces[i % pieces.len()];
        if s.len() + p.len() > n {
            break;
        }
        s.push_str(p);
        i += 1;
    }
    while s.len() < n {
        s.push('.');
    }
    s
}

/// The raw upgrade request a well-behaved client sends.
pub(crate) fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Read an HTTP response head byte by byte (nothing past it is consumed).
pub(crate) async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = tcp.read_u8().await.unwrap();
        head.push(b);
        assert!(head.len() < 16 * 1024, "response head too long");
    }
    String::from_utf8(head).unwrap()
}

/// Read everything until the peer closes. A reset after the data counts as
/// the end (a server that closes with unread input resets the connection).
pub(crate) async fn read_to_end(tcp: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Connect, upgrade by hand, and check the 101.
pub(crate) async fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(upgrade_request("/", "").as_bytes()).await.unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains(ACCEPT), "{head}");
    tcp
}

/// Answer an upgrade request by hand, with the protocol core only, so the
/// test can then write arbitrary bytes.
pub(crate) async fn raw_server_handshake(tcp: &mut TcpStream) {
    use weft::proto::{Accept, HandshakeLimits, Request, UpgradeRequest};
    let head = read_head(tcp).await;
    let req = Request::parse(head.as_bytes(), &HandshakeLimits::default()).unwrap();
    let up = UpgradeRequest::new(req).unwrap();
    tcp.write_all(&up.accept(&Accept::default()).response).await.unwrap();
}

/// A frame as a client sends it (masked with `mask`), or unmasked with `None`.
pub(crate) fn frame(first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first_byte];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(bit | n as u8),
        n @ 126..=0xffff => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Read one unmasked frame (as a server sends it): first byte and payload.
pub(crate) async fn read_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let b0 = tcp.read_u8().await.unwrap();
    let b1 = tcp.read_u8().await.unwrap();
    assert_eq!(b1 & 0x80, 0, "a server frame must not be masked");
    let len = match b1 & 0x7f {
        126 => u64::from(tcp.read_u16().await.unwrap()),
        127 => tcp.read_u64().await.unwrap(),
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    tcp.read_exact(&mut payload).await.unwrap();
    (b0, payload)
}

/// What a transport saw, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// A read returned end of file.
    Eof,
    /// `poll_shutdown` completed.
    Shutdown,
}

/// A transport that records end of file and shutdown, to tell which side
/// closed TCP first.
pub(crate) struct Recorder<S> {
    pub(crate) io: S,
    pub(crate) log: Arc<Mutex<Vec<Seen>>>,
}

impl<S> Recorder<S> {
    pub(crate) fn new(io: S) -> (Self, Arc<Mutex<Vec<Seen>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (Recorder { io, log: log.clone() }, log)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorder<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            this.log.lock().unwrap().push(Seen::Eof);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorder<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        if r.is_ready() {
            this.log.lock().unwrap().push(Seen::Shutdown);
        }
        r
    }
}
