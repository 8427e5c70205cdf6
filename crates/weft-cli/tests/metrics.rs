//! `GET /metrics` of `weft serve`, through the real binary on 127.0.0.1,
//! port 0: every scrape is checked against the text exposition format, and
//! the counters must move as the sockets do.
//!
//! Counters that sockets add to in batches (and when they end) are read by
//! polling with a generous deadline; nothing here depends on how fast the
//! machine is.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;
use weft::{CloseCode, Message};

/// The masking key of hand-made client frames.
const MASK: [u8; 4] = [0x0f, 0xa5, 0x5a, 0xf0];

/// How long a counter that moves asynchronously may take to get there.
const DEADLINE: Duration = Duration::from_secs(20);

/// A `weft serve` process on 127.0.0.1, killed (by its PID) when dropped.
struct Serve {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    /// Where /metrics is served: the main listener, or `--metrics-listen`'s.
    metrics: SocketAddr,
}

impl Serve {
    /// `weft serve --listen 127.0.0.1:0 ARGS`, once it says where it listens.
    async fn start(args: &[&str]) -> Serve {
        let s = common::start_serve(args).await;
        let metrics = s
            .before
            .iter()
            .find_map(|l| {
                l.strip_prefix("weft serve: metrics on http://")?
                    .strip_suffix("/metrics")
            })
            .map_or(s.addr, |a| a.parse().unwrap());
        common::drain(s.lines);
        Serve {
            pid: s.child.id().unwrap(),
            child: s.child,
            addr: s.addr,
            metrics,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Scrape /metrics, checking the response and the format.
    async fn scrape(&self) -> Scrape {
        let (status, head, body) = get(self.metrics, "/metrics", "").await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.lines()
                .any(|l| l.eq_ignore_ascii_case("content-type: text/plain; version=0.0.4; charset=utf-8")),
            "{head}"
        );
        Scrape::parse(&body)
    }

    /// Scrape until `ok` holds of the scrape, for at most [`DEADLINE`].
    async fn until(&self, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
        let start = Instant::now();
        loop {
            let m = self.scrape().await;
            if ok(&m) {
                return m;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: not so after {DEADLINE:?}:\n{}",
                m.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until `name{labels}` is `value`, and return the scrape.
    async fn until_eq(&self, name: &str, labels: &[(&str, &str)], value: f64) -> Scrape {
        let what = format!("{name}{labels:?} == {value}");
        self.until(&what, |m| m.value(name, labels) == value).await
    }

    /// This server's entry of `/proc/PID/status`, in bytes (`VmRSS:` and so on).
    fn status_bytes(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        let kib: f64 = line[field.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kib * 1024.0
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).unwrap().count()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // SIGKILL to this child's PID only.
        let _ = self.child.start_kill();
    }
}

/// Bound an await so that a hang fails the test.
async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

/// `GET path` with `extra` header lines; the status, head and body.
async fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n");
    request(addr, req.as_bytes()).await
}

/// Send `req` on a new connection; the status, head and body of the answer
/// (a body of its Content-Length, or until the server closes).
async fn request(addr: SocketAddr, req: &[u8]) -> (u16, String, String) {
    within(10, "an HTTP response", async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(req).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let length = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().unwrap())
        });
        let mut body = Vec::new();
        match length {
            Some(n) => {
                body.resize(n, 0);
                tcp.read_exact(&mut body).await.unwrap();
            }
            None => match tcp.read_to_end(&mut body).await {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("{e}"),
            },
        }
        (status, head, String::from_utf8(body).unwrap())
    })
    .await
}

