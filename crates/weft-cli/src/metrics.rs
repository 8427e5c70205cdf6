//! `GET /metrics`: `weft serve`'s counters in the Prometheus text exposition
//! format (version 0.0.4), written by hand.
//!
//! Every counter is a relaxed atomic in one static, [`METRICS`]. The sockets
//! do not touch it per message: each counts in a [`Tally`] of its own (plain
//! integers in its task) and adds the tally to the shared counters when the
//! socket has nothing more to read (a read batch is handled), every
//! [`FLUSH_EVERY`] messages, and when it ends. The hub's figures come from
//! [`Hub::metrics`], the process's from `/proc/self` at each scrape.
//!
//! docs/METRICS.md lists every metric.

use std::fmt::{Display, Write as _};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use weft::proto::frame::FrameHeader;
use weft::proto::{CloseCode, State as WsState};
use weft::{Message, WebSocket};
use weft_hub::Hub;

/// The `Content-Type` of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The counters of the running server.
pub(crate) static METRICS: Metrics = Metrics::new();

/// Messages a [`Tally`] counts (each way) before it adds them to [`METRICS`]
/// even though the socket still has more to read.
pub(crate) const FLUSH_EVERY: u32 = 64;

/// The WebSocket endpoints, as the index of their counters (a [`Tally`]'s
/// parameter) and their `endpoint` label.
pub(crate) const ECHO: usize = 0;
/// See [`ECHO`].
pub(crate) const CHAT: usize = 1;
/// See [`ECHO`].
pub(crate) const TOPIC: usize = 2;
const ENDPOINTS: [&str; 3] = ["echo", "chat", "topic"];

/// Close codes as counted: 1000 to 1015 each on its own, the ranges an
/// application may use (3000–3999, 4000–4999) as one label each, so that a
/// peer cannot make a label per code, and anything else.
const CODE_SLOTS: usize = 19;

fn code_slot(code: CloseCode) -> usize {
    match code.0 {
        c @ 1000..=1015 => usize::from(c - 1000),
        3000..=3999 => 16,
        4000..=4999 => 17,
        _ => 18,
    }
}

fn code_label(slot: usize) -> String {
    match slot {
        0..=15 => (1000 + slot).to_string(),
        16 => "3000-3999".to_owned(),
        17 => "4000-4999".to_owned(),
        _ => "other".to_owned(),
    }
}

/// The timeouts that end a WebSocket, as labelled.
const TIMEOUTS: [&str; 3] = ["write", "close", "keepalive"];

/// HTTP statuses are counted by their number, 100 to 599.
const STATUSES: usize = 600;

const fn zeros<const N: usize>() -> [AtomicU64; N] {
    [const { AtomicU64::new(0) }; N]
}

/// One endpoint's counters, on cache lines of their own.
#[repr(align(128))]
struct Endpoint {
    received: AtomicU64,
    received_bytes: AtomicU64,
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    open: AtomicU64,
    accepted: AtomicU64,
    closes: [AtomicU64; CODE_SLOTS],
    failures: [AtomicU64; CODE_SLOTS],
    timeouts: [AtomicU64; TIMEOUTS.len()],
    abnormal: AtomicU64,
}

impl Endpoint {
    const fn new() -> Self {
        Endpoint {
            received: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            closes: zeros(),
            failures: zeros(),
            timeouts: zeros(),
            abnormal: AtomicU64::new(0),
        }
    }
}

/// Every counter of `weft serve` but the hub's and the process's.
pub(crate) struct Metrics {
    tcp_accepted: AtomicU64,
    at_limit: AtomicU64,
    handshake_timeouts: AtomicU64,
    tls_failed: AtomicU64,
    refused: [AtomicU64; STATUSES],
    endpoints: [Endpoint; 3],
}

impl Metrics {
    const fn new() -> Self {
        Metrics {
            tcp_accepted: AtomicU64::new(0),
            at_limit: AtomicU64::new(0),
            handshake_timeouts: AtomicU64::new(0),
            tls_failed: AtomicU64::new(0),
            refused: zeros(),
            endpoints: [Endpoint::new(), Endpoint::new(), Endpoint::new()],
        }
    }

    /// A TCP connection was accepted (whatever happens to it next).
    pub(crate) fn tcp_accepted(&self) {
        self.tcp_accepted.fetch_add(1, Relaxed);
    }

