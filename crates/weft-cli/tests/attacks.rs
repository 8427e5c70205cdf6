//! Tests that attack `weft serve`.
//!
//! Each test starts the real binary on 127.0.0.1, port 0, attacks it with raw
//! TCP clients, and checks three things:
//!
//! 1. the offender gets exactly what weft defines for it (an HTTP status, a
//!    close code and reason, or a dropped connection, and why);
//! 2. a well-behaved client (`weft::connect`) is served correctly during the
//!    attack and after it, and a new one can connect afterwards;
//! 3. the server's memory and file descriptors stay bounded: peak RSS
//!    (`VmHWM`), current RSS (`VmRSS`) and the entries of `/proc/PID/fd` are
//!    read before and after, and must stay within a documented allowance.
//!
//! Bounds are on memory and counts, never on speed. Waits are bounded so that
//! a hang fails instead of stalling the suite. The figures each test measured
//! are printed on stderr (`cargo test -p weft-cli --test attacks -- --nocapture`)
//! as lines starting with `figures:`.
//!
//! File descriptors: the test process and the server share the soft limit of
//! the shell that runs them (`ulimit -n`). The largest tests (1,000 slowloris
//! connections, 5,000 dropped handshakes) scale down, and say so, when that
//! limit is too low for them; `tests/soak/soak.sh` raises it to the hard limit.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft::{CloseCode, Message};

/// The masking key of every attacker frame.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One MiB in KiB, the unit of the memory figures in /proc.
const MIB: u64 = 1024;

// ----- the server under attack ---------------------------------------------

/// Memory of the server, in KiB, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug)]
struct Mem {
    /// Peak resident set size (`VmHWM`).
    hwm: u64,
    /// Resident set size now (`VmRSS`).
    rss: u64,
}

/// A `weft serve` process on 127.0.0.1, killed (by its PID) when dropped.
struct Serve {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    /// The last lines of its stderr.
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Serve {
    /// Start `weft serve --listen 127.0.0.1:0 ARGS` and wait for the line
    /// saying where it listens.
    async fn start(args: &[&str]) -> Serve {
        let common::Started {
            child, addr, mut lines, ..
        } = common::start_serve(args).await;
        let pid = child.id().unwrap();
        // Keep reading stderr so the server never blocks on a full pipe.
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let keep = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut l = keep.lock().unwrap();
                if l.len() == 200 {
                    l.pop_front();
                }
                l.push_back(line);
            }
        });
        Serve { child, pid, addr, log }
    }

    fn url(&self) -> String {
        format!("ws://{}/echo", self.addr)
    }

    fn mem(&self) -> Mem {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let field = |name: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            line[name.len()..].trim().trim_end_matches("kB").trim().parse().unwrap()
        };
        Mem {
            hwm: field("VmHWM:"),
            rss: field("VmRSS:"),
        }
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).unwrap().count()
    }

    /// Whether a line of the log contains `s`.
    fn logged(&self, s: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(s))
    }

    /// Wait (bounded) until the log has a line containing `s`.
    async fn wait_logged(&self, s: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.logged(s) {
            assert!(
                Instant::now() < deadline,
                "no log line with {s:?}; log: {:?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait (bounded) until the server holds at most `max` descriptors.
    async fn settle_fds(&self, max: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let n = self.fds();
            if n <= max {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "the server still holds {n} fds (bound {max})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait (bounded) until the server holds at least `min` descriptors.
    async fn reach_fds(&self, min: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let n = self.fds();
            if n >= min {
                return n;
            }
            assert!(Instant::now() < deadline, "the server holds {n} fds, expected {min}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // SIGKILL to this child's PID only.
        let _ = self.child.start_kill();
    }
}

/// What was measured before an attack.
struct Baseline {
    mem: Mem,
    fds: usize,
}

impl Baseline {
    fn take(s: &Serve) -> Baseline {
        Baseline {
            mem: s.mem(),
            fds: s.fds(),
        }
    }

    /// Check the peak RSS against the baseline plus `allowance_kib`, and print
    /// the figures.
    fn check_peak(&self, s: &Serve, test: &str, allowance_kib: u64) -> Mem {
        let now = s.mem();
        eprintln!(
            "figures: {test}: baseline RSS {} KiB (peak {} KiB), {} fds; after the attack peak RSS {} KiB \
             (+{} KiB, allowance {} KiB), RSS {} KiB, {} fds",
            self.mem.rss,
            self.mem.hwm,
            self.fds,
            now.hwm,
            now.hwm.saturating_sub(self.mem.hwm),
            allowance_kib,
            now.rss,
            s.fds()
        );
        assert!(
            now.hwm <= self.mem.hwm + allowance_kib,
            "{test}: peak RSS grew from {} KiB to {} KiB, over the allowance of {} KiB",
            self.mem.hwm,
            now.hwm,
            allowance_kib
        );
        now
    }
}

// ----- the well-behaved client ---------------------------------------------

/// A `weft::connect` client whose every round trip is checked.
struct Good {
    ws: weft::WebSocket<weft::MaybeTlsStream>,
    n: u64,
}

impl Good {
    async fn connect(s: &Serve) -> Good {
        let ws = within(10, "the good client's handshake", weft::connect(&s.url()))
            .await
            .unwrap();
        Good { ws, n: 0 }
    }

    /// A text and a binary message, each echoed exactly.
    async fn round_trip(&mut self) {
        self.n += 1;
        let n = self.n;
        let text = format!("good client, message {n}");
        let binary = pattern(n, 1500);
        within(10, "the good client's round trip", async {
            self.ws.send(text.clone()).await.unwrap();
            self.ws.send(binary.clone()).await.unwrap();
            assert_eq!(self.ws.recv().await.unwrap().unwrap(), Message::from(text));
            assert_eq!(self.ws.recv().await.unwrap().unwrap(), Message::from(binary));
        })
        .await;
    }

    async fn close(mut self) {
        within(10, "the good client's close", self.ws.close(CloseCode::NORMAL, "done"))
            .await
            .unwrap();
    }
}

/// A well-behaved client making round trips in the background until stopped.
struct GoodLoop {
    stop: watch::Sender<bool>,
    task: JoinHandle<u64>,
}

impl GoodLoop {
    async fn start(s: &Serve) -> GoodLoop {
        let mut good = Good::connect(s).await;
        good.round_trip().await;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            while !*stopped.borrow() {
                good.round_trip().await;
                let _ = tokio::time::timeout(Duration::from_millis(50), stopped.changed()).await;
            }
            good.round_trip().await;
            let n = good.n;
            good.close().await;
            n
        });
        GoodLoop { stop, task }
    }

    /// Stop; every round trip was checked, return how many there were.
    async fn finish(self) -> u64 {
        let _ = self.stop.send(true);
        within(20, "the good client's loop", self.task).await.unwrap()
    }
}

/// After an attack: a new client is served too.
async fn new_client_is_served(s: &Serve) {
    let mut good = Good::connect(s).await;
    good.round_trip().await;
    good.close().await;
}

// ----- raw attackers --------------------------------------------------------

/// Bound an await so that a hang fails the test.
async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

/// `n` bytes that depend on `seed` and do not repeat on a short stride.
fn pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The upgrade request a browser-like client sends, with `extra` header lines.
fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A parsed HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Read a response head byte by byte (nothing past it is consumed), then a
/// body of its Content-Length.
async fn read_response(tcp: &mut TcpStream) -> io::Result<Response> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await?);
        assert!(head.len() < 16 * 1024, "response head too long");
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut r = Response {
        status,
        head,
        body: Vec::new(),
    };
    if let Some(len) = r.header("content-length") {
        let mut body = vec![0; len.parse().unwrap()];
        tcp.read_exact(&mut body).await?;
        r.body = body;
    }
    Ok(r)
}

/// Send `request` and read the response.
async fn http(addr: SocketAddr, request: &[u8]) -> Response {
    within(10, "an HTTP response", async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        read_response(&mut tcp).await.unwrap()
    })
    .await
}