/// The upgrade request of a client, with `extra` header lines.
fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Upgrade a raw TCP connection to /echo by hand.
async fn upgraded(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(upgrade_request("/echo", "").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(within(10, "the 101", tcp.read_u8()).await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    tcp
}

/// A client frame with FIN set, masked or not.
fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![0x80 | opcode, payload.len() as u8 | if masked { 0x80 } else { 0 }];
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// The close code of the server's next frame, which must be a close.
async fn close_code(tcp: &mut TcpStream) -> u16 {
    let mut head = [0u8; 2];
    within(10, "a close frame", tcp.read_exact(&mut head)).await.unwrap();
    assert_eq!(head[0], 0x88, "expected a close frame, got {head:02x?}");
    let mut payload = vec![0; usize::from(head[1] & 0x7f)];
    tcp.read_exact(&mut payload).await.unwrap();
    u16::from_be_bytes([payload[0], payload[1]])
}

// ----- the exposition format -------------------------------------------------

/// One scrape, parsed: the samples by name and labels.
struct Scrape {
    text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    valid_name(name) && !name.contains(':')
}

impl Scrape {
    /// Parse the text format (0.0.4), failing the test on anything invalid:
    /// every sample has a `# TYPE` line before it (and a `# HELP` line), names
    /// match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label values are quoted and escaped,
    /// values are numbers, no family is declared twice and no series repeats.
    fn parse(text: &str) -> Scrape {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut helped = HashSet::new();
        let mut series = HashSet::new();
        let mut samples = Vec::new();
        assert!(text.ends_with('\n'), "the exposition must end with a newline");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(valid_name(name), "HELP of an invalid name: {line}");
                assert!(!help.is_empty(), "an empty HELP: {line}");
                assert!(helped.insert(name.to_owned()), "two HELP lines for {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(valid_name(name), "TYPE of an invalid name: {line}");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                assert!(helped.contains(name), "TYPE without a HELP before it: {line}");
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "two TYPE lines for {name}"
                );
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
            let (name, labels, value) = Self::sample(line);
            assert!(valid_name(&name), "invalid metric name in {line:?}");
            let kind = types
                .get(&name)
                .unwrap_or_else(|| panic!("a sample with no TYPE line before it: {line}"));
            if kind == "counter" {
                assert!(name.ends_with("_total"), "a counter not named *_total: {name}");
                assert!(value >= 0.0, "a negative counter: {line}");
            }
            assert!(
                series.insert((name.clone(), labels.clone())),
                "a repeated series: {line}"
            );
            samples.push((name, labels, value));
        }
        Scrape {
            text: text.to_owned(),
            samples,
        }
    }

    /// `name{labels} value` (no timestamp).
    fn sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
        let mut labels = BTreeMap::new();
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("a sample without a value: {line}"),
        };
        let mut rest = rest;
        if let Some(mut inner) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = inner.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (key, after) = inner.split_once("=\"").unwrap_or_else(|| panic!("bad labels: {line}"));
                assert!(valid_label_name(key), "invalid label name {key:?} in {line}");
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            other => panic!("bad escape {other:?} in {line}"),
                        },
                        Some((i, '"')) => break i,
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value in {line}"),
                    }
                };
                assert!(
                    labels.insert(key.to_owned(), value).is_none(),
                    "a repeated label: {line}"
                );
                inner = &after[end + 1..];
                inner = inner.strip_prefix(',').unwrap_or(inner);
            }
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value: {line}"));
        assert!(!value.contains(' '), "a timestamp or junk after the value: {line}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        (name.to_owned(), labels, value)
    }

    /// The value of the series `name` with exactly `labels`; 0 for a series
    /// not shown (counters by code and status appear once they move).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map_or(0.0, |s| s.2)
    }

    /// Whether the family `name` has a sample at all.
    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// The sum of a family over the series whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(v)))
            .map(|s| s.2)
            .sum()
    }
}

fn echo() -> [(&'static str, &'static str); 1] {
    [("endpoint", "echo")]
}

// ----- the tests ---------------------------------------------------------------

