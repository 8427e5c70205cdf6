//! `weft bench`: a WebSocket load generator light enough not to be the
//! bottleneck.
//!
//! Every connection runs its own handshake through the sans-I/O core, then
//! sends frames built (and masked) once before the run, so the hot loop does
//! no encoding, masking or allocation per message: it writes a batch of
//! pre-built frames, reads, and skips over the echoed frames' payloads while
//! counting them. Echoes arrive in order, so each message's latency is the
//! time since the matching send. In `--rate` mode (open loop) the clock starts
//! at the moment a message was *due*, not when it was sent, which corrects for
//! coordinated omission.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use weft::WsUrl;
use weft::proto::{ClientExtension, ClientHandshake, ClientRequest, FrameHeader, HandshakeLimits, Opcode};

mod fanout;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Echo traffic: messages per second and latency.
    Echo,
    /// Open --connections connections as fast as possible (at most
    /// --concurrency at a time): handshakes per second.
    Handshake,
    /// Open --connections connections and hold them idle for --hold seconds;
    /// with --server-pid, report the server's memory per connection.
    Idle,
    /// Pub/sub fan-out: --connections subscribers of the URL's topic (a
    /// pub/sub endpoint such as `weft serve`'s /topic/NAME) and one
    /// publisher sending --size-byte binary messages at --rate per second
    /// (default 100) for --duration seconds or --messages messages:
    /// deliveries per second, delivery latency, deliveries lost.
    Fanout,
}

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// The server's URL, e.g. ws://127.0.0.1:8080/echo.
    #[arg(value_name = "URL")]
    url: String,

    /// What to measure.
    #[arg(long, value_enum, default_value = "echo")]
    mode: Mode,

    /// Number of connections.
    #[arg(short = 'c', long, default_value_t = 100, value_name = "N")]
    connections: usize,

    /// Messages kept in flight per connection (closed loop).
    #[arg(short = 'k', long, default_value_t = 1, value_name = "K")]
    in_flight: usize,

    /// Send at this total rate in messages per second instead (open loop,
    /// latency measured from when each message was due). In fanout mode, the
    /// publisher's rate (default 100).
    #[arg(long, value_name = "MSGS_PER_SEC")]
    rate: Option<f64>,

    /// Messages the publisher sends (fanout mode; default: --rate ×
    /// --duration).
    #[arg(long, value_name = "N")]
    messages: Option<u64>,

    /// Seconds between the last subscriber opening and the first message
    /// (fanout mode), for the server to finish subscribing them.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    settle: f64,

    /// Message size in bytes.
    #[arg(short = 's', long, default_value_t = 32, value_name = "BYTES")]
    size: usize,

    /// Send binary messages (default: text).
    #[arg(long)]
    binary: bool,

    /// Seconds to measure.
    #[arg(short = 'd', long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,

    /// Seconds of traffic before measuring starts.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    warmup: f64,

    /// Spread the opening of connections over this many seconds.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    ramp_up: f64,

    /// Negotiate permessage-deflate (the client compresses without context
    /// takeover, so each message's frame is still built once).
    #[arg(long)]
    compression: bool,

    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 1, value_name = "N")]
    threads: usize,

    /// Handshakes in progress at once (handshake mode).
    #[arg(long, default_value_t = 64, value_name = "N")]
    concurrency: usize,

    /// Seconds to hold idle connections (idle mode).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    hold: f64,

    /// The server's process id: report its CPU use (and memory in idle mode).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,

    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,

    /// Write a latency percentile plot (SVG) to this file.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,

    /// Skip certificate verification for wss:// (testing only).
    #[arg(long)]
    insecure: bool,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What the workers share.
struct Shared {
    phase: AtomicU8,
    messages: AtomicU64,
    bytes: AtomicU64,
    /// Messages received in any phase, for the progress line.
    seen: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    errors: Mutex<Vec<(String, u64)>>,
}