    /// A connection was refused with 503 at `--max-connections`.
    pub(crate) fn at_limit(&self) {
        self.at_limit.fetch_add(1, Relaxed);
        self.refused(503);
    }

    /// A request was answered with `status`; statuses under 400 are not
    /// refusals and are not counted.
    pub(crate) fn refused(&self, status: u16) {
        if let Some(c) = self.refused.get(usize::from(status)).filter(|_| status >= 400) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// A request head (or a TLS handshake) did not arrive in time.
    pub(crate) fn handshake_timeout(&self) {
        self.handshake_timeouts.fetch_add(1, Relaxed);
    }

    /// A TLS handshake failed.
    pub(crate) fn tls_failed(&self) {
        self.tls_failed.fetch_add(1, Relaxed);
    }
}

/// When the server started (set once by [`start_clock`]).
static STARTED: OnceLock<(SystemTime, Instant)> = OnceLock::new();

/// Record the start time reported as `process_start_time_seconds`.
pub(crate) fn start_clock() {
    let _ = STARTED.set((SystemTime::now(), Instant::now()));
}

// ----- counting on a socket -------------------------------------------------

/// One WebSocket's counts not yet added to [`METRICS`], for endpoint `E`.
///
/// Made when the socket opens (the open gauge goes up), it is kept in the
/// socket's task; dropping it adds what is left and takes the socket off the
/// gauge. Call [`end`](Self::end) first to count how the socket ended.
///
/// 12 bytes: message counts under [`FLUSH_EVERY`] and byte counts that are
/// added before they would overflow (a socket's task is what an idle
/// connection costs).
pub(crate) struct Tally<const E: usize> {
    received: u8,
    sent: u8,
    received_bytes: u32,
    sent_bytes: u32,
}

// The message counts are flushed at FLUSH_EVERY, so they fit in a byte.
const _: () = assert!(FLUSH_EVERY <= u8::MAX as u32);

impl<const E: usize> Tally<E> {
    /// A socket of endpoint `E` opened.
    pub(crate) fn open() -> Self {
        let ep = &METRICS.endpoints[E];
        ep.accepted.fetch_add(1, Relaxed);
        ep.open.fetch_add(1, Relaxed);
        Tally {
            received: 0,
            sent: 0,
            received_bytes: 0,
            sent_bytes: 0,
        }
    }