/// Everything until the peer closes; a reset after the data counts as the end
/// (a server that closes with unread input resets the connection).
async fn read_to_end<R: AsyncRead + Unpin>(tcp: &mut R) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Connect and upgrade by hand to /echo.
async fn upgraded(addr: SocketAddr, extra: &str) -> (TcpStream, Response) {
    within(10, "a raw upgrade", async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(upgrade_request("/echo", extra).as_bytes()).await.unwrap();
        let r = read_response(&mut tcp).await.unwrap();
        assert_eq!(r.status, 101, "{}", r.head);
        (tcp, r)
    })
    .await
}

/// The header of a masked client frame announcing `len` payload bytes.
fn header(first_byte: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first_byte];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out
}

/// A masked client frame.
fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(first_byte, payload.len() as u64);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// Read one server frame: first byte and payload (at most 64 MiB).
async fn read_frame<R: AsyncRead + Unpin>(tcp: &mut R) -> io::Result<(u8, Vec<u8>)> {
    let b0 = tcp.read_u8().await?;
    let b1 = tcp.read_u8().await?;
    assert_eq!(b1 & 0x80, 0, "a server frame must not be masked");
    let len = match b1 & 0x7f {
        126 => u64::from(tcp.read_u16().await?),
        127 => tcp.read_u64().await?,
        n => u64::from(n),
    };
    assert!(len <= 64 << 20, "a server frame of {len} bytes");
    let mut payload = vec![0; len as usize];
    tcp.read_exact(&mut payload).await?;
    Ok((b0, payload))
}

/// The next frame must be a close with `code` and `reason`, and the server
/// must then close the TCP connection without sending anything else.
async fn expect_close<R: AsyncRead + Unpin>(tcp: &mut R, code: u16, reason: &str) {
    expect_close_for("", tcp, code, reason).await;
}

/// [`expect_close`], naming the case in failures.
async fn expect_close_for<R: AsyncRead + Unpin>(what: &str, tcp: &mut R, code: u16, reason: &str) {
    let (b0, payload) = within(10, "a close frame", read_frame(tcp)).await.unwrap();
    assert_eq!(b0, 0x88, "{what}: expected a close frame, got {b0:#04x} {payload:02x?}");
    assert!(
        payload.len() >= 2,
        "{what}: the close frame has no code: {payload:02x?}"
    );
    let got = u16::from_be_bytes([payload[0], payload[1]]);
    let got_reason = String::from_utf8_lossy(&payload[2..]);
    assert_eq!((got, &*got_reason), (code, reason), "{what}: close code and reason");
    let rest = within(10, "the end of the connection", read_to_end(tcp)).await;
    assert!(rest.is_empty(), "{what}: bytes after the close frame: {rest:02x?}");
}

/// Write `data` from a task that ignores write errors (the server may close
/// the connection before it has read everything, which is the point).
fn write_in_background(tcp: tokio::net::tcp::OwnedWriteHalf, data: Vec<u8>) -> JoinHandle<io::Result<()>> {
    let mut tcp = tcp;
    tokio::spawn(async move { tcp.write_all(&data).await })
}

/// The soft limit on open files of this process (the server inherits it).
fn soft_fd_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line["Max open files".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or(usize::MAX)
}

/// `wanted` connections, or fewer if the soft fd limit cannot hold them
/// beside the other tests running in this process (said on stderr).
fn scaled(test: &str, wanted: usize) -> usize {
    let limit = soft_fd_limit();
    // Both attacks that hold many connections may run at once: leave room.
    let n = wanted.min(limit.saturating_sub(7_000).max(limit / 4));
    if n < wanted {
        eprintln!("{test}: scaled down from {wanted} to {n} connections: the soft fd limit is {limit}");
    }
    n
}

// ----- the attacks ------------------------------------------------------------

