//! Two hubs sharing a real `redis-server` (skipped, with a note, when none is
//! installed): cross-node delivery exactly once and in order, presence
//! counts, and an outage: publishes fail loudly, then both nodes recover.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weft_hub::redis::{RedisBackend, RedisConfig};
use weft_hub::{Hub, HubConfig, HubError, Subscriber};

struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    fn start(port: u16) -> Option<RedisServer> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let s = RedisServer {
            port,
            child: Some(child),
        };
        let until = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(s)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hub(url: &str) -> Hub {
    let mut cfg = RedisConfig::default()
        .prefix("test:hub:")
        .backoff(Duration::from_millis(50), Duration::from_millis(400))
        .timeouts(Duration::from_secs(2), Duration::from_secs(5));
    // Ping often, so that the pings run during the test too (with timeouts
    // that a stall of a busy machine does not reach: no reconnection may
    // happen before the outage).
    cfg.ping_interval = Duration::from_millis(100);
    // No presence refresh during the test: the counts checked are the ones
    // each node reported by counting.
    cfg.presence_ttl = Duration::from_secs(600);
    Hub::with_backend(HubConfig::default(), RedisBackend::new(url, cfg).unwrap())
}

async fn texts(sub: &mut Subscriber, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {n}: {out:?}", out.len()))
            .unwrap();
        out.push(f.message().as_text().unwrap().to_owned());
    }
    out
}

async fn nothing_more(sub: &mut Subscriber) {
    let more = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await;
    assert!(more.is_err(), "unexpected extra frame {more:?}");
}

async fn subscribe_retrying(sub: &mut Subscriber, topic: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while let Err(e) = sub.subscribe(topic).await {
        assert!(Instant::now() < until, "subscribe kept failing: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_redis_with_an_outage() {
    let port = free_port();
    let Some(mut redis) = RedisServer::start(port) else {
        println!("skipped: redis-server is not installed (apt-get install redis-server)");
        return;
    };
    let (a, b) = (hub(&redis.url()), hub(&redis.url()));
    let mut a1 = a.subscriber();
    let mut a2 = a.subscriber();
    let mut b1 = b.subscriber();
    subscribe_retrying(&mut a1, "t").await;
    subscribe_retrying(&mut a2, "t").await;
    subscribe_retrying(&mut b1, "t").await;

    // Each node's messages reach every subscriber once, in order, and the
    // publishing node's own subscribers are not served Redis's echo too.
    for i in 0..100 {
        a.publish("t", format!("a{i}")).await.unwrap();
        b.publish("t", format!("b{i}")).await.unwrap();
    }
    for s in [&mut a1, &mut a2, &mut b1] {
        let got = texts(s, 200).await;
        let from_a: Vec<_> = got.iter().filter(|m| m.starts_with('a')).cloned().collect();
        let from_b: Vec<_> = got.iter().filter(|m| m.starts_with('b')).cloned().collect();
        assert_eq!(from_a, (0..100).map(|i| format!("a{i}")).collect::<Vec<_>>());
        assert_eq!(from_b, (0..100).map(|i| format!("b{i}")).collect::<Vec<_>>());
        nothing_more(s).await;
    }
    // Counts are summed over the nodes that reported theirs (by counting, or
    // by the refresh every presence_ttl / 3 after a subscribe).
    a.count("t").await.unwrap();
    assert_eq!(b.count("t").await.unwrap(), 3);
    assert_eq!(a.count("t").await.unwrap(), 3);
    drop(a2);
    assert_eq!(b.count("t").await.unwrap(), 3, "a has not reported the change yet");
    assert_eq!(a.count("t").await.unwrap(), 2);
    assert_eq!(b.count("t").await.unwrap(), 2);

    // Unsubscribed on b: b's subscriber gets nothing more.
    b1.unsubscribe("t");
    a.publish("t", "after-unsub").await.unwrap();
    assert_eq!(texts(&mut a1, 1).await, ["after-unsub"]);
    nothing_more(&mut b1).await;
    subscribe_retrying(&mut b1, "t").await;

    assert_eq!(
        (a.metrics().backend_reconnects, b.metrics().backend_reconnects),
        (0, 0),
        "no connection was lost before the outage"
    );

    // Outage: every publish fails (loudly) and reaches no one.
    redis.kill();
    let mut failed = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        match a.publish("t", "during-outage").await {
            Err(HubError::Unavailable(_)) => failed += 1,
            Ok(_) => panic!("a publish succeeded with Redis down"),
            Err(e) => panic!("unexpected {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed > 10);
    assert!(b.publish("t", "during-outage").await.is_err());
    nothing_more(&mut a1).await;
    nothing_more(&mut b1).await;
    assert!(a.metrics().publish_failed >= failed);
    assert!(!a.metrics().backend_connected);

    // Back: both nodes reconnect and resubscribe on their own.
    let _redis2 = RedisServer::start(port).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while !(a.metrics().backend_connected && b.metrics().backend_connected) {
        assert!(Instant::now() < until, "nodes did not reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.metrics().backend_reconnects >= 1);
    a.publish("t", "a-back").await.unwrap();
    b.publish("t", "b-back").await.unwrap();
    for s in [&mut a1, &mut b1] {
        let mut got = texts(s, 2).await;
        got.sort();
        assert_eq!(got, ["a-back", "b-back"]);
        nothing_more(s).await;
    }
}