    /// A message of `len` payload bytes arrived.
    #[inline]
    pub(crate) fn received(&mut self, len: usize) {
        match u32::try_from(len).ok().and_then(|n| self.received_bytes.checked_add(n)) {
            Some(bytes) => self.received_bytes = bytes,
            None => {
                self.flush();
                METRICS.endpoints[E].received_bytes.fetch_add(len as u64, Relaxed);
            }
        }
        self.received += 1;
        if u32::from(self.received) >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// A message of `len` payload bytes was queued for sending.
    #[inline]
    pub(crate) fn sent(&mut self, len: usize) {
        match u32::try_from(len).ok().and_then(|n| self.sent_bytes.checked_add(n)) {
            Some(bytes) => self.sent_bytes = bytes,
            None => {
                self.flush();
                METRICS.endpoints[E].sent_bytes.fetch_add(len as u64, Relaxed);
            }
        }
        self.sent += 1;
        if u32::from(self.sent) >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Add the counts to [`METRICS`].
    pub(crate) fn flush(&mut self) {
        // Bytes are only ever counted with their message.
        if self.received == 0 && self.sent == 0 {
            return;
        }
        let ep = &METRICS.endpoints[E];
        if self.received > 0 {
            ep.received.fetch_add(u64::from(self.received), Relaxed);
            ep.received_bytes.fetch_add(u64::from(self.received_bytes), Relaxed);
        }
        if self.sent > 0 {
            ep.sent.fetch_add(u64::from(self.sent), Relaxed);
            ep.sent_bytes.fetch_add(u64::from(self.sent_bytes), Relaxed);
        }
        // Field by field: assigning a whole `Tally` would drop the old one,
        // and dropping flushes.
        self.received = 0;
        self.sent = 0;
        self.received_bytes = 0;
        self.sent_bytes = 0;
    }

    /// Count how `ws` ended: `error` is the error that ended it, if one did;
    /// `closed_with` the code of the close this side started, if it did.
    pub(crate) fn end<S>(&self, ws: &WebSocket<S>, error: Option<&weft::Error>, closed_with: Option<CloseCode>) {
        let ep = &METRICS.endpoints[E];
        match Outcome::of(ws, error, closed_with) {
            Outcome::Closed(code) => ep.closes[code_slot(code)].fetch_add(1, Relaxed),
            Outcome::Failed(code) => ep.failures[code_slot(code)].fetch_add(1, Relaxed),
            Outcome::Timeout(kind) => ep.timeouts[kind].fetch_add(1, Relaxed),
            Outcome::Abnormal => ep.abnormal.fetch_add(1, Relaxed),
        };
    }
}

impl<const E: usize> Drop for Tally<E> {
    fn drop(&mut self) {
        self.flush();
        METRICS.endpoints[E].open.fetch_sub(1, Relaxed);
    }
}

/// The payload length of an encoded server frame (as the hub hands them out).
pub(crate) fn payload_len(frame: &Bytes) -> usize {
    FrameHeader::parse(frame)
        .ok()
        .flatten()
        .map_or(frame.len(), |(h, _)| h.payload_len as usize)
}

/// `ws.recv()`, counting what arrives in `tally` and adding the tally to the
/// shared counters whenever the socket has nothing more to read.
pub(crate) fn recv<'a, S, const E: usize>(
    ws: &'a mut WebSocket<S>,
    tally: &'a mut Tally<E>,
) -> impl Future<Output = Option<Result<Message, weft::Error>>> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    poll_fn(move |cx| {
        let r = Pin::new(&mut *ws).poll_next(cx);
        match &r {
            Poll::Pending => tally.flush(),
            Poll::Ready(Some(Ok(m))) => tally.received(m.len()),
            Poll::Ready(_) => {}
        }
        r
    })
}

/// How a WebSocket ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The closing handshake, begun with this code (1005: none).
    Closed(CloseCode),
    /// weft failed the connection with a close frame of this code.
    Failed(CloseCode),
    /// A timeout, by its index in [`TIMEOUTS`].
    Timeout(usize),
    /// The transport ended or failed without a closing handshake.
    Abnormal,
}

impl Outcome {
    fn of<S>(ws: &WebSocket<S>, error: Option<&weft::Error>, closed_with: Option<CloseCode>) -> Outcome {
        let conn = ws.connection();
        let protocol = match error {
            Some(weft::Error::Timeout(what)) => return Outcome::timeout(what),
            Some(weft::Error::Io(_)) => return Outcome::Abnormal,
            Some(weft::Error::Protocol(e)) => Some(e),
            _ => conn.error(),
        };
        match protocol {
            Some(weft::proto::Error::AbnormalClosure) => Outcome::Abnormal,
            Some(weft::proto::Error::Aborted(why)) => why
                .strip_suffix(" timed out")
                .map_or(Outcome::Abnormal, Outcome::timeout),
            Some(e) => Outcome::Failed(e.close_code()),
            None => match conn.state() {
                WsState::Open | WsState::Failed => Outcome::Abnormal,
                // This side's close got no answer in time.
                WsState::Closing => Outcome::Timeout(1),
                WsState::Closed => Outcome::Closed(
                    closed_with
                        .or_else(|| ws.close_frame().map(|f| f.code))
                        .unwrap_or(CloseCode::NO_STATUS),
                ),
            },
        }
    }

    fn timeout(what: &str) -> Outcome {
        TIMEOUTS
            .iter()
            .position(|t| *t == what)
            .map_or(Outcome::Abnormal, Outcome::Timeout)
    }
}

// ----- the endpoint ---------------------------------------------------------

/// What `/metrics` reads besides [`METRICS`].
#[derive(Clone)]
pub(crate) struct Scrape {
    pub(crate) hub: Hub,
    /// The `--max-connections` places, and how many there are.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) max_connections: usize,
}

/// The `/metrics` route, to merge into a router.
pub(crate) fn router(scrape: Scrape) -> Router {
    Router::new().route("/metrics", get(serve)).with_state(scrape)
}

async fn serve(State(scrape): State<Scrape>) -> Response {
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        render(&scrape),
    )
        .into_response()
}