/// N echo sockets open: the gauge says N; M messages each way on each: the
/// message and byte counters say so exactly once the sockets closed, and every
/// close is counted as a normal close with code 1000.
#[tokio::test]
async fn echo_sockets_and_messages_are_counted() {
    const N: usize = 5;
    const M: usize = 150;
    let s = Serve::start(&[]).await;
    let before = s.scrape().await;
    assert_eq!(before.value("weft_websockets_open", &echo()), 0.0);
    assert_eq!(before.value("weft_websocket_messages_received_total", &echo()), 0.0);

    let mut sockets = Vec::new();
    for _ in 0..N {
        sockets.push(within(10, "a connect", weft::connect(&s.url("/echo"))).await.unwrap());
    }
    let open = s.until_eq("weft_websockets_open", &echo(), N as f64).await;
    assert_eq!(open.value("weft_websockets_accepted_total", &echo()), N as f64);
    assert!(open.value("weft_tcp_connections_accepted_total", &[]) >= N as f64);
    assert!(open.value("weft_connections_open", &[]) >= N as f64, "{}", open.text);

    let mut bytes = 0usize;
    for (i, ws) in sockets.iter_mut().enumerate() {
        for j in 0..M {
            let len = (i * 7 + j * 13) % 300;
            bytes += len;
            let msg = if j % 2 == 0 {
                Message::from("x".repeat(len))
            } else {
                Message::Binary(Bytes::from(vec![j as u8; len]))
            };
            ws.send(msg.clone()).await.unwrap();
            let back = within(10, "an echo", ws.recv()).await.unwrap().unwrap();
            assert_eq!(back, msg);
        }
    }
    // Sockets still open have counted at least what they already answered
    // once they went idle.
    let total = (N * M) as f64;
    s.until("the counters of idle sockets", |m| {
        m.value("weft_websocket_messages_received_total", &echo()) >= total
            && m.value("weft_websocket_messages_sent_total", &echo()) >= total
    })
    .await;
    for mut ws in sockets {
        within(10, "a close", ws.close(CloseCode::NORMAL, "bye")).await.unwrap();
    }
    let m = s.until_eq("weft_websockets_open", &echo(), 0.0).await;
    assert_eq!(m.value("weft_websocket_messages_received_total", &echo()), total);
    assert_eq!(m.value("weft_websocket_messages_sent_total", &echo()), total);
    assert_eq!(m.value("weft_websocket_received_bytes_total", &echo()), bytes as f64);
    assert_eq!(m.value("weft_websocket_sent_bytes_total", &echo()), bytes as f64);
    assert_eq!(
        m.value("weft_websocket_closes_total", &[("endpoint", "echo"), ("code", "1000")]),
        N as f64
    );
    assert_eq!(m.sum("weft_websocket_failures_total", &[]), 0.0);
    assert_eq!(m.value("weft_websocket_abnormal_closes_total", &echo()), 0.0);
    assert_eq!(m.value("weft_websockets_accepted_total", &echo()), N as f64);
    // Nothing went to the other endpoints.
    for other in ["chat", "topic"] {
        let ep = [("endpoint", other)];
        assert_eq!(m.value("weft_websockets_accepted_total", &ep), 0.0);
        assert_eq!(m.value("weft_websocket_messages_received_total", &ep), 0.0);
    }
}

