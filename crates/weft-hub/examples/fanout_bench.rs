//! Fan-out benchmark: one publisher, many subscribers.
//!
//! ```text
//! cargo run --release -p weft-hub --features redis --example fanout_bench -- \
//!     [--subscribers 10000] [--messages 1000] [--size 64] [--rate 100] \
//!     [--sockets] [--redis redis://127.0.0.1:6379]
//! ```
//!
//! Every subscriber is a task that drains its [`Subscriber`]; with `--sockets`
//! each one also forwards the frames with `feed_raw` to a weft server socket
//! over an in-memory pipe, and a weft client task decodes them (so the figure
//! includes framing, writing and parsing, not TCP). With `--redis`, the
//! publisher's hub and the subscribers' hub are two nodes sharing Redis.
//!
//! Two runs: **burst** (publish as fast as the publisher can, report
//! deliveries per second) and **paced** (`--rate` messages per second, report
//! the delivery latency: publish call to the subscriber task seeing it).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use weft::proto::Role;
use weft::{Config, Message, WebSocket};
use weft_hub::{Hub, HubConfig, Subscriber};
use weft_proto::frame::FrameHeader;

struct Args {
    subscribers: usize,
    messages: usize,
    size: usize,
    rate: u64,
    sockets: bool,
    redis: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        subscribers: 10_000,
        messages: 1000,
        size: 64,
        rate: 100,
        sockets: false,
        redis: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_default();
        match k.as_str() {
            "--subscribers" => a.subscribers = v().parse().unwrap(),
            "--messages" => a.messages = v().parse().unwrap(),
            "--size" => a.size = v().parse::<usize>().unwrap().max(8),
            "--rate" => a.rate = v().parse().unwrap(),
            "--sockets" => a.sockets = true,
            "--redis" => a.redis = Some(v()),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// A payload that carries its publish time (ns since `base`) and a phase tag.
fn payload(base: Instant, size: usize, phase: u8) -> Message {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64(base.elapsed().as_nanos() as u64);
    b.put_u8(phase);
    b.resize(size, b'x');
    Message::Binary(b.freeze())
}

/// Per subscriber: latencies (µs) of the paced phase, and counts.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
}

struct Shared {
    base: Instant,
    delivered: AtomicU64,
    last_ns: AtomicU64,
}

fn record(shared: &Shared, tally: &mut Tally, data: &[u8]) {
    let sent = u64::from_be_bytes(data[..8].try_into().unwrap());
    let now = shared.base.elapsed().as_nanos() as u64;
    if data[8] == 1 {
        tally.latencies_us.push(((now.saturating_sub(sent)) / 1000) as u32);
    }
    shared.delivered.fetch_add(1, Ordering::Relaxed);
    shared.last_ns.fetch_max(now, Ordering::Relaxed);
}

/// A subscriber that is only a task draining its queue.
async fn plain_subscriber(mut sub: Subscriber, shared: Arc<Shared>, expect: usize) -> Tally {
    let mut tally = Tally::default();
    let mut batch = Vec::with_capacity(64);
    let mut seen = 0;
    while seen < expect {
        batch.clear();
        if sub.recv_many(&mut batch, 64).await.is_err() {
            break;
        }
        for f in &batch {
            let n = FrameHeader::parse(f).unwrap().unwrap().1;
            record(&shared, &mut tally, &f[n..]);
        }
        seen += batch.len();
    }
    tally
}

/// A subscriber behind a weft WebSocket: server socket fed with `feed_raw`,
/// client socket decoding, over an in-memory pipe.
async fn socket_subscriber(mut sub: Subscriber, shared: Arc<Shared>, expect: usize) -> Tally {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let cfg = Config::default();
    let mut server = WebSocket::from_raw(a, Role::Server, &cfg);
    let mut client = WebSocket::from_raw(b, Role::Client, &cfg);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(64);
        loop {
            tokio::select! {
                m = server.recv() => if m.is_none() { return },
                r = sub.recv_many(&mut batch, 64), if server.buffered_amount() < 64 * 1024 => {
                    if r.is_err() { return }
                    for f in batch.drain(..) {
                        if server.feed_raw(f).await.is_err() { return }
                    }
                }
            }
        }
    });
    let mut tally = Tally::default();
    for _ in 0..expect {
        match client.recv().await {
            Some(Ok(m)) => record(&shared, &mut tally, m.as_bytes()),
            _ => break,
        }
    }
    tally
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

