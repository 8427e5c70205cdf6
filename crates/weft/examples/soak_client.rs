//! A soak load client for an echo server such as `weft serve`: it opens many
//! connections, keeps echo traffic going on all of them for a while, checks
//! every reply, and samples the server's memory and descriptors.
//!
//! ```text
//! cargo run --release -p weft --example soak_client -- \
//!     --url ws://127.0.0.1:8080/echo --connections 1000 --seconds 30 --server-pid PID
//! ```
//!
//! Each connection sends a message about once a second (text or binary, 16 B
//! to 64 KiB, with up to four in flight) and expects each back, in order and
//! byte for byte. Every message carries its connection, its sequence number
//! and a checksum of its contents, so a reply that is lost (never arrives),
//! corrupted (wrong bytes, wrong checksum) or out of order is counted as
//! such. A quarter of the connections offer permessage-deflate, as browsers do.
//!
//! With `--server-pid`, the server's RSS (`/proc/PID/status`) and open
//! descriptors (`/proc/PID/fd`) are sampled every second. After a warm-up
//! (all connections open, then `--warmup` seconds), RSS and descriptors may
//! not rise above their level at the end of the warm-up by more than the
//! tolerance.
//!
//! Connections come from 127.0.0.1, and from 127.0.0.2, .3... when there are
//! more than 20,000 of them (the ephemeral port range of one source address
//! is about 28,000). The process needs a descriptor per connection: raise
//! `ulimit -n` first (`tests/soak/soak.sh` does).
//!
//! Prints a summary and exits with 1 if anything was lost or corrupted, a
//! connection failed, or the server grew past the tolerance.
#![allow(clippy::print_stdout)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use weft::proto::deflate::PerMessageDeflate;
use weft::proto::{ClientExtension, ClientRequest};
use weft::{CloseCode, Config, Message};

/// Connections per source address.
const PER_SOURCE: usize = 20_000;
/// Messages in flight per connection.
const WINDOW: usize = 4;
/// Every message starts with a header in hex: connection (8 digits),
/// sequence (16), checksum of the rest (16) and length of the rest (8).
const HEADER: usize = 48;
/// Where the checksum is in the header.
const SUM: std::ops::Range<usize> = 24..40;

#[derive(Clone, Debug)]
struct Args {
    url_host: String,
    addr: SocketAddr,
    path: String,
    connections: usize,
    seconds: u64,
    warmup: u64,
    server_pid: Option<u32>,
    rss_tolerance_pct: u64,
    rss_tolerance_min_mib: u64,
    fd_tolerance: usize,
    deflate_share: usize,
    connect_parallel: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: soak_client --url ws://HOST:PORT/PATH [--connections N] [--seconds S] [--warmup S] \
         [--server-pid PID] [--rss-tolerance-pct P] [--rss-tolerance-min-mib M] [--fd-tolerance N] \
         [--deflate-percent P] [--connect-parallel N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut url = None;
    let mut a = Args {
        url_host: String::new(),
        addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        path: "/echo".into(),
        connections: 1000,
        seconds: 30,
        warmup: 0,
        server_pid: None,
        rss_tolerance_pct: 10,
        rss_tolerance_min_mib: 32,
        fd_tolerance: 32,
        deflate_share: 25,
        connect_parallel: 256,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        let num = |v: String| v.parse::<u64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--url" => url = Some(value()),
            "--connections" => a.connections = num(value()) as usize,
            "--seconds" => a.seconds = num(value()),
            "--warmup" => a.warmup = num(value()),
            "--server-pid" => a.server_pid = Some(num(value()) as u32),
            "--rss-tolerance-pct" => a.rss_tolerance_pct = num(value()),
            "--rss-tolerance-min-mib" => a.rss_tolerance_min_mib = num(value()),
            "--fd-tolerance" => a.fd_tolerance = num(value()) as usize,
            "--deflate-percent" => a.deflate_share = num(value()) as usize,
            "--connect-parallel" => a.connect_parallel = num(value()).max(1) as usize,
            _ => usage(),
        }
    }
    let url = url.unwrap_or_else(|| usage());
    let rest = url.strip_prefix("ws://").unwrap_or_else(|| usage());
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    a.addr = hostport.parse().unwrap_or_else(|_| usage());
    a.url_host = hostport.to_owned();
    a.path = format!("/{path}");
    if a.warmup == 0 {
        a.warmup = (a.seconds / 10).clamp(5, 60);
    }
    a
}