/// The text exposition: families with `# HELP` and `# TYPE` lines.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.0.push_str("\\\\"),
                        '"' => self.0.push_str("\\\""),
                        '\n' => self.0.push_str("\\n"),
                        c => self.0.push(c),
                    }
                }
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family with one sample and no labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family with one sample per endpoint.
    fn per_endpoint(&mut self, name: &str, kind: &str, help: &str, value: impl Fn(&Endpoint) -> u64) {
        self.family(name, kind, help);
        for (label, ep) in ENDPOINTS.iter().zip(&METRICS.endpoints) {
            self.sample(name, &[("endpoint", label)], value(ep));
        }
    }

    /// A family labelled by endpoint and close code, with the codes seen.
    fn per_code(&mut self, name: &str, help: &str, codes: impl Fn(&Endpoint) -> &[AtomicU64; CODE_SLOTS]) {
        self.family(name, "counter", help);
        for (label, ep) in ENDPOINTS.iter().zip(&METRICS.endpoints) {
            for (slot, c) in codes(ep).iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    self.sample(name, &[("endpoint", label), ("code", &code_label(slot))], n);
                }
            }
        }
    }
}

/// One of an endpoint's counters.
type EndpointCounter = fn(&Endpoint) -> &AtomicU64;

fn render(scrape: &Scrape) -> String {
    let m = &METRICS;
    let mut out = Exposition(String::with_capacity(8 * 1024));
    let load = |a: &AtomicU64| a.load(Relaxed);

    out.single(
        "weft_tcp_connections_accepted_total",
        "counter",
        "TCP connections accepted on the main listener.",
        load(&m.tcp_accepted),
    );
    out.single(
        "weft_connections_open",
        "gauge",
        "Connections holding a place under --max-connections (HTTP and WebSocket).",
        scrape.max_connections.saturating_sub(scrape.slots.available_permits()),
    );
    out.single(
        "weft_connections_max",
        "gauge",
        "The --max-connections limit.",
        scrape.max_connections,
    );
    out.single(
        "weft_connections_refused_total",
        "counter",
        "Connections refused with 503 at --max-connections.",
        load(&m.at_limit),
    );
    out.family(
        "weft_handshakes_refused_total",
        "counter",
        "Requests refused with an HTTP error status instead of an upgrade, by status.",
    );
    for (status, c) in m.refused.iter().enumerate() {
        let n = load(c);
        if n > 0 {
            out.sample("weft_handshakes_refused_total", &[("status", &status.to_string())], n);
        }
    }
    out.single(
        "weft_handshake_timeouts_total",
        "counter",
        "Connections closed because their request head or TLS handshake did not arrive within --handshake-timeout.",
        load(&m.handshake_timeouts),
    );
    out.single(
        "weft_tls_handshakes_failed_total",
        "counter",
        "TLS handshakes that failed.",
        load(&m.tls_failed),
    );
    let per_endpoint: [(&str, &str, &str, EndpointCounter); 6] = [
        ("weft_websockets_open", "gauge", "WebSockets open now.", |e| &e.open),
        (
            "weft_websockets_accepted_total",
            "counter",
            "WebSockets accepted (upgrades answered with 101).",
            |e| &e.accepted,
        ),
        (
            "weft_websocket_messages_received_total",
            "counter",
            "Whole messages received on WebSockets.",
            |e| &e.received,
        ),
        (
            "weft_websocket_received_bytes_total",
            "counter",
            "Payload bytes of the messages received (after decompression).",
            |e| &e.received_bytes,
        ),
        (
            "weft_websocket_messages_sent_total",
            "counter",
            "Messages queued for sending on WebSockets.",
            |e| &e.sent,
        ),
        (
            "weft_websocket_sent_bytes_total",
            "counter",
            "Payload bytes of the messages sent (before compression; hub frames as encoded).",
            |e| &e.sent_bytes,
        ),
    ];
    for (name, kind, help, counter) in per_endpoint {
        out.per_endpoint(name, kind, help, |e| load(counter(e)));
    }
    out.per_code(
        "weft_websocket_closes_total",
        "WebSockets ended by a closing handshake, by the code of the close frame that began it (1005: none).",
        |e| &e.closes,
    );
    out.per_code(
        "weft_websocket_failures_total",
        "WebSockets weft failed (a protocol violation, invalid data, a limit), by the close code it sent.",
        |e| &e.failures,
    );
    out.family(
        "weft_websocket_timeouts_total",
        "counter",
        "WebSockets ended by a timeout: write (--write-timeout), close (the closing handshake), keepalive (--idle-timeout).",
    );
    for (label, ep) in ENDPOINTS.iter().zip(&m.endpoints) {
        for (kind, c) in TIMEOUTS.iter().zip(&ep.timeouts) {
            out.sample(
                "weft_websocket_timeouts_total",
                &[("endpoint", label), ("kind", kind)],
                load(c),
            );
        }
    }
    out.per_endpoint(
        "weft_websocket_abnormal_closes_total",
        "counter",
        "WebSockets whose transport ended or failed without a closing handshake.",
        |e| load(&e.abnormal),
    );

    hub(&mut out, &scrape.hub);
    process(&mut out);
    out.0
}