impl Shared {
    fn error(&self, kind: String) {
        if let Ok(mut e) = self.errors.lock() {
            match e.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => e.push((kind, 1)),
            }
        }
    }

    /// Account for `n` echoes arriving at `now`, whose timers started at
    /// `starts`; returns the phase they arrived in.
    fn arrived(
        &self,
        n: usize,
        size: usize,
        now: Instant,
        starts: impl Iterator<Item = Instant>,
        samples: &mut Vec<u64>,
    ) -> u8 {
        let phase = self.phase.load(Ordering::Relaxed);
        self.seen.fetch_add(n as u64, Ordering::Relaxed);
        for t in starts.take(n) {
            if phase == MEASURE {
                samples.push(now.saturating_duration_since(t).as_nanos() as u64);
            }
        }
        if phase == MEASURE {
            self.messages.fetch_add(n as u64, Ordering::Relaxed);
            self.bytes.fetch_add((n * size) as u64, Ordering::Relaxed);
            if samples.len() >= 200 {
                self.record(samples);
            }
        }
        phase
    }

    fn record(&self, samples: &mut Vec<u64>) {
        if let Ok(mut h) = self.latency.lock() {
            for s in samples.drain(..) {
                let _ = h.record(s.max(1));
            }
        }
    }
}

/// A transport for the benchmark: TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(crate) fn run(args: BenchArgs) -> ExitCode {
    let url = match WsUrl::parse(&args.url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("weft bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weft bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(bench(args, url))
}

/// Connect, run the client handshake, and return the transport and any bytes
/// read past the response head.
async fn open(
    url: &WsUrl,
    args: &BenchArgs,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<(Box<dyn Io>, BytesMut), String> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = tcp.set_nodelay(true);
    let mut io: Box<dyn Io> = match tls {
        Some(c) => {
            let name = rustls_pki_types::ServerName::try_from(url.host.clone()).map_err(|e| format!("tls: {e}"))?;
            Box::new(c.connect(name, tcp).await.map_err(|e| format!("tls: {e}"))?)
        }
        None => Box::new(tcp),
    };
    let mut extensions: Vec<Arc<dyn ClientExtension>> = Vec::new();
    if args.compression {
        extensions.push(Arc::new(deflate_offer()));
    }
    let request = ClientRequest {
        host: url.host_header(),
        target: url.target.clone(),
        extensions,
        ..ClientRequest::default()
    };
    let (mut hs, bytes) = ClientHandshake::new(request, HandshakeLimits::default()).map_err(|e| e.to_string())?;
    io.write_all(&bytes).await.map_err(|e| format!("write: {}", e.kind()))?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if let Some((_, n)) = hs.parse_response(&buf).map_err(|e| format!("handshake: {e}"))? {
            let _ = buf.split_to(n);
            return Ok((io, buf));
        }
        if io.read_buf(&mut buf).await.map_err(|e| format!("read: {}", e.kind()))? == 0 {
            return Err("handshake: connection closed".into());
        }
    }
}

fn deflate_offer() -> weft::proto::deflate::PerMessageDeflate {
    weft::proto::deflate::PerMessageDeflate::new(
        weft::proto::deflate::DeflateConfig::default()
            .client_no_context_takeover(true)
            .threshold(0),
    )
}

/// One masked frame carrying the benchmark payload, compressed when asked.
fn build_frame(args: &BenchArgs) -> Bytes {
    let payload: Vec<u8> = (0..args.size)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
        .collect();
    let (payload, rsv) = if args.compression {
        let offer = deflate_offer();
        let agreed = weft::proto::ExtensionOffer::new("permessage-deflate").param("client_no_context_takeover", None);
        match ClientExtension::accept(&offer, &agreed) {
            Ok(mut ext) => {
                let mut out = BytesMut::new();
                let kind = if args.binary {
                    weft::DataKind::Binary
                } else {
                    weft::DataKind::Text
                };
                match ext.encode(kind, &payload, true, true, &mut out) {
                    Ok(weft::proto::Encoded::Transformed { rsv }) => (out.to_vec(), rsv),
                    _ => (payload, 0),
                }
            }
            Err(_) => (payload, 0),
        }
    } else {
        (payload, 0)
    };
    let key = [0x5a, 0x17, 0xc3, 0x9e];
    let header = FrameHeader {
        fin: true,
        rsv,
        opcode: if args.binary { Opcode::Binary } else { Opcode::Text },
        mask: Some(key),
        payload_len: payload.len() as u64,
    };
    let mut frame = BytesMut::with_capacity(14 + payload.len());
    header.encode(&mut frame);
    let start = frame.len();
    frame.extend_from_slice(&payload);
    weft::proto::mask::apply_mask(&mut frame[start..], key, 0);
    frame.freeze()
}

