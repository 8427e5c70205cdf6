//! The weft client of the interoperability matrix (`tests/interop/run.sh`):
//! runs every client case against a peer's echo server and prints one JSON
//! line per case: `{"case":"text-125","result":"pass","detail":"","ms":3}`.
//!
//! ```text
//! cargo run -p weft --example interop_client -- --url ws://127.0.0.1:PORT/
//!     [--tls-url wss://127.0.0.1:PORT/ --ca cert.pem] [--compression on|off] [--case KEY]...
//! ```
//!
//! The server is expected to echo (text as text, binary as binary), to honour
//! the commands `close-me CODE REASON`, `closed? ID`, `protocol?`,
//! `extensions?` and `fragment-me:PAYLOAD` (see `interop_server.rs`), and to
//! choose the first subprotocol the client offers among `chat.v1, chat.v2`.
//! The exit status is non-zero if any case failed.

// A program whose output is read by a script.
#![allow(clippy::print_stdout)]

use std::cell::Cell;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weft::proto::deflate::PerMessageDeflate;
use weft::{Client, CloseCode, DataKind, Event, MaybeTlsStream, Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream>;
type CaseResult = Result<(), String>;

/// Message sizes of the echo cases, in bytes.
const SIZES: [(&str, usize); 6] = [
    ("0", 0),
    ("125", 125),
    ("126", 126),
    ("64k", 64 << 10),
    ("1m", 1 << 20),
    ("16m", 16 << 20),
];
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
const FRAGMENT_ME: &str = "fragment-me:";

struct Ctx {
    url: String,
    tls_url: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    compression: bool,
    rng: Cell<u64>,
}

fn parse_args() -> Result<(Ctx, Vec<String>), String> {
    let (mut url, mut tls_url, mut ca, mut compression, mut only) = (None, None, None::<PathBuf>, true, Vec::new());
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--tls-url" => tls_url = Some(value()?),
            "--ca" => ca = Some(PathBuf::from(value()?)),
            "--compression" => {
                compression = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--compression on|off, not {other}")),
                }
            }
            "--case" => only.push(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let tls = match &ca {
        Some(path) => Some(weft::tls::client_config(Some(path), false).map_err(|e| e.to_string())?),
        None => None,
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x2545_f491_4f6c_dd1d, |d| d.as_nanos() as u64)
        | 1;
    let ctx = Ctx {
        url: url.ok_or("--url is required")?,
        tls_url,
        tls,
        compression,
        rng: Cell::new(seed),
    };
    Ok((ctx, only))
}

impl Ctx {
    fn next(&self) -> u64 {
        // xorshift64*
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Random bytes: incompressible.
    fn binary(&self, len: usize) -> Bytes {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v.into()
    }

    /// Random words with some two-, three- and four-byte characters, exactly
    /// `len` bytes of UTF-8: a 48 KiB block of words, repeated (deflate's
    /// 32 KiB window does not reach back a whole block), then padded.
    fn text(&self, len: usize) -> String {
        const WORDS: [&str; 10] = [
            "weft ", "warp ", "loom ", "señal ", "naïve ", "€uro ", "✓ ", "日本 ", "🧵 ", "\n",
        ];
        let mut block = String::with_capacity(48 << 10);
        loop {
            let w = WORDS[(self.next() % WORDS.len() as u64) as usize];
            if block.len() + w.len() > len.min(48 << 10) {
                break;
            }
            block.push_str(w);
        }
        let mut s = String::with_capacity(len);
        while s.len() + block.len() <= len && !block.is_empty() {
            s.push_str(&block);
        }
        // Whole characters of the block, then ASCII, to the exact length.
        s.extend(block.chars().scan(s.len(), |n, c| {
            *n += c.len_utf8();
            (*n <= len).then_some(c)
        }));
        s.extend(std::iter::repeat_n('x', len - s.len()));
        s
    }

    fn id(&self) -> String {
        format!("weft-{:016x}", self.next())
    }

    async fn connect(&self, tls: bool, id: Option<&str>, protocols: &[&str]) -> Result<Ws, String> {
        let base = if tls {
            self.tls_url.as_deref().ok_or("no --tls-url given")?
        } else {
            &self.url
        };
        let url = match id {
            Some(id) => format!("{base}?id={id}"),
            None => base.to_owned(),
        };
        let mut client = Client::new(url);
        if self.compression {
            client = client.extension(Arc::new(PerMessageDeflate::default()));
        }
        for p in protocols {
            client = client.protocol(*p);
        }
        if let Some(cfg) = &self.tls {
            client = client.tls_config(cfg.clone());
        }
        client.connect().await.map_err(|e| format!("connect: {e}"))
    }
}

async fn recv(ws: &mut Ws) -> Result<Message, String> {
    match ws.recv().await {
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => Err(format!("receive: {e}")),
        None => Err(format!(
            "connection closed instead of a message (close frame {:?})",
            ws.close_frame()
        )),
    }
}

async fn ask(ws: &mut Ws, question: &str) -> Result<String, String> {
    ws.send(question.to_owned()).await.map_err(|e| format!("send: {e}"))?;
    match recv(ws).await? {
        Message::Text(t) => Ok(t.as_str().to_owned()),
        Message::Binary(b) => Err(format!("{question}: binary answer of {} bytes", b.len())),
    }
}

async fn finish(mut ws: Ws) -> CaseResult {
    ws.close(CloseCode::NORMAL, "done")
        .await
        .map_err(|e| format!("close: {e}"))
}

/// Compare a received message with what was sent, saying where they differ.
fn same(kind: DataKind, sent: &[u8], got: &Message) -> CaseResult {
    if got.kind() != kind {
        return Err(format!("sent {kind:?}, received {:?}", got.kind()));
    }
    let got = got.as_bytes();
    if got == sent {
        return Ok(());
    }
    let at = sent
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(sent.len().min(got.len()));
    Err(format!(
        "sent {} bytes, received {} bytes, first difference at byte {at}",
        sent.len(),
        got.len()
    ))
}

fn payload(ctx: &Ctx, kind: DataKind, len: usize) -> Bytes {
    match kind {
        DataKind::Text => Bytes::from(ctx.text(len)),
        DataKind::Binary => ctx.binary(len),
    }
}

fn message(kind: DataKind, data: Bytes) -> Result<Message, String> {
    Ok(match kind {
        DataKind::Text => Message::Text(weft::Text::from_bytes(data).map_err(|e| e.to_string())?),
        DataKind::Binary => Message::Binary(data),
    })
}

async fn echo(ctx: &Ctx, kind: DataKind, len: usize, tls: bool) -> CaseResult {
    let mut ws = ctx.connect(tls, None, &[]).await?;
    let data = payload(ctx, kind, len);
    ws.send(message(kind, data.clone())?)
        .await
        .map_err(|e| format!("send: {e}"))?;
    same(kind, &data, &recv(&mut ws).await?)?;
    finish(ws).await
}

async fn deflate(ctx: &Ctx) -> CaseResult {
    let mut ws = ctx.connect(false, None, &[]).await?;
    let ours = ws.extensions().unwrap_or("none").to_owned();
    let theirs = ask(&mut ws, "extensions?").await?;
    let on = |s: &str| s.contains("permessage-deflate");
    if on(&ours) != ctx.compression || on(&theirs) != ctx.compression {
        return Err(format!(
            "compression {}: client agreed {ours:?}, server agreed {theirs:?}",
            if ctx.compression { "on" } else { "off" }
        ));
    }
    finish(ws).await
}

/// weft sends a message in three fragments (a text one split inside characters).
async fn fragments_from_weft(ctx: &Ctx, kind: DataKind) -> CaseResult {
    let mut ws = ctx.connect(false, None, &[]).await?;
    let data = payload(ctx, kind, 10_000);
    let cut = |n: usize| {
        if kind == DataKind::Text {
            split_inside_char(&data, n)
        } else {
            n
        }
    };
    let (a, b) = (cut(data.len() / 3), cut(2 * data.len() / 3));
    for (piece, fin) in [
        (data.slice(..a), false),
        (data.slice(a..b), false),
        (data.slice(b..), true),
    ] {
        ws.send_fragment(kind, piece, fin)
            .await
            .map_err(|e| format!("send_fragment: {e}"))?;
    }
    same(kind, &data, &recv(&mut ws).await?)?;
    finish(ws).await
}

/// The peer sends a message in fragments (asked with `fragment-me:`).
async fn fragments_from_peer(ctx: &Ctx, kind: DataKind) -> CaseResult {
    let mut ws = ctx.connect(false, None, &[]).await?;
    let data = payload(ctx, kind, 10_000);
    let mut request = FRAGMENT_ME.as_bytes().to_vec();
    request.extend_from_slice(&data);
    ws.send(message(kind, request.into())?)
        .await
        .map_err(|e| format!("send: {e}"))?;
    same(kind, &data, &recv(&mut ws).await?)?;
    finish(ws).await
}

/// A byte offset near `n` that falls inside a multi-byte character, if any.
fn split_inside_char(data: &[u8], n: usize) -> usize {
    (n..data.len()).find(|&i| data[i] & 0xC0 == 0x80).unwrap_or(n)
}

/// weft closes with 4001 "bye"; the server says what it received.
async fn close_from_weft(ctx: &Ctx) -> CaseResult {
    let id = ctx.id();
    let mut ws = ctx.connect(false, Some(&id), &[]).await?;
    ws.close(CloseCode(4001), "bye")
        .await
        .map_err(|e| format!("close: {e}"))?;
    let echoed = ws.close_frame().cloned();
    let mut q = ctx.connect(false, None, &[]).await?;
    let seen = ask(&mut q, &format!("closed? {id}")).await?;
    finish(q).await?;
    if seen != "4001 bye" {
        return Err(format!("server received {seen:?} (its reply: {echoed:?})"));
    }
    match echoed {
        Some(f) if f.code == CloseCode(4001) => Ok(()),
        other => Err(format!("server's close reply was {other:?}, expected code 4001")),
    }
}

/// The server closes with 4001 "bye"; weft sees it.
async fn close_from_peer(ctx: &Ctx) -> CaseResult {
    let mut ws = ctx.connect(false, None, &[]).await?;
    ws.send("close-me 4001 bye").await.map_err(|e| format!("send: {e}"))?;
    let mut events = Vec::new();
    while let Some(ev) = ws.recv_event().await {
        match ev {
            Ok(Event::Close(_)) => {}
            Ok(other) => events.push(format!("{other:?}")),
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    match ws.close_frame() {
        Some(f) if f.code == CloseCode(4001) && f.reason == "bye" && events.is_empty() => Ok(()),
        other => Err(format!("close frame {other:?}, other events {events:?}")),
    }
}

async fn subprotocol(ctx: &Ctx) -> CaseResult {
    let mut ws = ctx.connect(false, None, &["chat.v2", "chat.v1"]).await?;
    let ours = ws.protocol().map(str::to_owned);
    let theirs = ask(&mut ws, "protocol?").await?;
    if ours.as_deref() != Some("chat.v2") || theirs != "chat.v2" {
        return Err(format!(
            "offered chat.v2, chat.v1: client agreed {ours:?}, server {theirs:?}"
        ));
    }
    finish(ws).await
}

async fn wss(ctx: &Ctx) -> CaseResult {
    echo(ctx, DataKind::Text, 64 << 10, true).await?;
    echo(ctx, DataKind::Binary, 1 << 20, true).await
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Runner {
    only: Vec<String>,
    failed: usize,
}

impl Runner {
    async fn case(&mut self, key: &str, fut: impl Future<Output = CaseResult>) {
        if !self.only.is_empty() && !self.only.iter().any(|k| k == key) {
            return;
        }
        let t0 = Instant::now();
        let (result, detail) = match tokio::time::timeout(CASE_TIMEOUT, fut).await {
            Ok(Ok(())) => ("pass", String::new()),
            Ok(Err(e)) => ("fail", e),
            Err(_) => ("fail", format!("no result within {CASE_TIMEOUT:?}")),
        };
        if result == "fail" {
            self.failed += 1;
        }
        println!(
            "{{\"case\":{},\"result\":\"{result}\",\"detail\":{},\"ms\":{}}}",
            json_str(key),
            json_str(&detail),
            t0.elapsed().as_millis()
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let (ctx, only) = match parse_args() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("interop_client: {e}");
            return ExitCode::from(2);
        }
    };
    let mut r = Runner { only, failed: 0 };
    r.case("deflate", deflate(&ctx)).await;
    for (kind, prefix) in [(DataKind::Text, "text"), (DataKind::Binary, "binary")] {
        for (name, len) in SIZES {
            r.case(&format!("{prefix}-{name}"), echo(&ctx, kind, len, false)).await;
        }
    }
    r.case("frag-text-peer", fragments_from_peer(&ctx, DataKind::Text))
        .await;
    r.case("frag-binary-peer", fragments_from_peer(&ctx, DataKind::Binary))
        .await;
    r.case("frag-text-weft", fragments_from_weft(&ctx, DataKind::Text))
        .await;
    r.case("frag-binary-weft", fragments_from_weft(&ctx, DataKind::Binary))
        .await;
    r.case("close-peer", close_from_peer(&ctx)).await;
    r.case("close-weft", close_from_weft(&ctx)).await;
    r.case("subprotocol", subprotocol(&ctx)).await;
    r.case("wss", wss(&ctx)).await;
    if r.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