/// Slowloris: 1,000 connections each send one byte of an upgrade request every
/// 300 ms, and 100 more send nothing at all. With `--handshake-timeout 5`
/// every one of them is dropped by the timeout (no response is sent: the
/// server just closes), none earlier than the timeout, and none gets its
/// request through. The well-behaved client is served all along, and the
/// server's descriptors return to the baseline.
///
/// Needs about 1,100 descriptors in this process and in the server: with a
/// soft `ulimit -n` too low for that beside the other tests, it runs fewer
/// connections and says so on stderr (see `scaled`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_by_the_handshake_timeout() {
    // 5 s: long enough for every connection to be open at once even when a
    // busy machine makes connecting slow (the peak below needs that).
    let s = Serve::start(&["--handshake-timeout", "5"]).await;
    let good = GoodLoop::start(&s).await;
    let base = Baseline::take(&s);
    let slow = scaled("slowloris", 1_000);
    let silent = 100;
    let request = upgrade_request("/echo", "");

    // Connect first, a few hundred at a time (more at once would overflow
    // the listen backlog and leave connects waiting on SYN retransmits).
    let mut conns = Vec::with_capacity(slow + silent);
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..slow + silent {
        let addr = s.addr;
        connecting.spawn(async move { (Instant::now(), TcpStream::connect(addr).await.unwrap()) });
        if connecting.len() >= 200 {
            conns.push(within(20, "a connect", connecting.join_next()).await.unwrap().unwrap());
        }
    }
    while let Some(c) = within(20, "a connect", connecting.join_next()).await {
        conns.push(c.unwrap());
    }
    let mut tasks = Vec::new();
    for (i, (start, mut tcp)) in conns.into_iter().enumerate() {
        let request = request.clone().into_bytes();
        tasks.push(tokio::spawn(async move {
            let mut received = Vec::new();
            let mut sent = 0;
            let mut buf = [0u8; 512];
            loop {
                if i < slow {
                    assert!(sent < request.len(), "the whole request went through");
                    if tcp.write_all(&request[sent..sent + 1]).await.is_err() {
                        break;
                    }
                    sent += 1;
                }
                match tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await {
                    Err(_) => continue,
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
                }
            }
            (start.elapsed(), received, sent)
        }));
    }
    let peak_fds = s.reach_fds(base.fds + (slow + silent) * 9 / 10).await;
    let mut most_sent = 0;
    for t in tasks {
        let (elapsed, received, sent) = within(30, "a slowloris connection", t).await.unwrap();
        assert!(received.is_empty(), "a slowloris connection got {received:?}");
        // Measured from the connect, which comes before the server's accept
        // and so before its timer starts.
        assert!(
            elapsed >= Duration::from_millis(4_900),
            "a slowloris connection was cut after {elapsed:?}, before the 5 s timeout"
        );
        most_sent = most_sent.max(sent);
    }
    let rounds = good.finish().await;
    assert!(
        rounds >= 5,
        "the good client made only {rounds} round trips during the attack"
    );
    let fds = s.settle_fds(base.fds + 4).await;
    base.check_peak(&s, "slowloris", 64 * MIB);
    eprintln!(
        "figures: slowloris: {slow} slow + {silent} silent connections, at most {most_sent} bytes sent each; \
         server fds peak {peak_fds}, after {fds}; {rounds} good round trips during the attack"
    );
    new_client_is_served(&s).await;
}

/// A 1 MiB header line, and a request with 10,000 header lines: both get 431
/// (hyper answers for the head buffer of 16 KiB and the 64-header limit that
/// `weft serve` configures), and so do 100 short headers (the count limit
/// alone). Memory stays bounded: the server never buffers more than 16 KiB of
/// a head.
#[tokio::test]
async fn huge_and_numerous_headers_get_431() {
    let s = Serve::start(&[]).await;
    let mut good = Good::connect(&s).await;
    good.round_trip().await;
    let base = Baseline::take(&s);

    let big = format!(
        "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many = format!(
        "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n{}\r\n",
        (0..10_000).map(|i| format!("X-H{i}: {i}\r\n")).collect::<String>()
    );
    let hundred = format!(
        "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n{}\r\n",
        (0..100).map(|i| format!("x{i}:1\r\n")).collect::<String>()
    );
    for (what, request) in [
        ("1 MiB header", big),
        ("10,000 headers", many),
        ("100 headers", hundred),
    ] {
        for _ in 0..20 {
            let tcp = TcpStream::connect(s.addr).await.unwrap();
            let (mut rd, wr) = tcp.into_split();
            let writer = write_in_background(wr, request.clone().into_bytes());
            let r = within(10, what, async {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    head.push(rd.read_u8().await.unwrap());
                }
                String::from_utf8(head).unwrap()
            })
            .await;
            assert!(
                r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
                "{what}: {r}"
            );
            // The server closes the connection after the 431.
            let mut rest = Vec::new();
            let end = within(10, "the end of the connection", rd.read_to_end(&mut rest)).await;
            assert!(
                end.is_ok() || end.as_ref().unwrap_err().kind() == io::ErrorKind::ConnectionReset,
                "{end:?}"
            );
            let _ = within(10, "the writer", writer).await;
            good.round_trip().await;
        }
    }
    base.check_peak(&s, "huge headers", 8 * MIB);
    good.round_trip().await;
    good.close().await;
    new_client_is_served(&s).await;
}