/// Counts the data messages the server echoes without copying their
/// payloads: headers are parsed, payloads skipped as they arrive.
#[derive(Default)]
struct FrameCounter {
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    /// Whether the current frame ends a data message.
    counts: bool,
}

impl FrameCounter {
    /// Consume what `buf` holds; returns the messages completed.
    fn count(&mut self, buf: &mut BytesMut) -> Result<usize, String> {
        let mut done = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len());
                buf.advance(n);
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(done);
                }
                done += usize::from(self.counts);
            }
            match FrameHeader::parse(buf) {
                Ok(Some((h, n))) => {
                    buf.advance(n);
                    if h.opcode == Opcode::Close {
                        return Err("server closed the connection".into());
                    }
                    self.skip = usize::try_from(h.payload_len).map_err(|_| "frame too long".to_string())?;
                    self.counts = !h.opcode.is_control() && h.fin;
                    if self.skip == 0 {
                        done += usize::from(self.counts);
                    }
                }
                Ok(None) => return Ok(done),
                Err(e) => return Err(format!("bad frame from server: {e:?}")),
            }
        }
    }
}

async fn echo_closed_loop(
    mut io: Box<dyn Io>,
    mut buf: BytesMut,
    frame: Bytes,
    args: Arc<BenchArgs>,
    shared: Arc<Shared>,
) {
    let k = args.in_flight.max(1);
    let batch: Bytes = frame.repeat(k).into();
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(k);
    let mut samples = Vec::with_capacity(256);
    let now = Instant::now();
    sent.extend(std::iter::repeat_n(now, k));
    if let Err(e) = io.write_all(&batch).await {
        return shared.error(format!("write: {}", e.kind()));
    }
    let mut counter = FrameCounter::default();
    buf.reserve(64 * 1024);
    loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match io.read_buf(&mut buf).await {
            Ok(0) => return shared.error("server closed the connection".into()),
            Ok(_) => {}
            Err(e) => return shared.error(format!("read: {}", e.kind())),
        }
        let n = match counter.count(&mut buf) {
            Ok(n) => n,
            Err(e) => return shared.error(e),
        };
        if n == 0 {
            continue;
        }
        let now = Instant::now();
        let starts = (0..n).map(|_| sent.pop_front().unwrap_or(now));
        let phase = shared.arrived(n, args.size, now, starts, &mut samples);
        if phase == STOP {
            shared.record(&mut samples);
            let _ = io.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]).await;
            return;
        }
        // Refill the window with one write.
        let mut left = n;
        while left > 0 {
            let m = left.min(k);
            if let Err(e) = io.write_all(&batch[..m * frame.len()]).await {
                return shared.error(format!("write: {}", e.kind()));
            }
            left -= m;
        }
        sent.extend(std::iter::repeat_n(now, n));
    }
}

async fn echo_open_loop(
    io: Box<dyn Io>,
    mut buf: BytesMut,
    frame: Bytes,
    args: Arc<BenchArgs>,
    shared: Arc<Shared>,
    per_conn_rate: f64,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let period = Duration::from_secs_f64(1.0 / per_conn_rate.max(1e-3));
    let sh = shared.clone();
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut next_due = Instant::now();
        loop {
            tick.tick().await;
            if sh.phase.load(Ordering::Relaxed) == STOP {
                let _ = wr.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]).await;
                return;
            }
            if due_tx.send(next_due).is_err() {
                return;
            }
            next_due += period;
            if let Err(e) = wr.write_all(&frame).await {
                return sh.error(format!("write: {}", e.kind()));
            }
        }
    });
    let mut samples = Vec::with_capacity(256);
    let mut counter = FrameCounter::default();
    loop {
        buf.reserve(16 * 1024);
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let n = match counter.count(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                shared.error(e);
                break;
            }
        };
        let now = Instant::now();
        let starts = (0..n).map(|_| due_rx.try_recv().unwrap_or(now));
        let phase = shared.arrived(n, args.size, now, starts, &mut samples);
        if phase == STOP {
            break;
        }
    }
    shared.record(&mut samples);
    writer.abort();
}

/// CPU seconds a process has used: the nanosecond run times of its threads
/// from /proc/PID/task/*/schedstat, or else user + system time from
/// /proc/PID/stat (in clock ticks of 10 ms, too coarse for short runs).
fn cpu_seconds(pid: u32) -> Option<f64> {
    schedstat_seconds(pid).or_else(|| stat_seconds(pid))
}