async fn hubs(redis: &Option<String>) -> (Hub, Hub) {
    // Bounds raised so that a burst to 10,000 subscribers on 2 cores does not
    // evict anyone: this measures throughput, not the policy.
    let cfg = HubConfig::default()
        .high_water(1 << 20, 1 << 30)
        .max_queued(1 << 20, 1 << 30);
    match redis {
        None => {
            let h = Hub::with_backend(cfg, weft_hub::InProcess);
            (h.clone(), h)
        }
        #[cfg(feature = "redis")]
        Some(url) => {
            use weft_hub::redis::{RedisBackend, RedisConfig};
            let p = Hub::with_backend(cfg.clone(), RedisBackend::new(url, RedisConfig::default()).unwrap());
            let s = Hub::with_backend(cfg, RedisBackend::new(url, RedisConfig::default()).unwrap());
            (p, s)
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => panic!("build with --features redis"),
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let (publisher, subscribers) = hubs(&a.redis).await;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        delivered: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
    });
    let burst = a.messages;
    let paced = (a.rate as usize * 5).min(a.messages).max(1);
    let expect = burst + paced;
    let mut tasks = Vec::with_capacity(a.subscribers);
    let t_sub = Instant::now();
    for _ in 0..a.subscribers {
        let mut sub = subscribers.subscriber();
        sub.subscribe("bench").await.unwrap();
        let shared = shared.clone();
        tasks.push(if a.sockets {
            tokio::spawn(socket_subscriber(sub, shared, expect))
        } else {
            tokio::spawn(plain_subscriber(sub, shared, expect))
        });
    }
    let backend = publisher.backend_name();
    println!(
        "hub fan-out: backend {backend}, {} subscribers{}, {} B messages; subscribed in {:.2} s",
        a.subscribers,
        if a.sockets {
            " behind weft sockets (in-memory pipes)"
        } else {
            ""
        },
        a.size,
        t_sub.elapsed().as_secs_f64()
    );
    if a.redis.is_some() {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Burst.
    let t0 = shared.base.elapsed().as_nanos() as u64;
    for _ in 0..burst {
        publisher
            .publish("bench", payload(shared.base, a.size, 0))
            .await
            .unwrap();
    }
    let t_pub = shared.base.elapsed().as_nanos() as u64;
    let want = (burst * a.subscribers) as u64;
    while shared.delivered.load(Ordering::Relaxed) < want {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = (shared.last_ns.load(Ordering::Relaxed) - t0) as f64 / 1e9;
    println!(
        "burst: {burst} messages published in {:.3} s ({:.0} msg/s), {want} deliveries in {secs:.3} s = {:.2} M deliveries/s",
        (t_pub - t0) as f64 / 1e9,
        burst as f64 / ((t_pub - t0) as f64 / 1e9),
        want as f64 / secs / 1e6
    );

    // Paced.
    let every = Duration::from_nanos(1_000_000_000 / a.rate.max(1));
    let mut tick = tokio::time::interval(every);
    for _ in 0..paced {
        tick.tick().await;
        publisher
            .publish("bench", payload(shared.base, a.size, 1))
            .await
            .unwrap();
    }
    let mut lat = Vec::with_capacity(paced * a.subscribers);
    for t in tasks {
        lat.extend(t.await.unwrap().latencies_us);
    }
    lat.sort_unstable();
    println!(
        "paced: {paced} messages at {} msg/s ({} deliveries/s): latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} samples)",
        a.rate,
        a.rate as usize * a.subscribers,
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        pct(&lat, 1.0),
        lat.len()
    );
    let m = subscribers.metrics();
    println!(
        "metrics: delivered {} evicted {}",
        m.delivered,
        m.evicted_overflow + m.evicted_stalled
    );
}
