//! permessage-deflate and the hub: one compression per message per window
//! size for subscribers without server context takeover, the shared
//! uncompressed frame for the others; and the stall deadline on time.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::DuplexStream;
use weft::proto::deflate::{DeflateConfig, PerMessageDeflate, SharedCompression};
use weft::proto::frame::{FrameHeader, RSV1};
use weft::proto::{ClientExtension, Connection, ExtensionOffer, Role, ServerExtension};
use weft::{Config, Message, WebSocket};
use weft_hub::{Evicted, Hub, HubConfig, Subscriber};

/// A server and a client socket that negotiated permessage-deflate with
/// `server` (the server's policy) and `client` (the client's offer).
fn deflate_pair(server: DeflateConfig, client: DeflateConfig) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let s = PerMessageDeflate::new(server);
    let c = PerMessageDeflate::new(client);
    let offers = c.offers();
    let refs: Vec<&ExtensionOffer> = offers.iter().collect();
    let (answer, sext) = ServerExtension::negotiate(&s, &refs).unwrap();
    let cext = ClientExtension::accept(&c, &answer).unwrap();
    let cfg = Config::default();
    let (a, b) = tokio::io::duplex(256 * 1024);
    let sconn = Connection::new(Role::Server, cfg.protocol.clone()).with_extension(Some(sext));
    let cconn = Connection::new(Role::Client, cfg.protocol.clone()).with_extension(Some(cext));
    let header = Some(answer.to_string());
    (
        WebSocket::from_parts(a, sconn, &cfg, &[], None, header.clone()),
        WebSocket::from_parts(b, cconn, &cfg, &[], None, header),
    )
}

fn snct() -> DeflateConfig {
    DeflateConfig::default().server_no_context_takeover(true)
}

fn rsv(frame: &Bytes) -> u8 {
    FrameHeader::parse(frame).unwrap().unwrap().0.rsv
}

fn chatty(i: usize) -> String {
    format!(
        r#"{{"type":"message","from":"ada","text":"{}","at":{i}}}"#,
        "the quick brown fox jumps over the lazy dog ".repeat(8)
    )
}