fn schedstat_seconds(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that ended since the listing no longer counts.
        let Ok(line) = std::fs::read_to_string(path) else {
            continue;
        };
        ns += line.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    (ns > 0).then(|| ns as f64 / 1e9)
}

fn stat_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ) on every common platform.
    Some((utime + stime) / 100.0)
}

/// A process's resident memory in bytes, from /proc/PID/status.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn progress(label: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

async fn bench(args: BenchArgs, url: WsUrl) -> ExitCode {
    let tls = if url.tls {
        match weft::tls::client_config(None, args.insecure) {
            Ok(cfg) => Some(tokio_rustls::TlsConnector::from(cfg)),
            Err(e) => {
                eprintln!("weft bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let args = Arc::new(args);
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(WARMUP),
        messages: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        seen: AtomicU64::new(0),
        latency: Mutex::new(
            Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
        ),
        errors: Mutex::new(Vec::new()),
    });
    match args.mode {
        Mode::Echo => echo(args, url, tls, shared).await,
        Mode::Handshake => handshakes(args, url, tls, shared).await,
        Mode::Idle => idle(args, url, tls, shared).await,
        Mode::Fanout => fanout::fanout(args, url, tls, shared).await,
    }
}

async fn open_all(
    args: &Arc<BenchArgs>,
    url: &WsUrl,
    tls: &Option<tokio_rustls::TlsConnector>,
    shared: &Arc<Shared>,
) -> Vec<(Box<dyn Io>, BytesMut)> {
    let n = args.connections;
    let gap = if args.ramp_up > 0.0 {
        Duration::from_secs_f64(args.ramp_up / n as f64)
    } else {
        Duration::ZERO
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (args, url, tls, sem, shared) = (args.clone(), url.clone(), tls.clone(), sem.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            match open(&url, &args, tls.as_ref()).await {
                Ok(c) => Some(c),
                Err(e) => {
                    shared.error(e);
                    None
                }
            }
        }));
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Some(c)) = t.await {
            conns.push(c);
        }
    }
    conns
}

async fn echo(
    args: Arc<BenchArgs>,
    url: WsUrl,
    tls: Option<tokio_rustls::TlsConnector>,
    shared: Arc<Shared>,
) -> ExitCode {
    let frame = build_frame(&args);
    let bar = progress("connecting");
    let conns = open_all(&args, &url, &tls, &shared).await;
    if conns.is_empty() {
        bar.finish_and_clear();
        eprintln!("weft bench: no connection could be opened: {}", errors_line(&shared));
        return ExitCode::FAILURE;
    }
    let opened = conns.len();
    let per_conn_rate = args.rate.map(|r| r / opened as f64);
    let mut workers = Vec::with_capacity(opened);
    for (io, buf) in conns {
        let (frame, args, shared) = (frame.clone(), args.clone(), shared.clone());
        workers.push(tokio::spawn(async move {
            match per_conn_rate {
                Some(r) => echo_open_loop(io, buf, frame, args, shared, r).await,
                None => echo_closed_loop(io, buf, frame, args, shared).await,
            }
        }));
    }
    let tick = Duration::from_millis(250);
    let warm_end = Instant::now() + Duration::from_secs_f64(args.warmup);
    while Instant::now() < warm_end {
        tokio::time::sleep(tick).await;
        bar.set_message(format!(
            "warming up: {} connections, {} messages",
            opened,
            shared.seen.load(Ordering::Relaxed)
        ));
    }
    let cpu0 = args.server_pid.and_then(cpu_seconds);
    let t0 = Instant::now();
    shared.phase.store(MEASURE, Ordering::Relaxed);
    let end = t0 + Duration::from_secs_f64(args.duration);
    let mut last = (t0, 0u64);
    while Instant::now() < end {
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        let m = shared.messages.load(Ordering::Relaxed);
        let rate = (m - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, m);
        bar.set_message(format!(
            "measuring: {:.0} msgs/s, {} messages, {} connections",
            rate, m, opened
        ));
    }
    shared.phase.store(STOP, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = args.server_pid.and_then(cpu_seconds);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        for w in workers {
            let _ = w.await;
        }
    })
    .await;
    bar.finish_and_clear();
    let server_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some((b - a) / elapsed),
        _ => None,
    };
    report(&args, &shared, opened, elapsed, server_cpu, None, None)
}