/// Garbage and requests that are not WebSocket upgrades, each with the answer
/// `weft serve` defines:
///
/// | request | answer |
/// |---|---|
/// | 4 KiB of random bytes | 400 (hyper: not HTTP) |
/// | a TLS ClientHello | 400 |
/// | an HTTP/2 preface | the connection is closed, no response |
/// | `GET /echo` without `Upgrade` | 426 with `Upgrade: websocket` |
/// | `GET /nope` | 404 |
/// | `POST /echo` upgrade | 405 |
/// | HTTP/1.0 upgrade to /echo | 400 (RFC 6455 §4.2.1/1 wants HTTP/1.1) |
/// | upgrade without `Connection: Upgrade` | 400 |
/// | upgrade without `Sec-WebSocket-Key` | 400 |
/// | upgrade with a 15-byte key | 400 |
#[tokio::test]
async fn garbage_and_non_websocket_requests_get_their_status() {
    let s = Serve::start(&[]).await;
    let mut good = Good::connect(&s).await;
    good.round_trip().await;
    let base = Baseline::take(&s);

    // Random bytes: 400, then the connection is closed.
    for seed in 1..=20 {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        let _ = tcp.write_all(&pattern(seed, 4096)).await;
        let r = within(10, "an answer to garbage", read_response(&mut tcp))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "seed {seed}: {}", r.head);
        assert!(within(10, "the close", read_to_end(&mut tcp)).await.is_empty());
    }
    good.round_trip().await;

    // A TLS ClientHello to the plain-text port.
    let hello = [
        0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03, 0x00, 0x01, 0x02, 0x03,
    ];
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(&hello).await.unwrap();
    let r = within(10, "an answer to TLS", read_response(&mut tcp)).await.unwrap();
    assert_eq!(r.status, 400, "{}", r.head);

    // An HTTP/2 preface: hyper's HTTP/1 server closes without an answer.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let got = within(10, "the end of an HTTP/2 attempt", read_to_end(&mut tcp)).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));

    let r = http(s.addr, b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(r.status, 426, "{}", r.head);
    assert_eq!(r.header("upgrade"), Some("websocket"), "{}", r.head);

    let r = http(s.addr, b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(r.status, 404, "{}", r.head);
    let r = http(s.addr, upgrade_request("/nope", "").as_bytes()).await;
    assert_eq!(r.status, 404, "an upgrade to /nope: {}", r.head);

    let post = upgrade_request("/echo", "").replacen("GET", "POST", 1);
    let r = http(s.addr, post.as_bytes()).await;
    assert_eq!(r.status, 405, "{}", r.head);

    let http10 = upgrade_request("/echo", "").replacen("HTTP/1.1", "HTTP/1.0", 1);
    let r = http(s.addr, http10.as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(String::from_utf8_lossy(&r.body).contains("HTTP/1.1"), "{r:?}");

    let no_connection = upgrade_request("/echo", "").replace("Connection: Upgrade\r\n", "");
    let r = http(s.addr, no_connection.as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.head);

    let no_key = upgrade_request("/echo", "").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let r = http(s.addr, no_key.as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.head);

    let short_key = upgrade_request("/echo", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ");
    let r = http(s.addr, short_key.as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.head);

    good.round_trip().await;
    base.check_peak(&s, "garbage", 8 * MIB);
    s.settle_fds(base.fds + 4).await;
    good.close().await;
    new_client_is_served(&s).await;
}

/// A client of another protocol version gets 426 with
/// `Sec-WebSocket-Version: 13` (RFC 6455 §4.4), and so does one that sends
/// no version.
#[tokio::test]
async fn wrong_version_gets_426_naming_13() {
    let s = Serve::start(&[]).await;
    let mut good = Good::connect(&s).await;
    let base = Baseline::take(&s);
    for version in ["8", "12", "14", "13, 8", ""] {
        let req = if version.is_empty() {
            upgrade_request("/echo", "").replace("Sec-WebSocket-Version: 13\r\n", "")
        } else {
            upgrade_request("/echo", "").replace(
                "Sec-WebSocket-Version: 13",
                &format!("Sec-WebSocket-Version: {version}"),
            )
        };
        let r = http(s.addr, req.as_bytes()).await;
        assert_eq!(r.status, 426, "version {version:?}: {}", r.head);
        assert_eq!(r.header("sec-websocket-version"), Some("13"), "{}", r.head);
        good.round_trip().await;
    }
    base.check_peak(&s, "wrong version", 4 * MIB);
    s.settle_fds(base.fds + 4).await;
    good.close().await;
}

/// A client frame without a mask: close 1002 "unmasked client frame", then the
/// server closes TCP (RFC 6455 §5.1).
#[tokio::test]
async fn unmasked_frames_get_1002() {
    let s = Serve::start(&[]).await;
    let mut good = Good::connect(&s).await;
    let base = Baseline::take(&s);
    for payload in [&b"hello"[..], &[0u8; 200][..], &[][..]] {
        let (mut tcp, _) = upgraded(s.addr, "").await;
        let mut f = vec![0x81];
        f.push(payload.len() as u8 & 0x7f);
        if payload.len() > 125 {
            f[1] = 126;
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(payload);
        tcp.write_all(&f).await.unwrap();
        good.round_trip().await;
        expect_close(&mut tcp, 1002, "unmasked client frame").await;
    }
    good.round_trip().await;
    base.check_peak(&s, "unmasked frames", 4 * MIB);
    good.close().await;
    new_client_is_served(&s).await;
}

/// Invalid UTF-8 in a text message gets 1007 "invalid UTF-8", at the first bad
/// fragment: within one frame; across fragments with the bad byte in a middle
/// fragment (the close arrives before the final fragment is sent); and with a
/// code point split across fragments whose continuation is bad.
#[tokio::test]
async fn invalid_utf8_gets_1007_at_the_first_bad_fragment() {
    let s = Serve::start(&[]).await;
    let mut good = Good::connect(&s).await;
    let base = Baseline::take(&s);

    // Within one frame.
    let (mut tcp, _) = upgraded(s.addr, "").await;
    tcp.write_all(&frame(0x81, b"valid, then \xff\xfe")).await.unwrap();
    good.round_trip().await;
    expect_close(&mut tcp, 1007, "invalid UTF-8").await;

    // A surrogate (ED A0 80) is not UTF-8 either.
    let (mut tcp, _) = upgraded(s.addr, "").await;
    tcp.write_all(&frame(0x81, b"\xed\xa0\x80")).await.unwrap();
    expect_close(&mut tcp, 1007, "invalid UTF-8").await;

    // Across fragments, none of them final: the close comes at the first
    // fragment that cannot be valid, before the final one would be sent.
    let cases: [(&str, &[&[u8]]); 3] = [
        (
            "an overlong '/' in the second fragment",
            &[b"caf\xc3\xa9 ", b"\xc0\xaf"],
        ),
        (
            "a code point cut short by '(' in the second",
            &[b"snow \xe2\x98", b"( rest"],
        ),
        (
            "a 4-byte code point over three, the third bad",
            &[b"\xf0\x9f", b"\x80", b"A"],
        ),
    ];
    for (what, fragments) in cases {
        let (mut tcp, _) = upgraded(s.addr, "").await;
        for (i, f) in fragments.iter().enumerate() {
            tcp.write_all(&frame(if i == 0 { 0x01 } else { 0x00 }, f))
                .await
                .unwrap();
        }
        good.round_trip().await;
        expect_close_for(what, &mut tcp, 1007, "invalid UTF-8").await;
        // Only now would the final fragment have been sent; the server is gone.
        let _ = tcp.write_all(&frame(0x80, b"end")).await;
    }

    // Control: a valid code point split across fragments is echoed whole.
    let (mut tcp, _) = upgraded(s.addr, "").await;
    tcp.write_all(&frame(0x01, b"snow \xe2")).await.unwrap();
    tcp.write_all(&frame(0x00, b"\x98")).await.unwrap();
    tcp.write_all(&frame(0x80, b"\x83 man")).await.unwrap();
    let (b0, payload) = within(10, "the echo", read_frame(&mut tcp)).await.unwrap();
    assert_eq!((b0, payload.as_slice()), (0x81, "snow ☃ man".as_bytes()));

    base.check_peak(&s, "invalid UTF-8", 4 * MIB);
    s.settle_fds(base.fds + 4).await;
    good.round_trip().await;
    good.close().await;
    new_client_is_served(&s).await;
}

/// 64-bit lengths: 2^63 breaks RFC 6455 §5.2 ("the most significant bit MUST
/// be 0") and gets 1002 "invalid payload length"; 2^62 and 2^32 are well
/// formed but over `--max-frame-size` and get 1009 "frame too big". The
/// close comes from the header alone: nothing is allocated for the payload,
/// and peak RSS stays flat (within 4 MiB, allocator noise).
#[tokio::test]
async fn huge_lengths_get_1002_or_1009_without_allocating() {
    let s = Serve::start(&[]).await;
    let mut good = Good::connect(&s).await;
    good.round_trip().await;
    let base = Baseline::take(&s);
    for (len, code, reason) in [
        (1u64 << 63, 1002, "invalid payload length"),
        (u64::MAX, 1002, "invalid payload length"),
        (1u64 << 62, 1009, "frame too big"),
        (1u64 << 32, 1009, "frame too big"),
        ((16 << 20) + 1, 1009, "frame too big"),
    ] {
        let (mut tcp, _) = upgraded(s.addr, "").await;
        let mut h = header(0x82, 1 << 62);
        h[2..10].copy_from_slice(&len.to_be_bytes());
        tcp.write_all(&h).await.unwrap();
        let _ = tcp.write_all(&[0u8; 1000]).await;
        good.round_trip().await;
        expect_close(&mut tcp, code, reason).await;
    }
    base.check_peak(&s, "huge lengths", 4 * MIB);
    good.round_trip().await;
    good.close().await;
    new_client_is_served(&s).await;
}

/// A message over `--max-message-size` (4 MiB here) sent as 256 KiB fragments
/// (64 MiB of them) gets 1009 "message too big" when the header of the
/// fragment that would pass the limit arrives (the 17th); the rest is read
/// and discarded until the server closes. Peak RSS grows by at most twice the limit plus 4 MiB: the
/// reassembly buffer grows geometrically, so for a moment it and its
/// predecessors (which the allocator returns only after its decay time) are
/// both resident. A message of exactly the limit is then echoed whole.
#[tokio::test]
async fn a_message_over_the_limit_in_fragments_gets_1009() {
    const LIMIT: usize = 4 << 20;
    const PIECE: usize = 256 << 10;
    let s = Serve::start(&["--max-message-size", &LIMIT.to_string()]).await;
    let mut good = Good::connect(&s).await;
    good.round_trip().await;
    let base = Baseline::take(&s);

    let (tcp, _) = upgraded(s.addr, "").await;
    let (mut rd, mut wr) = tcp.into_split();
    let piece = pattern(7, PIECE);
    let (first, next) = (frame(0x02, &piece), frame(0x00, &piece));
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < 256 && wr.write_all(if sent == 0 { &first } else { &next }).await.is_ok() {
            sent += 1;
        }
        sent
    });
    good.round_trip().await;
    expect_close(&mut rd, 1009, "message too big").await;
    // After the close the server reads and discards what still comes (a
    // lingering close, so that the close frame is not lost to a reset) for
    // at most its close timeout: nothing past the limit is kept.
    let sent = within(20, "the writer", writer).await.unwrap();
    base.check_peak(&s, "message over the limit", 2 * LIMIT as u64 / 1024 + 4 * MIB);
    eprintln!("figures: message over the limit: the attacker wrote {sent} fragments of 256 KiB");

    // A message of exactly the limit, in the same fragments, is fine.
    let (mut tcp, _) = upgraded(s.addr, "").await;
    for i in 0..LIMIT / PIECE {
        let b0 = match i {
            0 => 0x02,
            i if i == LIMIT / PIECE - 1 => 0x80,
            _ => 0x00,
        };
        tcp.write_all(&frame(b0, &piece)).await.unwrap();
    }
    let (b0, payload) = within(20, "the 4 MiB echo", read_frame(&mut tcp)).await.unwrap();
    assert_eq!(b0, 0x82);
    assert_eq!(payload.len(), LIMIT);
    assert!(payload.chunks(PIECE).all(|c| c == piece.as_slice()));

    good.round_trip().await;
    good.close().await;
    new_client_is_served(&s).await;
}

/// A million 1-byte fragments: the first 131,072 (weft's default
/// `max_fragments`, which `weft serve` keeps) are accepted, as a ping after
/// them is still answered; the header of the 131,073rd gets 1009 "too many
/// fragments", and the rest of the million is never read. The reassembly
/// buffer holds at most 128 KiB, so peak RSS stays within 4 MiB.
#[tokio::test]
async fn a_million_one_byte_fragments_get_1009_at_the_fragment_limit() {
    let max = weft::proto::Config::default().max_fragments;
    assert_eq!(max, 131_072);
    let s = Serve::start(&[]).await;
    let mut good = Good::connect(&s).await;
    good.round_trip().await;
    let base = Baseline::take(&s);

    let (tcp, _) = upgraded(s.addr, "").await;
    let (mut rd, mut wr) = tcp.into_split();
    let one = |i: usize| frame(if i == 0 { 0x02 } else { 0x00 }, &[i as u8]);
    let upto_limit: Vec<u8> = (0..max).flat_map(one).collect();
    within(30, "writing 131,072 fragments", wr.write_all(&upto_limit))
        .await
        .unwrap();
    // Still open after exactly the limit: a ping between fragments is answered.
    wr.write_all(&frame(0x89, b"after 131072")).await.unwrap();
    let (b0, payload) = within(30, "the pong", read_frame(&mut rd)).await.unwrap();
    assert_eq!((b0, payload.as_slice()), (0x8a, &b"after 131072"[..]));
    good.round_trip().await;

    let rest: Vec<u8> = (max..1_000_000).flat_map(one).collect();
    let writer = write_in_background(wr, rest);
    expect_close(&mut rd, 1009, "too many fragments").await;
    let _ = within(30, "the writer", writer).await;
    base.check_peak(&s, "a million fragments", 4 * MIB);
    good.round_trip().await;
    good.close().await;
    new_client_is_served(&s).await;
}

/// A ping flood from a client that never reads: weft keeps only the latest
/// unanswered ping and queues a pong only while less than 64 KiB waits to be
/// written, so the output stays bounded; once nothing can be written for
/// `--write-timeout` (2 s here) the server drops the connection (no close
/// frame: the peer is not reading) and logs "write timed out". Whatever the
/// attacker could still read is pongs, far fewer than its pings.
#[tokio::test]
async fn a_ping_flood_that_never_reads_is_dropped_by_the_write_timeout() {
    let s = Serve::start(&["--write-timeout", "2"]).await;
    let good = GoodLoop::start(&s).await;
    let base = Baseline::take(&s);

    let (tcp, _) = upgraded(s.addr, "").await;
    let (mut rd, mut wr) = tcp.into_split();
    let payload = [b'p'; 125];
    let block = frame(0x89, &payload).repeat(512);
    let start = Instant::now();
    let mut pings = 0u64;
    within(60, "the flood to be cut off", async {
        while wr.write_all(&block).await.is_ok() {
            pings += 512;
        }
    })
    .await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2),
        "cut off after {elapsed:?}, before the write timeout"
    );
    s.wait_logged("write timed out").await;

    let got = within(10, "what the attacker left unread", read_to_end(&mut rd)).await;
    let mut pongs = 0u64;
    let mut rest = &got[..];
    while rest.len() >= 2 + payload.len() {
        assert_eq!(&rest[..2], &[0x8a, 125], "only pongs were sent");
        assert_eq!(&rest[2..2 + payload.len()], &payload);
        rest = &rest[2 + payload.len()..];
        pongs += 1;
    }
    assert!(pongs < pings, "{pongs} pongs for {pings} pings");
    let rounds = good.finish().await;
    let fds = s.settle_fds(base.fds + 4).await;
    base.check_peak(&s, "ping flood", 8 * MIB);
    eprintln!(
        "figures: ping flood: {pings} pings sent in {elapsed:?}, {pongs} pongs readable afterwards; \
         {rounds} good round trips during the attack; {fds} fds after"
    );
    new_client_is_served(&s).await;
}