fn hub(out: &mut Exposition, hub: &Hub) {
    let h = hub.metrics();
    let single = [
        (
            "weft_hub_topics",
            "gauge",
            "Topics with a subscriber on this node.",
            h.topics,
        ),
        (
            "weft_hub_subscribers",
            "gauge",
            "Hub subscribers on this node (chat members and topic sockets).",
            h.subscribers,
        ),
        (
            "weft_hub_published_total",
            "counter",
            "Messages published to the hub.",
            h.published,
        ),
        (
            "weft_hub_publish_failed_total",
            "counter",
            "Publishes the hub's backend did not take (Redis unreachable): they reached nobody.",
            h.publish_failed,
        ),
        (
            "weft_hub_received_remote_total",
            "counter",
            "Messages that arrived from other nodes.",
            h.received_remote,
        ),
        (
            "weft_hub_delivered_total",
            "counter",
            "Frames queued to subscribers (one per subscriber per message).",
            h.delivered,
        ),
        (
            "weft_hub_delivered_compressed_total",
            "counter",
            "Of weft_hub_delivered_total, the frames queued compressed.",
            h.delivered_compressed,
        ),
        (
            "weft_hub_compressions_total",
            "counter",
            "Messages compressed once for the fan-out.",
            h.compressions,
        ),
        (
            "weft_hub_backend_reconnects_total",
            "counter",
            "Reconnections to the hub's backend after a loss.",
            h.backend_reconnects,
        ),
    ];
    for (name, kind, help, value) in single {
        out.single(name, kind, help, value);
    }
    out.family(
        "weft_hub_evicted_total",
        "counter",
        "Subscribers evicted for falling behind (closed with 1013): stalled past the stall timeout, or over the hard cap.",
    );
    out.sample("weft_hub_evicted_total", &[("reason", "stalled")], h.evicted_stalled);
    out.sample("weft_hub_evicted_total", &[("reason", "overflow")], h.evicted_overflow);
    out.family(
        "weft_hub_backend_connected",
        "gauge",
        "Whether the hub's backend is connected (1) or not (0).",
    );
    out.sample(
        "weft_hub_backend_connected",
        &[("backend", hub.backend_name())],
        u8::from(h.backend_connected),
    );
}

fn process(out: &mut Exposition) {
    out.family("weft_build_info", "gauge", "The weft version, as a label; always 1.");
    out.sample("weft_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);
    if let Some((wall, mono)) = STARTED.get() {
        let start = wall.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        out.single(
            "process_start_time_seconds",
            "gauge",
            "When weft serve started, in seconds since the Unix epoch.",
            start,
        );
        out.single(
            "weft_uptime_seconds",
            "gauge",
            "Seconds since weft serve started.",
            mono.elapsed().as_secs_f64(),
        );
    }
    let p = ProcStats::read();
    if let Some(rss) = p.rss {
        out.single(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory (VmRSS).",
            rss,
        );
    }
    if let Some(vsz) = p.virtual_size {
        out.single("process_virtual_memory_bytes", "gauge", "Virtual memory (VmSize).", vsz);
    }
    if let Some(n) = p.threads {
        out.single("process_threads", "gauge", "Threads of the process.", n);
    }
    if let Some(n) = p.open_fds {
        out.single("process_open_fds", "gauge", "Open file descriptors.", n);
    }
    if let Some(n) = p.max_fds {
        out.single(
            "process_max_fds",
            "gauge",
            "The soft limit on open file descriptors.",
            n,
        );
    }
    if let Some(s) = p.cpu_seconds {
        out.single(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time, in seconds.",
            s,
        );
    }
}

/// What `/proc/self` says of the process (Linux; `None` where unavailable).
#[derive(Debug, Default)]
struct ProcStats {
    rss: Option<u64>,
    virtual_size: Option<u64>,
    threads: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    cpu_seconds: Option<f64>,
}

/// Clock ticks per second in `/proc/self/stat` (`USER_HZ`, 100 on every
/// architecture Linux runs on today).
const USER_HZ: f64 = 100.0;

impl ProcStats {
    fn read() -> ProcStats {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let mut p = ProcStats::default();
        if let Some(status) = read("/proc/self/status") {
            p.rss = status_field(&status, "VmRSS:").map(|kib| kib * 1024);
            p.virtual_size = status_field(&status, "VmSize:").map(|kib| kib * 1024);
            p.threads = status_field(&status, "Threads:");
        }
        // Less the descriptor that reads the directory.
        p.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| (d.count() as u64).saturating_sub(1));
        p.max_fds = read("/proc/self/limits").and_then(|l| {
            let line = l.lines().find(|l| l.starts_with("Max open files"))?;
            line["Max open files".len()..].split_whitespace().next()?.parse().ok()
        });
        p.cpu_seconds = read("/proc/self/stat").and_then(|s| cpu_seconds(&s));
        p
    }
}