/// What all connections count together.
#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    connect_failed: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    bytes: AtomicU64,
    corrupted: AtomicU64,
    out_of_order: AtomicU64,
    lost: AtomicU64,
    errors: AtomicU64,
    clean_closes: AtomicU64,
}

/// FNV-1a, 64 bits: the checksum carried in every message.
fn checksum(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A small, fast generator for sizes and contents.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Message `seq` of connection `conn`: its header, then `len` bytes.
fn message(conn: u32, seq: u64, rng: &mut Rng) -> Message {
    let r = rng.next();
    let len = match r % 100 {
        0 => 8192 + (r >> 8) as usize % (56 << 10),
        1..=9 => 512 + (r >> 8) as usize % 7680,
        _ => 16 + (r >> 8) as usize % 496,
    };
    let text = r & (1 << 40) != 0;
    let body: Vec<u8> = if text {
        // Printable ASCII and some multi-byte characters: valid UTF-8.
        let mut s = String::with_capacity(len);
        while s.len() < len {
            match rng.next() % 16 {
                0 => s.push('é'),
                1 => s.push('☃'),
                2 => s.push('🦀'),
                x => s.push(char::from(b'a' + (x as u8) % 26)),
            }
        }
        s.into_bytes()
    } else {
        (0..len).map(|_| rng.next() as u8).collect()
    };
    let header = format!("{conn:08x}{seq:016x}{:016x}{:08x}", checksum(&body), body.len());
    debug_assert_eq!(header.len(), HEADER);
    let mut data = header.into_bytes();
    data.extend_from_slice(&body);
    if text {
        Message::from(String::from_utf8(data).unwrap_or_default())
    } else {
        Message::from(data)
    }
}

/// Check an echo against what was sent.
fn verify(sent: &Message, got: &Message, counters: &Counters) -> bool {
    let ok_kind = matches!(
        (sent, got),
        (Message::Text(_), Message::Text(_)) | (Message::Binary(_), Message::Binary(_))
    );
    let bytes = got.as_bytes();
    let intact = bytes.len() >= HEADER
        && std::str::from_utf8(&bytes[SUM])
            .ok()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .is_some_and(|sum| sum == checksum(&bytes[HEADER..]));
    if !ok_kind || !intact {
        counters.corrupted.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    if bytes != sent.as_bytes() {
        // Intact but not the one expected next.
        counters.out_of_order.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    true
}

async fn open(args: &Args, id: usize) -> Result<weft::WebSocket<tokio::net::TcpStream>, weft::Error> {
    let source = Ipv4Addr::new(127, 0, 0, 1 + (id / PER_SOURCE) as u8);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let tcp = socket.connect(args.addr).await?;
    tcp.set_nodelay(true)?;
    let mut extensions: Vec<Arc<dyn ClientExtension>> = Vec::new();
    if id % 100 < args.deflate_share {
        extensions.push(Arc::new(PerMessageDeflate::default()));
    }
    let request = ClientRequest {
        host: args.url_host.clone(),
        target: args.path.clone(),
        extensions,
        ..ClientRequest::default()
    };
    let (ws, _) = weft::client_handshake(tcp, request, &Config::default()).await?;
    Ok(ws)
}

/// One connection's life: echo traffic until `stop_at`, then wait (at most
/// 10 s) for what is in flight, and close.
async fn run_connection(
    mut ws: weft::WebSocket<tokio::net::TcpStream>,
    id: usize,
    start_at: Instant,
    stop_at: Instant,
    counters: Arc<Counters>,
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((id as u64 + 1) << 20));
    let mut in_flight = std::collections::VecDeque::with_capacity(WINDOW);
    let mut seq = 0u64;
    // Spread the connections' sends over the first second.
    let mut next_send = start_at + Duration::from_millis(rng.next() % 1000);
    let lost = |n: usize| counters.lost.fetch_add(n as u64, Ordering::Relaxed);
    while Instant::now() < stop_at {
        tokio::select! {
            _ = tokio::time::sleep_until(next_send.into()), if in_flight.len() < WINDOW => {
                let m = message(id as u32, seq, &mut rng);
                seq += 1;
                if let Err(e) = ws.send(m.clone()).await {
                    eprintln!("connection {id}: send failed: {e}");
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    lost(in_flight.len() + 1);
                    return;
                }
                counters.sent.fetch_add(1, Ordering::Relaxed);
                in_flight.push_back(m);
                next_send = Instant::now() + Duration::from_millis(800 + rng.next() % 400);
            }
            got = ws.recv() => {
                if !receive(got, &mut in_flight, id, &counters) {
                    return;
                }
            }
            _ = tokio::time::sleep_until(stop_at.into()) => {}
        }
    }
    let drain_until = Instant::now() + Duration::from_secs(10);
    while !in_flight.is_empty() {
        match tokio::time::timeout_at(drain_until.into(), ws.recv()).await {
            Ok(got) => {
                if !receive(got, &mut in_flight, id, &counters) {
                    return;
                }
            }
            Err(_) => {
                // In flight at the end and not back within 10 s.
                lost(in_flight.len());
                in_flight.clear();
            }
        }
    }
    match tokio::time::timeout(Duration::from_secs(10), ws.close(CloseCode::NORMAL, "soak done")).await {
        Ok(Ok(())) => {
            counters.clean_closes.fetch_add(1, Ordering::Relaxed);
        }
        other => {
            eprintln!("connection {id}: close failed: {other:?}");
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Check what `recv` gave against the oldest message in flight; false if the
/// connection is over.
fn receive(
    got: Option<Result<Message, weft::Error>>,
    in_flight: &mut std::collections::VecDeque<Message>,
    id: usize,
    counters: &Counters,
) -> bool {
    match got {
        Some(Ok(m)) => {
            match in_flight.pop_front() {
                Some(sent) => {
                    if verify(&sent, &m, counters) {
                        counters.received.fetch_add(1, Ordering::Relaxed);
                        counters.bytes.fetch_add(m.len() as u64, Ordering::Relaxed);
                    }
                }
                None => {
                    counters.corrupted.fetch_add(1, Ordering::Relaxed);
                }
            }
            true
        }
        other => {
            eprintln!("connection {id}: ended early: {other:?}");
            counters.errors.fetch_add(1, Ordering::Relaxed);
            counters.lost.fetch_add(in_flight.len() as u64, Ordering::Relaxed);
            in_flight.clear();
            false
        }
    }
}

/// The server's RSS in KiB and its open descriptors.
fn sample(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = parse_args();
    let counters = Arc::new(Counters::default());
    let t0 = Instant::now();
    let before = args.server_pid.and_then(sample);

    // Open every connection, a bounded number at a time.
    println!(
        "soak: opening {} connections to {} ({}% offering permessage-deflate)",
        args.connections, args.addr, args.deflate_share
    );
    let gate = Arc::new(Semaphore::new(args.connect_parallel));
    let mut opening = tokio::task::JoinSet::new();
    for id in 0..args.connections {
        let permit = gate.clone().acquire_owned().await.expect("the gate is never closed");
        let args = args.clone();
        opening.spawn(async move {
            let _permit = permit;
            (id, tokio::time::timeout(Duration::from_secs(30), open(&args, id)).await)
        });
    }
    let mut sockets = Vec::with_capacity(args.connections);
    while let Some(r) = opening.join_next().await {
        match r {
            Ok((id, Ok(Ok(ws)))) => sockets.push((id, ws)),
            Ok((id, other)) => {
                if counters.connect_failed.fetch_add(1, Ordering::Relaxed) < 10 {
                    eprintln!("connection {id}: could not open: {other:?}");
                }
            }
            Err(e) => panic!("a connect task failed: {e}"),
        }
    }
    counters.opened.store(sockets.len() as u64, Ordering::Relaxed);
    let opened_in = t0.elapsed();
    println!("soak: {} open in {:.1?}", sockets.len(), opened_in);

    // Traffic.
    let start_at = Instant::now();
    let stop_at = start_at + Duration::from_secs(args.seconds);
    let warm_at = start_at + Duration::from_secs(args.warmup.min(args.seconds));
    let mut tasks = tokio::task::JoinSet::new();
    for (id, ws) in sockets {
        tasks.spawn(run_connection(ws, id, start_at, stop_at, counters.clone()));
    }

    // Sample the server every second.
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_print = Instant::now();
    let mut last_received = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let t = start_at.elapsed().as_secs_f64();
                if let Some((rss, fds)) = args.server_pid.and_then(sample) {
                    samples.push((t, rss, fds));
                }
                if last_print.elapsed() >= Duration::from_secs(10) {
                    let received = counters.received.load(Ordering::Relaxed);
                    let (rss, fds) = samples.last().map_or((0, 0), |s| (s.1, s.2));
                    println!(
                        "soak: t={t:6.0}s  {:>8.0} msg/s  received {received}  lost {}  corrupted {}  server RSS {:.1} MiB, {fds} fds",
                        (received - last_received) as f64 / last_print.elapsed().as_secs_f64(),
                        counters.lost.load(Ordering::Relaxed),
                        counters.corrupted.load(Ordering::Relaxed),
                        rss as f64 / 1024.0,
                    );
                    last_print = Instant::now();
                    last_received = received;
                }
            }
            r = tasks.join_next() => match r {
                Some(Ok(())) => {}
                Some(Err(e)) => panic!("a connection task failed: {e}"),
                None => break,
            }
        }
    }
    let ran = start_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = args.server_pid.and_then(sample);

    // Summary.
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let warm_t = (warm_at - start_at).as_secs_f64();
    let warm = samples.iter().rev().find(|s| s.0 <= warm_t).copied();
    let later: Vec<_> = samples
        .iter()
        .filter(|s| s.0 > warm_t && s.0 <= args.seconds as f64)
        .collect();
    let rss_max = later.iter().map(|s| s.1).max();
    let fds_max = later.iter().map(|s| s.2).max();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("soak: summary");
    println!(
        "  connections      {} opened, {} failed to open (in {:.1?})",
        c(&counters.opened),
        c(&counters.connect_failed),
        opened_in
    );
    println!("  ran              {:.1?}, warm-up {} s", ran, args.warmup);
    println!(
        "  messages         {} sent, {} echoed intact ({:.0}/s, {:.1} MiB), {} lost, {} corrupted, {} out of order",
        c(&counters.sent),
        c(&counters.received),
        c(&counters.received) as f64 / ran.as_secs_f64(),
        mib(c(&counters.bytes) / 1024),
        c(&counters.lost),
        c(&counters.corrupted),
        c(&counters.out_of_order)
    );
    println!(
        "  closes           {} clean, {} connection errors",
        c(&counters.clean_closes),
        c(&counters.errors)
    );
    let mut failed = Vec::new();
    if c(&counters.connect_failed) > 0 {
        failed.push("connections failed to open".to_owned());
    }
    if c(&counters.lost) + c(&counters.corrupted) + c(&counters.out_of_order) > 0 {
        failed.push("messages were lost or corrupted".to_owned());
    }
    if c(&counters.errors) > 0 {
        failed.push("connections failed".to_owned());
    }
    if let (Some(pid), Some(warm)) = (args.server_pid, warm) {
        let (rss_max, fds_max) = (rss_max.unwrap_or(warm.1), fds_max.unwrap_or(warm.2));
        let rss_tol = (warm.1 * args.rss_tolerance_pct / 100).max(args.rss_tolerance_min_mib * 1024);
        if let Some((rss, fds)) = before {
            println!("  server {pid} before  RSS {:.1} MiB, {fds} fds", mib(rss));
        }
        println!("  server after warm-up RSS {:.1} MiB, {} fds", mib(warm.1), warm.2);
        println!(
            "  server afterwards    RSS max {:.1} MiB (+{:.1}, tolerance {:.1}), fds max {} (+{}, tolerance {})",
            mib(rss_max),
            mib(rss_max.saturating_sub(warm.1)),
            mib(rss_tol),
            fds_max,
            fds_max.saturating_sub(warm.2),
            args.fd_tolerance
        );
        let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
        println!("  server peak RSS      {:.1} MiB over the run", mib(peak));
        if let Some((rss, fds)) = after {
            println!("  server when closed   RSS {:.1} MiB, {fds} fds", mib(rss));
        }
        if rss_max > warm.1 + rss_tol {
            failed.push("server RSS grew after the warm-up".to_owned());
        }
        if fds_max > warm.2 + args.fd_tolerance {
            failed.push("server descriptors grew after the warm-up".to_owned());
        }
    }
    if failed.is_empty() {
        println!("soak: PASS");
        ExitCode::SUCCESS
    } else {
        println!("soak: FAIL: {}", failed.join("; "));
        ExitCode::FAILURE
    }
}