/// Each refusal is counted under its status: 426 (wrong version), 403 (an
/// origin the policy refuses, on /echo and on the chat), 401 (no token), 404,
/// 400 (garbage) and 431 (a huge header).
#[tokio::test]
async fn refused_handshakes_are_counted_by_status() {
    let s = Serve::start(&["--token", "s3cret", "--allow-origin", "https://app.example"]).await;
    let token = "Authorization: Bearer s3cret\r\n";
    let bad_version = upgrade_request("/echo", token).replace("Version: 13", "Version: 8");
    let (status, head, _) = request(s.addr, bad_version.as_bytes()).await;
    assert_eq!(status, 426, "{head}");
    for path in ["/echo", "/chat/lobby"] {
        let req = upgrade_request(path, &format!("{token}Origin: https://evil.example\r\n"));
        let (status, head, _) = request(s.addr, req.as_bytes()).await;
        assert_eq!(status, 403, "{path}: {head}");
    }
    let (status, head, _) = request(s.addr, upgrade_request("/echo", "").as_bytes()).await;
    assert_eq!(status, 401, "{head}");
    let (status, _, _) = get(s.addr, "/nope", "").await;
    assert_eq!(status, 404);
    let (status, _, _) = request(s.addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n").await;
    assert_eq!(status, 400);
    let huge = format!("X-Huge: {}\r\n", "a".repeat(32 * 1024));
    let (status, _, _) = get(s.addr, "/", &huge).await;
    assert_eq!(status, 431);

    let m = s
        .until("every refusal counted", |m| {
            m.sum("weft_handshakes_refused_total", &[]) >= 7.0
        })
        .await;
    let refused = |status: &str| m.value("weft_handshakes_refused_total", &[("status", status)]);
    assert_eq!(refused("426"), 1.0, "{}", m.text);
    assert_eq!(refused("403"), 2.0, "{}", m.text);
    assert_eq!(refused("401"), 1.0, "{}", m.text);
    assert_eq!(refused("404"), 1.0, "{}", m.text);
    assert_eq!(refused("400"), 1.0, "{}", m.text);
    assert_eq!(refused("431"), 1.0, "{}", m.text);
    assert_eq!(m.sum("weft_websockets_accepted_total", &[]), 0.0);
    // /metrics itself is not under the origin policy or the token.
    let (status, _, body) = get(s.addr, "/metrics", "Origin: https://evil.example\r\n").await;
    assert_eq!(status, 200);
    Scrape::parse(&body);
}

/// Protocol failures are counted under the close code weft sent (1002 for an
/// unmasked frame, 1007 for invalid UTF-8); a TCP connection dropped without
/// a close is abnormal.
#[tokio::test]
async fn protocol_failures_count_their_close_code() {
    let s = Serve::start(&[]).await;
    let mut unmasked = upgraded(s.addr).await;
    unmasked.write_all(&frame(0x1, b"hello", false)).await.unwrap();
    assert_eq!(close_code(&mut unmasked).await, 1002);
    let mut bad_utf8 = upgraded(s.addr).await;
    bad_utf8.write_all(&frame(0x1, b"\xff\xfe", true)).await.unwrap();
    assert_eq!(close_code(&mut bad_utf8).await, 1007);
    drop(upgraded(s.addr).await);

    let m = s.until_eq("weft_websockets_open", &echo(), 0.0).await;
    let failures = |code: &str| m.value("weft_websocket_failures_total", &[("endpoint", "echo"), ("code", code)]);
    assert_eq!(failures("1002"), 1.0, "{}", m.text);
    assert_eq!(failures("1007"), 1.0, "{}", m.text);
    assert_eq!(
        m.value("weft_websocket_abnormal_closes_total", &echo()),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(m.sum("weft_websocket_closes_total", &[]), 0.0, "{}", m.text);
    assert_eq!(m.value("weft_websockets_accepted_total", &echo()), 3.0);
}

/// Timeouts: a request head that never comes (--handshake-timeout) and a
/// peer that does not answer pings (--idle-timeout) are counted by kind.
#[tokio::test]
async fn timeouts_are_counted_by_kind() {
    let s = Serve::start(&["--handshake-timeout", "1", "--idle-timeout", "1"]).await;
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    // A raw client never answers the keepalive's pings.
    let mut deaf = upgraded(s.addr).await;
    let mut sink = Vec::new();
    within(
        30,
        "the server closing the silent connection",
        silent.read_to_end(&mut sink),
    )
    .await
    .unwrap();
    assert!(sink.is_empty());
    let m = s
        .until_eq(
            "weft_websocket_timeouts_total",
            &[("endpoint", "echo"), ("kind", "keepalive")],
            1.0,
        )
        .await;
    assert_eq!(m.value("weft_handshake_timeouts_total", &[]), 1.0, "{}", m.text);
    assert_eq!(m.value("weft_websockets_open", &echo()), 0.0);
    let _ = deaf.read_to_end(&mut sink).await;
}

/// Chat members and topic subscribers: the gauges, the hub's subscribers and
/// topics, what was published and delivered, and the messages each way.
#[tokio::test]
async fn chat_and_topic_sockets_and_the_hub_are_counted() {
    let s = Serve::start(&[]).await;
    let mut a = weft::connect(&s.url("/topic/news")).await.unwrap();
    let mut b = weft::connect(&s.url("/topic/news")).await.unwrap();
    let mut member = weft::connect(&s.url("/chat/lobby?nick=Ada")).await.unwrap();
    // The welcome and the member's own join notice.
    for what in ["the welcome", "the join"] {
        within(10, what, member.recv()).await.unwrap().unwrap();
    }
    let m = s
        .until("three subscribers", |m| m.value("weft_hub_subscribers", &[]) == 3.0)
        .await;
    assert_eq!(m.value("weft_hub_topics", &[]), 2.0, "{}", m.text);
    assert_eq!(m.value("weft_websockets_open", &[("endpoint", "topic")]), 2.0);
    assert_eq!(m.value("weft_websockets_open", &[("endpoint", "chat")]), 1.0);
    assert_eq!(
        m.value("weft_hub_published_total", &[]),
        1.0,
        "the join notice: {}",
        m.text
    );
    assert_eq!(
        m.value("weft_hub_backend_connected", &[("backend", "in-process")]),
        1.0,
        "{}",
        m.text
    );

    for i in 0..3 {
        a.send(format!("news {i}")).await.unwrap();
    }
    for ws in [&mut a, &mut b] {
        for i in 0..3 {
            let msg = within(10, "a published message", ws.recv()).await.unwrap().unwrap();
            assert_eq!(msg, Message::from(format!("news {i}")));
        }
    }
    member.send("hello room").await.unwrap();
    let echoed = within(10, "the member's own message", member.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(echoed.as_text().unwrap().contains("hello room"));

    for ws in [&mut a, &mut b, &mut member] {
        within(10, "a close", ws.close(CloseCode::NORMAL, "")).await.unwrap();
    }
    let m = s
        .until("every socket gone and the leave published", |m| {
            // The member's leave is published after its socket is counted
            // closed and its subscription dropped.
            m.sum("weft_websockets_open", &[]) == 0.0
                && m.value("weft_hub_subscribers", &[]) == 0.0
                && m.value("weft_hub_published_total", &[]) >= 6.0
        })
        .await;
    let topic = [("endpoint", "topic")];
    let chat = [("endpoint", "chat")];
    // Published: the join, three on the topic, the chat message, the leave.
    assert_eq!(m.value("weft_hub_published_total", &[]), 6.0, "{}", m.text);
    assert_eq!(m.value("weft_hub_publish_failed_total", &[]), 0.0);
    // Delivered: the join and the chat message to the member, three to each
    // subscriber (the leave found nobody).
    assert_eq!(m.value("weft_hub_delivered_total", &[]), 8.0, "{}", m.text);
    assert_eq!(m.sum("weft_hub_evicted_total", &[]), 0.0);
    assert_eq!(m.value("weft_hub_topics", &[]), 0.0);
    assert_eq!(
        m.value("weft_websocket_messages_received_total", &topic),
        3.0,
        "{}",
        m.text
    );
    assert_eq!(m.value("weft_websocket_messages_sent_total", &topic), 6.0, "{}", m.text);
    assert_eq!(
        m.value("weft_websocket_received_bytes_total", &topic),
        3.0 * "news 0".len() as f64
    );
    assert_eq!(
        m.value("weft_websocket_sent_bytes_total", &topic),
        6.0 * "news 0".len() as f64
    );
    assert_eq!(m.value("weft_websocket_messages_received_total", &chat), 1.0);
    assert_eq!(
        m.value("weft_websocket_received_bytes_total", &chat),
        "hello room".len() as f64
    );
    // The welcome, the join, the message.
    assert_eq!(m.value("weft_websocket_messages_sent_total", &chat), 3.0, "{}", m.text);
    assert_eq!(m.value("weft_websockets_accepted_total", &topic), 2.0);
    assert_eq!(m.value("weft_websockets_accepted_total", &chat), 1.0);
    assert_eq!(
        m.value(
            "weft_websocket_closes_total",
            &[("endpoint", "topic"), ("code", "1000")]
        ),
        2.0
    );
    assert_eq!(
        m.value("weft_websocket_closes_total", &[("endpoint", "chat"), ("code", "1000")]),
        1.0
    );
}

/// The process: descriptors and resident memory agree with /proc, the start
/// time is now-ish, the uptime grows, and the version is the crate's.
#[tokio::test]
async fn process_metrics_are_plausible() {
    let s = Serve::start(&[]).await;
    let m = s.scrape().await;
    let fds = m.value("process_open_fds", &[]);
    // The scrape's own connection may or may not be counted by the time /proc is read.
    let seen = s.fds() as f64;
    assert!(
        fds >= 3.0 && (fds - seen).abs() <= 3.0,
        "process_open_fds {fds}, /proc says {seen}"
    );
    assert!(m.value("process_max_fds", &[]) >= fds);
    let rss = m.value("process_resident_memory_bytes", &[]);
    let proc_rss = s.status_bytes("VmRSS:");
    assert!(rss >= 1024.0 * 1024.0, "RSS {rss}");
    assert!(
        rss > proc_rss / 2.0 && rss < proc_rss * 2.0,
        "process_resident_memory_bytes {rss}, /proc says {proc_rss}"
    );
    assert!(m.value("process_virtual_memory_bytes", &[]) >= rss);
    assert!(m.value("process_threads", &[]) >= 1.0);
    assert!(m.has("process_cpu_seconds_total"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let start = m.value("process_start_time_seconds", &[]);
    assert!(start <= now + 1.0 && start > now - 600.0, "start {start}, now {now}");
    let uptime = m.value("weft_uptime_seconds", &[]);
    assert!((0.0..600.0).contains(&uptime), "uptime {uptime}");
    assert_eq!(
        m.value("weft_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0,
        "{}",
        m.text
    );
    let later = s
        .until("the uptime growing", |n| n.value("weft_uptime_seconds", &[]) > uptime)
        .await;
    assert!(later.value("weft_tcp_connections_accepted_total", &[]) >= 2.0);
}

/// --metrics-listen moves /metrics to a listener of its own (the main one
/// answers 404), where it is not under --max-connections: with every place
/// taken, the 503s are counted and readable. --no-metrics turns it off.
#[tokio::test]
async fn metrics_listen_and_no_metrics() {
    let s = Serve::start(&["--metrics-listen", "127.0.0.1:0", "--max-connections", "2"]).await;
    assert_ne!(s.metrics, s.addr);
    let (status, _, _) = get(s.addr, "/metrics", "").await;
    assert_eq!(status, 404);
    // That connection's place is given back once its task ends.
    s.until_eq("weft_connections_open", &[], 0.0).await;
    let _held = [upgraded(s.addr).await, upgraded(s.addr).await];
    let (status, head, _) = get(s.addr, "/", "").await;
    assert_eq!(status, 503, "{head}");
    let m = s.until_eq("weft_websockets_open", &echo(), 2.0).await;
    assert_eq!(m.value("weft_connections_refused_total", &[]), 1.0, "{}", m.text);
    assert_eq!(m.value("weft_handshakes_refused_total", &[("status", "503")]), 1.0);
    assert_eq!(m.value("weft_connections_max", &[]), 2.0);
    assert_eq!(m.value("weft_connections_open", &[]), 2.0, "{}", m.text);
    // The 404 and the 503 went to the main listener; the scrapes did not.
    assert_eq!(m.value("weft_tcp_connections_accepted_total", &[]), 4.0, "{}", m.text);

    let off = Serve::start(&["--no-metrics"]).await;
    let (status, _, _) = get(off.addr, "/metrics", "").await;
    assert_eq!(status, 404);
    let (status, _, _) = get(off.addr, "/healthz", "").await;
    assert_eq!(status, 200);
}
