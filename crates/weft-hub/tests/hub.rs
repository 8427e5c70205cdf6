//! The in-process hub: ordering, subscriptions, the slow-subscriber policy and
//! shared frames, down to WebSockets.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use tokio::io::DuplexStream;
use weft::proto::Role;
use weft::{CloseCode, Config, Message, WebSocket};
use weft_hub::{Evicted, Hub, HubConfig, Subscriber};

async fn drain(sub: &mut Subscriber, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("a frame within 5 s")
            .unwrap();
        out.push(f.message().as_text().unwrap().to_owned());
    }
    out
}

#[tokio::test]
async fn every_subscriber_gets_every_message_in_publisher_order() {
    let hub = Hub::new();
    let mut subs = Vec::new();
    for _ in 0..5 {
        let mut s = hub.subscriber();
        s.subscribe("t").await.unwrap();
        subs.push(s);
    }
    // Three publishers at once; each one's messages must stay in its order.
    let mut tasks = Vec::new();
    for p in 0..3 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..300 {
                assert_eq!(hub.publish("t", format!("{p}:{i}")).await.unwrap(), 5);
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for s in &mut subs {
        let got = drain(s, 900).await;
        let mut next = [0usize; 3];
        for m in got {
            let (p, i) = m.split_once(':').unwrap();
            let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[p], "publisher {p} out of order");
            next[p] += 1;
        }
        assert_eq!(next, [300, 300, 300], "each exactly once");
        assert_eq!(s.queued(), (0, 0));
    }
    let m = hub.metrics();
    assert_eq!((m.published, m.delivered, m.subscribers, m.topics), (900, 4500, 5, 1));
}

#[tokio::test]
async fn unsubscribe_and_drop_stop_delivery_other_topics_continue() {
    let hub = Hub::new();
    let mut a = hub.subscriber();
    a.subscribe("x").await.unwrap();
    a.subscribe("y").await.unwrap();
    a.subscribe("y").await.unwrap(); // twice is once
    let mut topics: Vec<_> = a.topics().collect();
    topics.sort_unstable();
    assert_eq!(topics, ["x", "y"]);
    assert_eq!(hub.local_subscribers("y"), 1);
    hub.publish("x", "x1").await.unwrap();
    hub.publish("y", "y1").await.unwrap();
    assert!(a.unsubscribe("x"));
    assert!(!a.unsubscribe("x"));
    assert_eq!(hub.publish("x", "x2").await.unwrap(), 0);
    hub.publish("y", "y2").await.unwrap();
    assert_eq!(drain(&mut a, 3).await, ["x1", "y1", "y2"]);
    assert_eq!(hub.metrics().topics, 1);

    let mut b = hub.subscriber();
    b.subscribe("y").await.unwrap();
    assert_eq!(hub.local_subscribers("y"), 2);
    drop(a);
    assert_eq!(hub.local_subscribers("y"), 1);
    assert_eq!(hub.publish("y", "y3").await.unwrap(), 1);
    drop(b);
    assert_eq!(hub.metrics().subscribers, 0);
    assert_eq!(hub.metrics().topics, 0);
    assert_eq!(hub.count("y").await.unwrap(), 0);
    assert!(hub.publish("", "no topic").await.is_err());
}

#[tokio::test]
async fn one_allocation_is_shared_by_every_subscriber() {
    let hub = Hub::new();
    let mut subs = Vec::new();
    for _ in 0..100 {
        let mut s = hub.subscriber();
        s.subscribe("t").await.unwrap();
        subs.push(s);
    }
    hub.publish("t", Message::Binary(Bytes::from(vec![7u8; 3000])))
        .await
        .unwrap();
    hub.publish("t", "small").await.unwrap();
    for round in 0..2 {
        let mut ptrs = Vec::new();
        for s in &mut subs {
            let f = s.recv().await.unwrap();
            ptrs.push((f.bytes().as_ptr(), f.bytes().len()));
        }
        assert!(
            ptrs.windows(2).all(|w| w[0] == w[1]),
            "round {round}: one frame for all"
        );
    }
}