async fn recv_text(c: &mut WebSocket<DuplexStream>) -> String {
    match tokio::time::timeout(Duration::from_secs(5), c.recv()).await.unwrap() {
        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn mixed_subscribers_get_one_compression_per_window_and_all_decode() {
    let hub = Hub::new();
    // Two no-context-takeover connections at 15 bits, one at 10 bits, one
    // that keeps its context, one without deflate.
    let configs = [
        Some((snct(), DeflateConfig::default())),
        Some((snct(), DeflateConfig::default())),
        Some((snct(), DeflateConfig::default().server_max_window_bits(10))),
        Some((DeflateConfig::default(), DeflateConfig::default())),
        None,
    ];
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    let mut subs = Vec::new();
    for c in configs {
        let (server, client) = match c {
            Some((s, c)) => deflate_pair(s, c),
            None => {
                let (a, b) = tokio::io::duplex(256 * 1024);
                let cfg = Config::default();
                (
                    WebSocket::from_raw(a, Role::Server, &cfg),
                    WebSocket::from_raw(b, Role::Client, &cfg),
                )
            }
        };
        let mut sub = hub.subscriber_for(server.connection());
        sub.subscribe("room").await.unwrap();
        subs.push(sub);
        servers.push(server);
        clients.push(client);
    }
    let windows: Vec<_> = subs.iter().map(|s| s.compression().map(|c| c.window_bits())).collect();
    assert_eq!(windows, [Some(15), Some(15), Some(10), None, None]);

    for i in 0..3 {
        assert_eq!(hub.publish("room", chatty(i)).await.unwrap(), 5);
        // The socket's own messages interleave with the hub's.
        hub.publish("room", "short").await.unwrap();
    }
    let mut frames: Vec<Vec<Bytes>> = Vec::new();
    for (sub, server) in subs.iter_mut().zip(&mut servers) {
        let mut got = Vec::new();
        sub.try_recv_many(&mut got, 100).unwrap();
        assert_eq!(got.len(), 6);
        for (k, f) in got.iter().enumerate() {
            server.feed_raw(f.clone()).await.unwrap();
            if k % 2 == 1 {
                server.feed(chatty(100 + k)).await.unwrap();
            }
        }
        server.flush().await.unwrap();
        frames.push(got);
    }
    let m = hub.metrics();
    assert_eq!(
        m.compressions,
        3 * 2,
        "one per message per window size, none for the short ones"
    );
    assert_eq!(m.delivered, 30);
    assert_eq!(m.delivered_compressed, 3 * 3);

    for i in 0..3 {
        let k = 2 * i;
        // The 15-bit subscribers share one compressed frame.
        assert_eq!(frames[0][k].as_ptr(), frames[1][k].as_ptr());
        assert_eq!(rsv(&frames[0][k]), RSV1);
        assert!(frames[0][k].len() < chatty(i).len() / 2);
        // The 10-bit one has its own.
        assert_eq!(rsv(&frames[2][k]), RSV1);
        assert_ne!(frames[2][k].as_ptr(), frames[0][k].as_ptr());
        // The others share the uncompressed frame.
        assert_eq!(rsv(&frames[3][k]), 0);
        assert_eq!(frames[3][k].as_ptr(), frames[4][k].as_ptr());
        // Short messages go uncompressed to everyone: one frame.
        assert!(frames.iter().all(|f| f[k + 1].as_ptr() == frames[0][k + 1].as_ptr()));
    }
    for c in &mut clients {
        for i in 0..3 {
            assert_eq!(recv_text(c).await, chatty(i));
            assert_eq!(recv_text(c).await, "short");
            assert_eq!(recv_text(c).await, chatty(101 + 2 * i));
        }
    }
}

#[tokio::test]
async fn subscribers_without_a_connection_choose_their_compression() {
    let hub = Hub::new();
    let w15 = SharedCompression::new(15, 6, 128).unwrap();
    let mut a = hub.subscriber_with(Some(w15));
    let mut b = hub.subscriber_with(Some(SharedCompression::new(15, 6, 1 << 20).unwrap()));
    let mut plain = hub.subscriber();
    for s in [&mut a, &mut b, &mut plain] {
        s.subscribe("t").await.unwrap();
    }
    hub.publish("t", chatty(1)).await.unwrap();
    // Incompressible data goes out uncompressed, even over the threshold.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..2000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    hub.publish("t", Message::Binary(noise.clone().into())).await.unwrap();
    let fa = a.recv().await.unwrap();
    let fb = b.recv().await.unwrap();
    let fp = plain.recv().await.unwrap();
    assert!(fa.is_compressed());
    assert!(!fb.is_compressed(), "under b's threshold");
    assert_eq!(fb.bytes().as_ptr(), fp.bytes().as_ptr());
    assert_eq!(fa.message(), fp.message());
    assert_eq!(fa.message().as_text(), Some(chatty(1).as_str()));
    let na = a.recv().await.unwrap();
    assert!(!na.is_compressed());
    assert_eq!(na.message(), Message::Binary(noise.into()));
    let m = hub.metrics();
    assert_eq!((m.compressions, m.delivered_compressed), (2, 1));
    // Unsubscribing the only compressed subscriber stops compression.
    drop(a);
    hub.publish("t", chatty(2)).await.unwrap();
    assert_eq!(hub.metrics().compressions, 2);
}

#[tokio::test]
async fn a_context_takeover_subscriber_gets_uncompressed_frames_and_its_own_compression_still_works() {
    let hub = Hub::new();
    let (mut server, mut client) = deflate_pair(DeflateConfig::default(), DeflateConfig::default());
    let mut sub = hub.subscriber_for(server.connection());
    assert_eq!(sub.compression(), None);
    sub.subscribe("t").await.unwrap();
    for i in 0..3 {
        hub.publish("t", chatty(i)).await.unwrap();
        let f = sub.recv().await.unwrap();
        assert!(!f.is_compressed());
        server.feed_raw(f.into_bytes()).await.unwrap();
        server.send(chatty(10 + i)).await.unwrap();
    }
    for i in 0..3 {
        assert_eq!(recv_text(&mut client).await, chatty(i));
        assert_eq!(recv_text(&mut client).await, chatty(10 + i));
    }
    assert_eq!(hub.metrics().compressions, 0);
}

#[tokio::test]
async fn a_full_queue_is_evicted_at_the_deadline_without_another_publish() {
    let cfg = HubConfig::default()
        .high_water(3, 1 << 20)
        .stall_timeout(Duration::from_millis(200));
    let hub = Hub::with_backend(cfg, weft_hub::InProcess);
    let mut slow = hub.subscriber();
    slow.subscribe("t").await.unwrap();
    let mut fine = hub.subscriber();
    fine.subscribe("t").await.unwrap();
    let eviction = slow.eviction();
    let start = Instant::now();
    for i in 0..5 {
        hub.publish("t", format!("{i}")).await.unwrap();
    }
    let mut b = Vec::new();
    assert_eq!(fine.try_recv_many(&mut b, 10).unwrap(), 5);
    // Nothing more is published: the timer alone evicts.
    // (Without the timer it would never come: nothing more is published.
    // The bound is loose so that a busy machine cannot fail the test.)
    let why = tokio::time::timeout(Duration::from_secs(10), eviction).await.unwrap();
    let took = start.elapsed();
    assert_eq!(why, Evicted::Stalled);
    assert!(took >= Duration::from_millis(200), "not before the deadline: {took:?}");
    assert_eq!(slow.queued(), (0, 0), "freed");
    assert_eq!(slow.recv().await, Err(Evicted::Stalled));
    assert!(fine.evicted().is_none());
    let m = hub.metrics();
    assert_eq!((m.evicted_stalled, m.evicted_overflow), (1, 0));
}

#[tokio::test]
async fn a_queue_that_catches_up_in_time_is_not_evicted_by_the_timer() {
    let cfg = HubConfig::default()
        .high_water(3, 1 << 20)
        .stall_timeout(Duration::from_millis(1000));
    let hub = Hub::with_backend(cfg, weft_hub::InProcess);
    let mut sub = hub.subscriber();
    sub.subscribe("t").await.unwrap();
    for _ in 0..5 {
        hub.publish("t", "m").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    sub.try_recv_many(&mut Vec::new(), 10).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sub.evicted().is_none());
    assert_eq!(hub.metrics().evicted_stalled, 0);
}

/// A server's pump that closes on eviction even while its socket is backed
/// up (it does not take frames then).
async fn pump(mut ws: WebSocket<DuplexStream>, mut sub: Subscriber) {
    let mut batch = Vec::new();
    let evicted = sub.eviction();
    tokio::pin!(evicted);
    loop {
        tokio::select! {
            m = ws.recv() => if m.is_none() { return },
            e = &mut evicted => {
                let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(e.close_code(), e.reason())).await;
                return;
            }
            r = sub.recv_many(&mut batch, 64), if ws.buffered_amount() < 16 * 1024 => match r {
                Ok(_) => {
                    for f in batch.drain(..) {
                        if ws.feed_raw(f).await.is_err() { return }
                    }
                }
                Err(_) => continue,
            },
        }
    }
}

#[tokio::test]
async fn a_stuck_socket_is_dropped_on_time_after_one_burst() {
    let cfg = HubConfig::default()
        .high_water(20, 1 << 20)
        .stall_timeout(Duration::from_millis(200));
    let hub = Hub::with_backend(cfg, weft_hub::InProcess);
    // Sends never wait (a large write buffer): the pump's own backlog
    // check is what stops it taking frames.
    let ws_cfg = Config::default().write_buffer_size(1 << 20);
    let (a, b) = tokio::io::duplex(4 * 1024);
    let server = WebSocket::from_raw(a, Role::Server, &ws_cfg);
    let client = WebSocket::from_raw(b, Role::Client, &ws_cfg);
    let mut sub = hub.subscriber();
    sub.subscribe("t").await.unwrap();
    let task = tokio::spawn(pump(server, sub));
    // One burst, then silence; the client never reads.
    for i in 0..200 {
        hub.publish("t", format!("{i:04}{}", "x".repeat(500))).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the pump ends soon after the deadline")
        .unwrap();
    assert_eq!(hub.metrics().evicted_stalled, 1);
    assert_eq!(hub.local_subscribers("t"), 0);
    drop(client);
}