/// A client that sends messages and never reads: the echo queues at most
/// `--write-buffer` (128 KiB) before the server stops reading from it, so
/// TCP pushes back on the sender; after `--write-timeout` (2 s here) with no
/// progress the server drops the connection and logs "write timed out". The
/// attacker got far less than it tried to send through, and peak RSS stays
/// within 8 MiB.
#[tokio::test]
async fn a_client_that_never_reads_is_dropped_by_the_write_timeout() {
    let s = Serve::start(&["--write-timeout", "2"]).await;
    let good = GoodLoop::start(&s).await;
    let base = Baseline::take(&s);

    let (tcp, _) = upgraded(s.addr, "").await;
    let (_rd, mut wr) = tcp.into_split();
    let msg = frame(0x82, &pattern(3, 64 << 10));
    let start = Instant::now();
    let mut written = 0u64;
    let cap = 256u64 << 20;
    within(60, "the sender to be cut off", async {
        while written < cap && wr.write_all(&msg).await.is_ok() {
            written += msg.len() as u64;
        }
    })
    .await;
    let elapsed = start.elapsed();
    assert!(written < 64 << 20, "the server took {written} bytes without reading");
    assert!(elapsed >= Duration::from_secs(2), "cut off after {elapsed:?}");
    s.wait_logged("write timed out").await;
    let rounds = good.finish().await;
    let fds = s.settle_fds(base.fds + 4).await;
    base.check_peak(&s, "never reads", 8 * MIB);
    eprintln!(
        "figures: never reads: {written} bytes accepted in {elapsed:?} before the drop; \
         {rounds} good round trips during the attack; {fds} fds after"
    );
    new_client_is_served(&s).await;
}