#[tokio::test]
async fn a_stuck_subscriber_is_evicted_at_the_byte_cap_others_get_everything() {
    let cfg = HubConfig::default()
        .high_water(1000, 1 << 20)
        .max_queued(10_000, 64 * 1024);
    let hub = Hub::with_backend(cfg, weft_hub::InProcess);
    let mut stuck = hub.subscriber();
    stuck.subscribe("t").await.unwrap();
    let mut fast = hub.subscriber();
    fast.subscribe("t").await.unwrap();
    let payload = "p".repeat(1000);
    let mut max_queued = 0;
    let mut got = 0;
    for i in 0..500 {
        hub.publish("t", format!("{i:04}{payload}")).await.unwrap();
        max_queued = max_queued.max(stuck.queued().1);
        let mut batch = Vec::new();
        got += fast.try_recv_many(&mut batch, 64).unwrap();
    }
    assert!(max_queued <= 64 * 1024, "queue never over the cap: {max_queued}");
    assert_eq!(got, 500, "the fast subscriber got every message");
    assert_eq!(stuck.evicted(), Some(Evicted::Overflow));
    assert_eq!(stuck.queued(), (0, 0), "the evicted queue was freed");
    assert_eq!(stuck.recv().await, Err(Evicted::Overflow));
    let m = hub.metrics();
    assert_eq!((m.evicted_overflow, m.evicted_stalled), (1, 0));
    assert_eq!(Evicted::Overflow.close_code(), CloseCode::TRY_AGAIN_LATER);
}

#[tokio::test]
async fn a_subscriber_behind_past_the_stall_timeout_is_evicted() {
    let cfg = HubConfig::default()
        .high_water(10, 1 << 20)
        .stall_timeout(Duration::from_millis(200));
    let hub = Hub::with_backend(cfg, weft_hub::InProcess);
    let mut slow = hub.subscriber();
    slow.subscribe("t").await.unwrap();
    // A burst over the mark is fine if it is read in time.
    for i in 0..20 {
        hub.publish("t", format!("{i}")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(drain(&mut slow, 20).await.len(), 20);
    tokio::time::sleep(Duration::from_millis(150)).await;
    hub.publish("t", "after").await.unwrap();
    assert!(slow.evicted().is_none(), "caught up in time");
    // Reads one message per round while 10 arrive: evicted once it has
    // been behind for the stall timeout, not before. (How many rounds that
    // takes depends on how late the sleeps wake on a busy machine, so only
    // the time is checked.)
    let behind_from = std::time::Instant::now();
    let deadline = behind_from + Duration::from_secs(10);
    loop {
        for _ in 0..10 {
            hub.publish("t", "m").await.unwrap();
        }
        let mut b = Vec::new();
        if slow.try_recv_many(&mut b, 1).is_err() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not evicted after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = behind_from.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "evicted before the stall timeout: {took:?}"
    );
    let m = hub.metrics();
    assert_eq!((m.evicted_stalled, m.evicted_overflow), (1, 0));
}

fn socket_pair(cfg: &Config) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(16 * 1024);
    (
        WebSocket::from_raw(a, Role::Server, cfg),
        WebSocket::from_raw(b, Role::Client, cfg),
    )
}

/// What a server does with a subscriber: forward its frames to the socket;
/// close with the eviction's code when evicted.
async fn pump(mut ws: WebSocket<DuplexStream>, mut sub: Subscriber) {
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            m = ws.recv() => if m.is_none() { return },
            r = sub.recv_many(&mut batch, 64), if ws.buffered_amount() < 64 * 1024 => match r {
                Ok(_) => {
                    for f in batch.drain(..) {
                        if ws.feed_raw(f).await.is_err() { return }
                    }
                }
                Err(e) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(e.close_code(), e.reason())).await;
                    return;
                }
            },
        }
    }
}

#[tokio::test]
async fn over_websockets_a_reader_that_stops_is_closed_with_1013_the_others_carry_on() {
    let cfg = HubConfig::default()
        .high_water(50, 32 * 1024)
        .stall_timeout(Duration::from_millis(300))
        .max_queued(1000, 256 * 1024);
    let hub = Hub::with_backend(cfg, weft_hub::InProcess);
    let ws_cfg = Config::default().write_buffer_size(16 * 1024);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (server, client) = socket_pair(&ws_cfg);
        let mut sub = hub.subscriber();
        sub.subscribe("room").await.unwrap();
        tokio::spawn(pump(server, sub));
        clients.push(client);
    }
    let stuck = clients.pop().unwrap();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut n = 0;
                while n < 2000 {
                    match c.recv().await {
                        Some(Ok(Message::Text(t))) => {
                            assert_eq!(t.as_str(), format!("{n:05}{}", "z".repeat(500)));
                            n += 1;
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                n
            })
        })
        .collect();
    for i in 0..2000 {
        hub.publish("room", format!("{i:05}{}", "z".repeat(500))).await.unwrap();
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for r in readers {
        assert_eq!(r.await.unwrap(), 2000);
    }
    // The stuck client's socket was closed with 1013 once its backlog is read.
    let mut stuck = stuck;
    let mut close = None;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), stuck.recv_event())
        .await
        .unwrap()
    {
        if let Ok(weft::Event::Close(f)) = ev {
            close = f;
        }
    }
    assert_eq!(close.map(|f| f.code), Some(CloseCode::TRY_AGAIN_LATER));
    let m = hub.metrics();
    assert_eq!(m.evicted_stalled + m.evicted_overflow, 1);
}
