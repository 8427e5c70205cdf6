//! The weft server of the interoperability matrix (`tests/interop/run.sh`).
//!
//! ```text
//! cargo run -p weft --example interop_server -- [--listen 127.0.0.1:0] [--compression on|off]
//!     [--protocols chat.v1,chat.v2] [--tls-cert cert.pem --tls-key key.pem]
//! ```
//!
//! Prints one line to stdout once it listens: `{"ws":"ws://…/"}`, with
//! `"wss":"wss://…/"` as well when a certificate is given (a second listener).
//! Every connection is an echo (text stays text, binary stays binary), with a
//! few commands, sent as text messages:
//!
//! | message | answer |
//! |---|---|
//! | `close-me CODE REASON` | the server starts the closing handshake with that code and reason |
//! | `closed? ID` | `CODE REASON` of the close frame the server received on the connection opened with `?id=ID` (`1005` for none, `none` if unknown) |
//! | `protocol?` | the negotiated subprotocol, or `none` |
//! | `extensions?` | the negotiated `Sec-WebSocket-Extensions`, or `none` |
//! | `fragment-me:PAYLOAD` (text or binary) | `PAYLOAD` sent back in three fragments (text cut inside characters) |
//!
//! The subprotocol is the first one the client offers that is in the server's
//! list.

// A program whose output is read by a script.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use weft::proto::deflate::PerMessageDeflate;
use weft::proto::{Accept, CloseCode};
use weft::{DataKind, Event, Message, Server};

const FRAGMENT_ME: &[u8] = b"fragment-me:";

/// Close frames received, by connection id.
type Closes = Arc<Mutex<HashMap<String, String>>>;

struct Args {
    listen: SocketAddr,
    compression: bool,
    protocols: Vec<String>,
    tls: Option<(PathBuf, PathBuf)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        compression: true,
        protocols: vec!["chat.v1".into(), "chat.v2".into()],
        tls: None,
    };
    let (mut cert, mut key) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--compression" => {
                args.compression = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--compression on|off, not {other}")),
                }
            }
            "--protocols" => {
                args.protocols = value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "--tls-cert" => cert = Some(PathBuf::from(value()?)),
            "--tls-key" => key = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    args.tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("interop_server: {e}"))?;
    let mut server = Server::new();
    if args.compression {
        server = server.extension(Arc::new(PerMessageDeflate::default()));
    }
    let server = Arc::new(server);
    let protocols = Arc::new(args.protocols);
    let closes = Closes::default();

    let plain = TcpListener::bind(args.listen).await?;
    let mut line = format!("{{\"ws\":\"ws://{}/\"", plain.local_addr()?);
    if let Some((cert, key)) = &args.tls {
        let acceptor = tokio_rustls::TlsAcceptor::from(weft::tls::server_config(cert, key)?);
        let tls = TcpListener::bind(SocketAddr::new(args.listen.ip(), 0)).await?;
        line.push_str(&format!(",\"wss\":\"wss://{}/\"", tls.local_addr()?));
        let (server, protocols, closes) = (server.clone(), protocols.clone(), closes.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = tls.accept().await {
                let (acceptor, server, protocols, closes) =
                    (acceptor.clone(), server.clone(), protocols.clone(), closes.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        serve(stream, &server, &protocols, &closes).await;
                    }
                });
            }
        });
    }
    line.push('}');
    println!("{line}");

    loop {
        let (tcp, _) = plain.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (server, protocols, closes) = (server.clone(), protocols.clone(), closes.clone());
        tokio::spawn(async move { serve(tcp, &server, &protocols, &closes).await });
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(io: S, server: &Server, protocols: &[String], closes: &Closes) {
    let mut id = None;
    let accepted = server
        .accept_with(io, |req| {
            id = req
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("id=")))
                .map(str::to_owned);
            // The first subprotocol the client offers that this server speaks.
            let protocol = req.protocols().iter().find(|p| protocols.contains(p)).cloned();
            Ok(Accept {
                protocol,
                ..Accept::default()
            })
        })
        .await;
    let Ok(mut ws) = accepted else { return };
    while let Some(event) = ws.recv_event().await {
        let msg = match event {
            Ok(Event::Message(m)) => m,
            Ok(Event::Close(frame)) => {
                if let Some(id) = &id {
                    let seen = frame.map_or_else(|| "1005".to_owned(), |f| format!("{} {}", f.code, f.reason));
                    lock(closes).insert(id.clone(), seen);
                }
                continue;
            }
            Ok(_) => continue,
            Err(_) => return,
        };
        let done = match answer(&mut ws, msg, closes).await {
            Ok(done) => done,
            Err(_) => return,
        };
        if done {
            return;
        }
    }
}

/// Answer one message; `Ok(true)` once the connection is over.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut weft::WebSocket<S>,
    msg: Message,
    closes: &Closes,
) -> Result<bool, weft::Error> {
    if msg.as_bytes().starts_with(FRAGMENT_ME) {
        let kind = msg.kind();
        let data = msg.into_bytes().slice(FRAGMENT_ME.len()..);
        // Cut at the thirds; text is cut inside a character where one is near.
        let cut = |n: usize| match kind {
            DataKind::Text => (n..data.len().min(n + 8))
                .find(|&i| data[i] & 0xC0 == 0x80)
                .unwrap_or(n),
            DataKind::Binary => n,
        };
        let (a, b) = (cut(data.len() / 3), cut(2 * data.len() / 3));
        ws.send_fragment(kind, data.slice(..a), false).await?;
        ws.send_fragment(kind, data.slice(a..b), false).await?;
        ws.send_fragment(kind, data.slice(b..), true).await?;
        return Ok(false);
    }
    let Some(text) = msg.as_text() else {
        ws.send(msg).await?;
        return Ok(false);
    };
    if let Some(rest) = text.strip_prefix("close-me ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = code.parse::<u16>().unwrap_or(1000);
        ws.close(CloseCode(code), reason).await?;
        return Ok(true);
    }
    if let Some(id) = text.strip_prefix("closed? ") {
        // The close may still be on its way through the other connection.
        let mut seen = None;
        for _ in 0..50 {
            seen = lock(closes).get(id).cloned();
            if seen.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ws.send(seen.unwrap_or_else(|| "none".into())).await?;
        return Ok(false);
    }
    let reply = match text {
        "protocol?" => ws.protocol().unwrap_or("none").to_owned(),
        "extensions?" => ws.extensions().unwrap_or("none").to_owned(),
        _ => {
            ws.send(msg).await?;
            return Ok(false);
        }
    };
    ws.send(reply).await?;
    Ok(false)
}

fn lock(closes: &Closes) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
    closes.lock().unwrap_or_else(|p| p.into_inner())
}