/// Raw DEFLATE of `zeros` zero bytes, flushed, without the `00 00 ff ff`
/// that RFC 7692 §7.2.1 removes.
fn deflated_zeros(zeros: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::best(), false);
    let chunk = vec![0u8; 1 << 20];
    let mut out = Vec::with_capacity(zeros / 500 + 1024);
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len());
        let flush = if n == left {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        let mut input = &chunk[..n];
        loop {
            if out.capacity() - out.len() < 4096 {
                out.reserve(1 << 16);
            }
            let before = c.total_in();
            c.compress_vec(input, &mut out, flush).unwrap();
            input = &input[(c.total_in() - before) as usize..];
            if input.is_empty() && out.capacity() - out.len() >= 4096 {
                break;
            }
        }
        left -= n;
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A decompression bomb: with permessage-deflate negotiated and
/// `--max-message-size 1 MiB`, a frame of about 64 KiB that inflates to
/// 64 MiB gets 1009 "message too big after inflating", whole or in
/// fragments. Inflation stops one byte past the limit, its buffer never
/// allocated larger: peak RSS grows by at most 16 MiB, a quarter of what the
/// bomb holds (the output buffer grows geometrically up to the limit, each
/// connection has its own inflater and deflater, about 300 KiB, and the
/// allocator keeps freed pages for its decay time, per thread).
#[tokio::test]
async fn a_decompression_bomb_gets_1009() {
    const LIMIT: usize = 1 << 20;
    let s = Serve::start(&["--max-message-size", &LIMIT.to_string()]).await;
    let mut good = Good::connect(&s).await;
    good.round_trip().await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

    // Control: RFC 7692 §7.2.3.1's compressed "Hello" is understood.
    let (mut tcp, r) = upgraded(s.addr, offer).await;
    assert_eq!(
        r.header("sec-websocket-extensions"),
        Some("permessage-deflate"),
        "{}",
        r.head
    );
    tcp.write_all(&frame(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]))
        .await
        .unwrap();
    let (b0, payload) = within(10, "the echo", read_frame(&mut tcp)).await.unwrap();
    assert_eq!(
        (b0, payload.as_slice()),
        (0x81, &b"Hello"[..]),
        "short replies go uncompressed"
    );

    let bomb = deflated_zeros(64 << 20);
    assert!(bomb.len() < 128 << 10, "the bomb is {} bytes", bomb.len());
    let base = Baseline::take(&s);
    // Whole.
    let (mut tcp, _) = upgraded(s.addr, offer).await;
    let _ = tcp.write_all(&frame(0xc2, &bomb)).await;
    good.round_trip().await;
    expect_close(&mut tcp, 1009, "message too big after inflating").await;
    // In three fragments: the first has RSV1, the final one is never needed.
    let (mut tcp, _) = upgraded(s.addr, offer).await;
    let third = bomb.len() / 3;
    let _ = tcp.write_all(&frame(0x42, &bomb[..third])).await;
    let _ = tcp.write_all(&frame(0x00, &bomb[third..2 * third])).await;
    let _ = tcp.write_all(&frame(0x80, &bomb[2 * third..])).await;
    good.round_trip().await;
    expect_close(&mut tcp, 1009, "message too big after inflating").await;
    base.check_peak(&s, "decompression bomb", 16 * MIB);
    eprintln!("figures: decompression bomb: {} bytes inflating to 64 MiB", bomb.len());
    good.round_trip().await;
    good.close().await;
    new_client_is_served(&s).await;
}