async fn handshakes(
    args: Arc<BenchArgs>,
    url: WsUrl,
    tls: Option<tokio_rustls::TlsConnector>,
    shared: Arc<Shared>,
) -> ExitCode {
    let bar = progress(&format!("opening {} connections", args.connections));
    let cpu0 = args.server_pid.and_then(cpu_seconds);
    let t0 = Instant::now();
    let n = args.connections;
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (args, url, tls, sem, shared) = (args.clone(), url.clone(), tls.clone(), sem.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            let start = Instant::now();
            match open(&url, &args, tls.as_ref()).await {
                Ok(c) => {
                    let mut v = vec![start.elapsed().as_nanos() as u64];
                    shared.record(&mut v);
                    shared.seen.fetch_add(1, Ordering::Relaxed);
                    Some(c)
                }
                Err(e) => {
                    shared.error(e);
                    None
                }
            }
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Some(c)) = t.await {
            conns.push(c);
        }
        bar.set_message(format!("{} handshakes", shared.seen.load(Ordering::Relaxed)));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = args.server_pid.and_then(cpu_seconds);
    bar.finish_and_clear();
    shared.messages.store(conns.len() as u64, Ordering::Relaxed);
    let opened = conns.len();
    close_all(conns).await;
    let server_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some((b - a) / elapsed),
        _ => None,
    };
    report(&args, &shared, opened, elapsed, server_cpu, None, None)
}

async fn close_all(conns: Vec<(Box<dyn Io>, BytesMut)>) {
    let mut closing = Vec::with_capacity(conns.len());
    for (mut io, _) in conns {
        closing.push(tokio::spawn(async move {
            let _ = io.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let mut sink = [0u8; 256];
                while let Ok(n) = io.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        }));
    }
    for c in closing {
        let _ = c.await;
    }
}

async fn idle(
    args: Arc<BenchArgs>,
    url: WsUrl,
    tls: Option<tokio_rustls::TlsConnector>,
    shared: Arc<Shared>,
) -> ExitCode {
    let before = args.server_pid.and_then(rss_bytes);
    let bar = progress(&format!("opening {} connections", args.connections));
    let conns = open_all(&args, &url, &tls, &shared).await;
    bar.set_message(format!("holding {} idle connections", conns.len()));
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let after = args.server_pid.and_then(rss_bytes);
    bar.finish_and_clear();
    let opened = conns.len();
    shared.messages.store(opened as u64, Ordering::Relaxed);
    close_all(conns).await;
    let per_conn = match (before, after) {
        (Some(b), Some(a)) if opened > 0 => Some((a.saturating_sub(b)) as f64 / opened as f64),
        _ => None,
    };
    report(
        &args,
        &shared,
        opened,
        args.hold,
        None,
        per_conn.map(|p| (p, before.unwrap_or(0), after.unwrap_or(0))),
        None,
    )
}