/// The number of a `/proc/self/status` line (`VmRSS:   1234 kB` gives 1234).
fn status_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// utime + stime of a `/proc/self/stat` line, in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name, in parentheses, may hold spaces: fields are counted
    // from the last ')'. utime and stime are fields 14 and 15 of the line.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_have_bounded_labels() {
        assert_eq!(code_label(code_slot(CloseCode::NORMAL)), "1000");
        assert_eq!(code_label(code_slot(CloseCode::TLS_HANDSHAKE)), "1015");
        assert_eq!(code_label(code_slot(CloseCode(3123))), "3000-3999");
        assert_eq!(code_label(code_slot(CloseCode(4999))), "4000-4999");
        assert_eq!(code_label(code_slot(CloseCode(2000))), "other");
        assert_eq!(code_label(code_slot(CloseCode(999))), "other");
    }

    #[test]
    fn proc_files_are_parsed() {
        let status = "Name:\tweft\nVmSize:\t  123456 kB\nVmRSS:\t    7890 kB\nThreads:\t3\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(7890));
        assert_eq!(status_field(status, "VmSize:"), Some(123_456));
        assert_eq!(status_field(status, "Threads:"), Some(3));
        assert_eq!(status_field(status, "VmHWM:"), None);
        let stat = "42 (we ft) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        let p = ProcStats::read();
        if cfg!(target_os = "linux") {
            assert!(p.rss.is_some_and(|r| r > 0), "{p:?}");
            assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
            assert!(p.cpu_seconds.is_some(), "{p:?}");
        }
    }

    #[test]
    fn a_tally_adds_in_batches_and_when_dropped() {
        // An endpoint index no socket of these tests uses.
        const E: usize = TOPIC;
        let ep = &METRICS.endpoints[E];
        let before = ep.received.load(Relaxed);
        let mut t = Tally::<E>::open();
        assert_eq!(ep.open.load(Relaxed), 1);
        for _ in 0..FLUSH_EVERY - 1 {
            t.received(10);
        }
        assert_eq!(ep.received.load(Relaxed), before, "added before a batch was full");
        t.received(10);
        assert_eq!(ep.received.load(Relaxed), before + u64::from(FLUSH_EVERY));
        t.received(1);
        t.sent(2);
        drop(t);
        assert_eq!(ep.received.load(Relaxed), before + u64::from(FLUSH_EVERY) + 1);
        assert_eq!(ep.received_bytes.load(Relaxed), 10 * u64::from(FLUSH_EVERY) + 1);
        assert_eq!(ep.sent_bytes.load(Relaxed), 2);
        assert_eq!(ep.open.load(Relaxed), 0);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition(String::new());
        out.family("x_total", "counter", "An example.");
        out.sample("x_total", &[("a", "q\"b\\s\nn"), ("b", "c")], 3);
        assert_eq!(
            out.0,
            "# HELP x_total An example.\n# TYPE x_total counter\nx_total{a=\"q\\\"b\\\\s\\nn\",b=\"c\"} 3\n"
        );
    }
}