/// 5,000 connections that send half an upgrade request and are then dropped
/// (half of them with a FIN, half with a reset): while they are open the
/// server holds one descriptor each; once they are gone the descriptors
/// return to the baseline, and RSS returns to within 8 MiB of it once the
/// allocator's background thread has returned the freed pages (its decay
/// time is 10 s; the test waits up to 40 s).
///
/// Needs about 5,000 descriptors in this process and in the server: with a
/// soft `ulimit -n` too low for that beside the other tests, it runs fewer
/// connections and says so on stderr (see `scaled`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_dropped_handshakes_leave_nothing_behind() {
    let s = Serve::start(&[]).await;
    let mut good = Good::connect(&s).await;
    good.round_trip().await;
    let base = Baseline::take(&s);
    let n = scaled("dropped handshakes", 5_000);
    let request = upgrade_request("/echo", "");
    let half = request.as_bytes()[..request.len() / 2].to_vec();

    let mut conns = Vec::with_capacity(n);
    let mut pending = tokio::task::JoinSet::new();
    for _ in 0..n {
        let half = half.clone();
        let addr = s.addr;
        pending.spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(&half).await.unwrap();
            tcp
        });
        if pending.len() >= 256 {
            conns.push(within(10, "a connection", pending.join_next()).await.unwrap().unwrap());
        }
    }
    while let Some(tcp) = within(10, "a connection", pending.join_next()).await {
        conns.push(tcp.unwrap());
    }
    let held = s.reach_fds(base.fds + n).await;
    good.round_trip().await;
    let during = s.mem();
    for (i, tcp) in conns.drain(..).enumerate() {
        if i % 2 == 0 {
            #[allow(deprecated)]
            tcp.set_linger(Some(Duration::ZERO)).unwrap();
        }
        drop(tcp);
    }
    let fds = s.settle_fds(base.fds + 4).await;
    // jemalloc's background thread returns freed pages after its decay
    // time (10 s).
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut mem = s.mem();
    while mem.rss > base.mem.rss + 8 * MIB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        mem = s.mem();
    }
    eprintln!(
        "figures: dropped handshakes: {n} connections; fds {} -> {held} -> {fds}; RSS {} KiB -> {} KiB \
         with them open -> {} KiB after (peak {} KiB)",
        base.fds, base.mem.rss, during.rss, mem.rss, mem.hwm
    );
    assert!(
        mem.rss <= base.mem.rss + 8 * MIB,
        "RSS {} KiB did not return to within 8 MiB of {} KiB",
        mem.rss,
        base.mem.rss
    );
    good.round_trip().await;
    good.close().await;
    new_client_is_served(&s).await;
}

/// Close frames the RFC forbids get 1002 (a 1-byte payload, §5.5.1; codes
/// 1005, 999, 5000 and others that may not be received, §7.4); a reason that
/// is not UTF-8 gets 1007: RFC 6455 §7.4.1 defines 1007 for "data within a
/// message that was not consistent with the type of the message", and §5.5.1
/// says the reason is UTF-8, so weft treats a bad reason as it treats bad text.
/// Valid closes are answered with the peer's code, or an empty close for an
/// empty one.
#[tokio::test]
async fn bad_close_frames_get_1002_or_1007() {
    let s = Serve::start(&[]).await;
    let mut good = Good::connect(&s).await;
    let base = Baseline::take(&s);
    let code = |c: u16| c.to_be_bytes().to_vec();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("1-byte payload", vec![0x03], 1002, "close payload of 1 byte"),
        ("code 1005", code(1005), 1002, "invalid close code"),
        ("code 1006", code(1006), 1002, "invalid close code"),
        ("code 999", code(999), 1002, "invalid close code"),
        ("code 0", code(0), 1002, "invalid close code"),
        ("code 1004", code(1004), 1002, "invalid close code"),
        ("code 1016", code(1016), 1002, "invalid close code"),
        ("code 5000", code(5000), 1002, "invalid close code"),
        ("code 65535", code(65535), 1002, "invalid close code"),
        (
            "reason not UTF-8",
            [code(1000), vec![b'o', b'k', 0xff]].concat(),
            1007,
            "invalid UTF-8",
        ),
        (
            "reason a lone surrogate",
            [code(1000), vec![0xed, 0xa0, 0x80]].concat(),
            1007,
            "invalid UTF-8",
        ),
        ("valid 1000", [code(1000), b"bye".to_vec()].concat(), 1000, ""),
        ("valid 4000", code(4000), 4000, ""),
    ];
    for (what, payload, want, reason) in cases {
        let (mut tcp, _) = upgraded(s.addr, "").await;
        tcp.write_all(&frame(0x88, &payload)).await.unwrap();
        good.round_trip().await;
        expect_close_for(what, &mut tcp, want, reason).await;
    }
    // An empty close is answered with an empty close.
    let (mut tcp, _) = upgraded(s.addr, "").await;
    tcp.write_all(&frame(0x88, &[])).await.unwrap();
    let (b0, payload) = within(10, "the close", read_frame(&mut tcp)).await.unwrap();
    assert_eq!((b0, payload.len()), (0x88, 0));
    assert!(within(10, "the end", read_to_end(&mut tcp)).await.is_empty());
    base.check_peak(&s, "bad close frames", 4 * MIB);
    s.settle_fds(base.fds + 4).await;
    good.round_trip().await;
    good.close().await;
}