fn errors_line(shared: &Shared) -> String {
    let e = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    if e.is_empty() {
        return "none".into();
    }
    e.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn report(
    args: &BenchArgs,
    shared: &Shared,
    opened: usize,
    elapsed: f64,
    server_cpu: Option<f64>,
    memory: Option<(f64, u64, u64)>,
    fanout: Option<&fanout::FanoutStats>,
) -> ExitCode {
    let h = shared.latency.lock().map(|h| h.clone()).ok();
    let messages = shared.messages.load(Ordering::Relaxed);
    let bytes = shared.bytes.load(Ordering::Relaxed);
    let ms = |ns: u64| ns as f64 / 1e6;
    let pct = |q: f64| {
        h.as_ref()
            .filter(|h| !h.is_empty())
            .map_or(0.0, |h| ms(h.value_at_quantile(q)))
    };
    let max = h.as_ref().filter(|h| !h.is_empty()).map_or(0.0, |h| ms(h.max()));
    let rate = messages as f64 / elapsed;
    let errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    let mode = format!("{:?}", args.mode).to_lowercase();
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut j = String::new();
        let _ = write!(
            j,
            "{{\"mode\":\"{mode}\",\"url\":{:?},\"connections\":{opened},\"in_flight\":{},\"size\":{},\"binary\":{},\"compression\":{},\"seconds\":{elapsed:.3},\"messages\":{messages},\"msgs_per_sec\":{rate:.1},\"mb_per_sec\":{:.3},\"latency_ms\":{{\"p50\":{:.4},\"p90\":{:.4},\"p99\":{:.4},\"p99_9\":{:.4},\"max\":{max:.4}}}",
            args.url,
            args.in_flight,
            args.size,
            args.binary || args.mode == Mode::Fanout,
            args.compression,
            bytes as f64 / elapsed / 1e6,
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(0.999)
        );
        if let Some(cpu) = server_cpu {
            let _ = write!(
                j,
                ",\"server_cpu\":{cpu:.4},\"msgs_per_server_cpu_sec\":{:.1}",
                rate / cpu.max(1e-9)
            );
        }
        if let Some(f) = fanout {
            let _ = write!(
                j,
                ",\"fanout\":{{\"subscribers\":{},\"rate\":{:.1},\"published\":{},\"publish_seconds\":{:.3},\"expected\":{},\"delivered\":{},\"lost\":{},\"lost_closed\":{},\"lost_open\":{},\"closed_subscribers\":{}",
                f.subscribers,
                f.rate,
                f.published,
                f.publish_seconds,
                f.expected,
                f.delivered,
                f.expected.saturating_sub(f.delivered),
                f.lost_closed,
                f.lost_open,
                f.closed
            );
            if let Some(c) = f.client_cpu {
                let _ = write!(j, ",\"client_cpu\":{c:.4}");
            }
            let _ = write!(j, "}}");
        }
        if let Some((per, before, after)) = memory {
            let _ = write!(
                j,
                ",\"server_rss_before\":{before},\"server_rss_after\":{after},\"server_rss_per_conn\":{per:.1}"
            );
        }
        let _ = write!(j, ",\"errors\":{{");
        for (i, (k, n)) in errors.iter().enumerate() {
            let _ = write!(j, "{}{k:?}:{n}", if i > 0 { "," } else { "" });
        }
        let _ = write!(j, "}}}}");
        let _ = writeln!(out, "{j}");
    } else {
        let _ = writeln!(out, "weft bench {mode} {}: {opened} connections", args.url);
        match args.mode {
            Mode::Echo => {
                let _ = writeln!(
                    out,
                    "  {messages} messages in {elapsed:.1} s: {rate:.0} msgs/s, {:.1} MB/s ({} B {}, {} in flight{})",
                    bytes as f64 / elapsed / 1e6,
                    args.size,
                    if args.binary { "binary" } else { "text" },
                    args.in_flight,
                    args.rate
                        .map_or(String::new(), |r| format!(", open loop at {r:.0} msgs/s"))
                );
            }
            Mode::Handshake => {
                let _ = writeln!(
                    out,
                    "  {opened} handshakes in {elapsed:.2} s: {:.0} handshakes/s",
                    opened as f64 / elapsed
                );
            }
            Mode::Idle => {}
            Mode::Fanout => {
                if let Some(f) = fanout {
                    let _ = writeln!(
                        out,
                        "  {} messages of {} B published in {:.1} s (asked {:.0}/s) to {} subscribers",
                        f.published, args.size, f.publish_seconds, f.rate, f.subscribers
                    );
                    let _ = writeln!(
                        out,
                        "  {} of {} deliveries in {elapsed:.1} s: {rate:.0} deliveries/s; lost {} ({} at {} subscribers the server closed, {} at open ones)",
                        f.delivered,
                        f.expected,
                        f.expected.saturating_sub(f.delivered),
                        f.lost_closed,
                        f.closed,
                        f.lost_open
                    );
                    if let Some(c) = f.client_cpu {
                        let _ = writeln!(out, "  load generator CPU: {:.0}% of a core", c * 100.0);
                    }
                }
            }
        }
        if args.mode != Mode::Idle {
            let _ = writeln!(
                out,
                "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {max:.3}",
                pct(0.5),
                pct(0.9),
                pct(0.99),
                pct(0.999)
            );
        }
        if let Some(cpu) = server_cpu {
            let _ = writeln!(
                out,
                "  server CPU: {:.0}% of a core; {:.0} {} per server CPU second",
                cpu * 100.0,
                if args.mode == Mode::Handshake {
                    opened as f64 / elapsed
                } else {
                    rate
                } / cpu.max(1e-9),
                if args.mode == Mode::Fanout {
                    "deliveries"
                } else {
                    "msgs"
                }
            );
        }
        if let Some((per, before, after)) = memory {
            let _ = writeln!(
                out,
                "  server RSS: {:.1} MiB before, {:.1} MiB with the connections open: {per:.0} B per connection",
                before as f64 / 1048576.0,
                after as f64 / 1048576.0
            );
        }
        let _ = writeln!(out, "  errors: {}", errors_line(shared));
    }
    if let (Some(path), Some(h)) = (&args.plot, &h)
        && let Err(e) = std::fs::write(path, svg_plot(h, &args.url))
    {
        eprintln!("weft bench: cannot write {}: {e}", path.display());
    }
    if opened == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Latency by percentile, with the x axis spread as 1/(1-p) on a log scale
/// so that the tail is visible.
fn svg_plot(h: &Histogram<u64>, title: &str) -> String {
    let (w, hgt, left, bottom) = (720.0, 400.0, 70.0, 40.0);
    let qs: Vec<f64> = (0..=400).map(|i| 1.0 - 10f64.powf(-(i as f64) / 100.0)).collect();
    let pts: Vec<(f64, f64)> = qs
        .iter()
        .map(|&q| {
            (
                q,
                if h.is_empty() {
                    0.0
                } else {
                    h.value_at_quantile(q) as f64 / 1e6
                },
            )
        })
        .collect();
    let ymax = pts.iter().map(|p| p.1).fold(0.001, f64::max) * 1.1;
    let x = |q: f64| left + (-(1.0 - q).max(1e-4).log10() / 4.0) * (w - left - 20.0);
    let y = |v: f64| hgt - bottom - v / ymax * (hgt - bottom - 20.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"{left}\" y=\"14\">latency by percentile: {}</text>",
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    for (label, q) in [
        ("50%", 0.5),
        ("90%", 0.9),
        ("99%", 0.99),
        ("99.9%", 0.999),
        ("99.99%", 0.9999),
    ] {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"20\" y2=\"{1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\">{label}</text>",
            x(q),
            hgt - bottom,
            hgt - bottom + 16.0
        );
    }
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2} ms</text>",
            left - 6.0,
            y(v) + 4.0
        );
    }
    let line: Vec<String> = pts.iter().map(|&(q, v)| format!("{:.1},{:.1}", x(q), y(v))).collect();
    let _ = write!(
        s,
        "<polyline fill=\"none\" stroke=\"#2f5bd3\" stroke-width=\"2\" points=\"{}\"/></svg>",
        line.join(" ")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(op: Opcode, fin: bool, len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        FrameHeader {
            fin,
            rsv: 0,
            opcode: op,
            mask: None,
            payload_len: len as u64,
        }
        .encode(&mut v);
        v.extend(std::iter::repeat_n(b'x', len));
        v
    }

    #[test]
    fn counts_messages_in_any_split() {
        let mut wire = Vec::new();
        wire.extend(server_frame(Opcode::Text, true, 32));
        wire.extend(server_frame(Opcode::Ping, true, 4));
        wire.extend(server_frame(Opcode::Binary, true, 70_000));
        wire.extend(server_frame(Opcode::Text, false, 10));
        wire.extend(server_frame(Opcode::Continuation, true, 0));
        wire.extend(server_frame(Opcode::Text, true, 0));
        for chunk in [1, 2, 3, 7, 100, 4096, wire.len()] {
            let mut counter = FrameCounter::default();
            let mut buf = BytesMut::new();
            let mut total = 0;
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                total += counter.count(&mut buf).unwrap();
            }
            assert_eq!(total, 4, "chunk {chunk}");
            assert!(buf.is_empty());
        }
        let mut buf = BytesMut::from(&server_frame(Opcode::Close, true, 2)[..]);
        assert!(FrameCounter::default().count(&mut buf).is_err());
    }

    #[test]
    fn the_prebuilt_frame_is_a_valid_masked_client_frame() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: BenchArgs,
        }
        let t = T::parse_from(["t", "ws://127.0.0.1:1/", "-s", "300"]);
        let frame = build_frame(&t.a);
        let mut server = weft::proto::Connection::new(weft::proto::Role::Server, weft::proto::Config::default());
        server.receive_data(&frame);
        match server.poll_event().unwrap() {
            Some(weft::Event::Message(m)) => assert_eq!(m.len(), 300),
            other => panic!("{other:?}"),
        }
    }
}