/// Past `--max-connections` (4 here: the good client and three idle
/// sockets), every further connection gets the fixed 503 answer with
/// `Retry-After: 1` before its request is even read, and is closed. Once the
/// idle sockets go, new clients are admitted again.
#[tokio::test]
async fn past_max_connections_gets_503_before_the_upgrade() {
    let s = Serve::start(&["--max-connections", "4"]).await;
    let mut good = Good::connect(&s).await;
    good.round_trip().await;
    let base = Baseline::take(&s);
    let mut holders = Vec::new();
    for _ in 0..3 {
        holders.push(upgraded(s.addr, "").await.0);
    }
    for i in 0..100 {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        if i % 2 == 0 {
            // Half of them send their upgrade request first.
            let _ = tcp.write_all(upgrade_request("/echo", "").as_bytes()).await;
        }
        let r = within(10, "the 503", read_response(&mut tcp)).await.unwrap();
        assert_eq!(r.status, 503, "{}", r.head);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.body, b"server at its connection limit\n");
        assert!(within(10, "the close", read_to_end(&mut tcp)).await.is_empty());
        if i % 10 == 0 {
            good.round_trip().await;
        }
    }
    // weft::connect sees the refusal too.
    let refused = within(10, "a refused connect", weft::connect(&s.url())).await;
    assert!(refused.is_err(), "a fifth client was admitted");
    good.round_trip().await;
    drop(holders);
    s.settle_fds(base.fds + 4).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fresh = loop {
        match weft::connect(&s.url()).await {
            Ok(ws) => break Good { ws, n: 0 },
            Err(e) => {
                assert!(Instant::now() < deadline, "no slot came free: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    fresh.round_trip().await;
    fresh.close().await;
    good.round_trip().await;
    base.check_peak(&s, "max connections", 4 * MIB);
    good.close().await;
}

/// `--allow-origin` and `--token`: a browser page from another origin gets
/// 403; a missing or wrong token gets 401 (header or query); the right token
/// from an allowed origin, or without an Origin (not a browser), is admitted.
#[tokio::test]
async fn disallowed_origin_gets_403_and_bad_tokens_get_401() {
    let s = Serve::start(&["--token", "s3cret", "--allow-origin", "https://app.example"]).await;
    let url = s.url();
    let mut good = Good {
        ws: within(
            10,
            "the good client",
            weft::Client::new(url.as_str())
                .origin("https://app.example")
                .header("Authorization", "Bearer s3cret")
                .connect(),
        )
        .await
        .unwrap(),
        n: 0,
    };
    good.round_trip().await;
    let base = Baseline::take(&s);
    let cases: Vec<(&str, String, u16)> = vec![
        ("no token", upgrade_request("/echo", ""), 401),
        (
            "wrong bearer token",
            upgrade_request("/echo", "Authorization: Bearer wrong\r\n"),
            401,
        ),
        (
            "token as another scheme",
            upgrade_request("/echo", "Authorization: Basic s3cret\r\n"),
            401,
        ),
        ("wrong query token", upgrade_request("/echo?token=wrong", ""), 401),
        ("empty query token", upgrade_request("/echo?token=", ""), 401),
        (
            "evil origin, right token",
            upgrade_request(
                "/echo",
                "Origin: https://evil.example\r\nAuthorization: Bearer s3cret\r\n",
            ),
            403,
        ),
        (
            "look-alike origin",
            upgrade_request("/echo?token=s3cret", "Origin: https://app.example.evil.test\r\n"),
            403,
        ),
        (
            "evil origin, no token",
            upgrade_request("/echo", "Origin: https://evil.example\r\n"),
            403,
        ),
        ("right query token", upgrade_request("/echo?token=s3cret", ""), 101),
        (
            "right token, allowed origin",
            upgrade_request(
                "/echo",
                "Origin: https://app.example\r\nAuthorization: Bearer s3cret\r\n",
            ),
            101,
        ),
    ];
    for (what, request, status) in cases {
        let r = http(s.addr, request.as_bytes()).await;
        assert_eq!(r.status, status, "{what}: {}", r.head);
        good.round_trip().await;
    }
    base.check_peak(&s, "origin and token", 4 * MIB);
    s.settle_fds(base.fds + 4).await;
    // weft::connect without the token is refused too.
    assert!(weft::connect(&url).await.is_err());
    good.round_trip().await;
    good.close().await;
}

/// A chat socket is held to the server's settings as an echo socket is: with
/// `--idle-timeout 1` a silent member is pinged after a second and dropped
/// when it does not answer; and a chat message is capped at 64 KiB (1009)
/// even though the server allows larger echo messages.
#[tokio::test]
async fn chat_sockets_follow_the_servers_keepalive_and_limits() {
    let s = Serve::start(&["--idle-timeout", "1"]).await;
    let chat_upgrade = |tag: &'static str| async move {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(upgrade_request(&format!("/chat/lobby?nick={tag}"), "").as_bytes())
            .await
            .unwrap();
        let r = within(10, "a chat upgrade", read_response(&mut tcp)).await.unwrap();
        assert_eq!(r.status, 101, "{}", r.head);
        tcp
    };

    // Silent: frames arrive (welcome, join), then a ping, then the end.
    let mut tcp = chat_upgrade("silent").await;
    let start = Instant::now();
    let mut pinged = false;
    let ended = within(15, "the silent member to be dropped", async {
        loop {
            match read_frame(&mut tcp).await {
                Ok((0x89, _)) => pinged = true,
                Ok((0x88, _)) | Err(_) => break start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(pinged, "no keepalive ping within {ended:?}");
    assert!(ended >= Duration::from_secs(1), "dropped after {ended:?}");

    // Over the chat cap: 1009.
    let mut tcp = chat_upgrade("big").await;
    tcp.write_all(&frame(0x81, &vec![b'a'; 70 * 1024])).await.unwrap();
    let code = within(10, "the 1009", async {
        loop {
            if let (0x88, p) = read_frame(&mut tcp).await.unwrap() {
                break u16::from_be_bytes([p[0], p[1]]);
            }
        }
    })
    .await;
    assert_eq!(code, 1009);
    new_client_is_served(&s).await;
}
