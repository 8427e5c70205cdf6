//! `weft bench --mode fanout`: one publisher and many subscribers of one
//! topic, over real sockets.
//!
//! The URL must be a pub/sub endpoint where every message a connection sends
//! reaches every connection of the topic (`weft serve`'s `/topic/{name}`,
//! uWebSockets' `app.publish`). `--connections` subscribers are opened, then
//! one more connection, the publisher; after `--settle` seconds the publisher
//! sends binary messages at `--rate` per second (open loop) for `--duration`
//! seconds or `--messages` messages. Each message's first 16 bytes carry its
//! sequence number and the moment it was due, in nanoseconds since the bench
//! started (both little-endian `u64`); a subscriber's latency for a delivery
//! is its arrival time less that moment, so a publisher that falls behind
//! shows in the latency instead of hiding it. Once the publisher is done, the
//! subscribers get up to [`DRAIN`] to receive what is still on its way.
//!
//! Deliveries expected are messages × subscribers that opened; what did not
//! arrive is reported as lost, split by whether the server closed the
//! subscriber (e.g. 1013 for one that fell behind) or it was still open.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use weft::WsUrl;
use weft::proto::{FrameHeader, Opcode};

use super::{BenchArgs, FrameCounter, Io, MEASURE, Shared, cpu_seconds, open, open_all, progress, report};

/// Bytes at the start of each message: sequence number and due time.
pub(super) const STAMP: usize = 16;
/// How long subscribers may take, after the last message was sent, to
/// receive what is still on its way.
const DRAIN: Duration = Duration::from_secs(10);
/// The masking key of the publisher's frames (a fixed one: the server
/// unmasks either way).
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x9e];
/// The close frame a client sends when it leaves (1000, masked with a zero key).
const CLOSE: [u8; 8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8];

/// What a fan-out run found, besides what [`Shared`] counts.
pub(super) struct FanoutStats {
    /// Messages the publisher sent.
    pub(super) published: u64,
    /// Subscriber connections that opened.
    pub(super) subscribers: usize,
    /// The publishing rate asked for, messages per second.
    pub(super) rate: f64,
    /// Seconds the publisher took to send them.
    pub(super) publish_seconds: f64,
    /// published × subscribers.
    pub(super) expected: u64,
    /// Deliveries that arrived.
    pub(super) delivered: u64,
    /// Deliveries missing at subscribers the server closed.
    pub(super) lost_closed: u64,
    /// Deliveries missing at subscribers still open at the end.
    pub(super) lost_open: u64,
    /// Subscribers the server closed (or whose connection failed).
    pub(super) closed: usize,
    /// The load generator's own CPU use while publishing and draining, in
    /// cores.
    pub(super) client_cpu: Option<f64>,
}

/// Append the publisher's masked binary frame for message `seq`, due at
/// `at_ns`, of `size` bytes (at least [`STAMP`]).
pub(super) fn message_frame(seq: u64, at_ns: u64, size: usize, out: &mut Vec<u8>) {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode: Opcode::Binary,
        mask: Some(MASK),
        payload_len: size as u64,
    };
    header.encode(out);
    let start = out.len();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&at_ns.to_le_bytes());
    out.extend((STAMP..size).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]));
    out.truncate(start + size);
    weft::proto::mask::apply_mask(&mut out[start..], MASK, 0);
}

/// Why a subscriber's stream ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// The server sent a close frame, with this code if any.
    Closed(Option<u16>),
    /// The server sent something that is not a WebSocket frame stream.
    Bad(String),
}

/// Reads a subscriber's stream without copying payloads: each data message's
/// stamp is taken from its first frame, the rest skipped; pings are answered.
#[derive(Default)]
pub(super) struct StampReader {
    /// Payload bytes of the current data frame still to skip.
    skip: usize,
    /// Whether the current data frame ends its message.
    fin: bool,
    /// The current message's sequence number and due time.
    stamp: Option<(u64, u64)>,
}

fn le_u64(b: &[u8]) -> Option<u64> {
    b.first_chunk::<8>().map(|a| u64::from_le_bytes(*a))
}

impl StampReader {
    /// Consume what `buf` holds: `deliver` is called once per complete data
    /// message with its stamp (`None` for a message shorter than the stamp);
    /// pongs to send back are appended to `pongs`.
    pub(super) fn read(
        &mut self,
        buf: &mut BytesMut,
        deliver: &mut impl FnMut(Option<(u64, u64)>),
        pongs: &mut Vec<u8>,
    ) -> Result<(), End> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len());
                buf.advance(n);
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(());
                }
                if self.fin {
                    deliver(self.stamp.take());
                }
            }
            let (h, n) = match FrameHeader::parse(buf) {
                Ok(Some(x)) => x,
                Ok(None) => return Ok(()),
                Err(e) => return Err(End::Bad(format!("bad frame from server: {e:?}"))),
            };
            let len = usize::try_from(h.payload_len).map_err(|_| End::Bad("frame too long".into()))?;
            if h.opcode.is_control() {
                if len > 125 {
                    return Err(End::Bad("control frame over 125 bytes".into()));
                }
                // Control frames are taken whole.
                if buf.len() < n + len {
                    return Ok(());
                }
                buf.advance(n);
                let payload = buf.split_to(len);
                match h.opcode {
                    Opcode::Close => {
                        let code = payload.first_chunk::<2>().map(|c| u16::from_be_bytes(*c));
                        return Err(End::Closed(code));
                    }
                    Opcode::Ping => {
                        FrameHeader {
                            fin: true,
                            rsv: 0,
                            opcode: Opcode::Pong,
                            mask: Some([0; 4]),
                            payload_len: len as u64,
                        }
                        .encode(pongs);
                        pongs.extend_from_slice(&payload);
                    }
                    _ => {}
                }
                continue;
            }
            if h.opcode != Opcode::Continuation {
                // The first frame of a message: its first bytes are the stamp.
                if len >= STAMP {
                    if buf.len() < n + STAMP {
                        return Ok(());
                    }
                    let p = &buf[n..n + STAMP];
                    self.stamp = le_u64(p).zip(le_u64(&p[8..]));
                } else {
                    self.stamp = None;
                }
            }
            buf.advance(n);
            self.skip = len;
            self.fin = h.fin;
            if len == 0 && h.fin {
                deliver(self.stamp.take());
            }
        }
    }
}

/// Nanoseconds since `t0`.
fn since(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One subscriber: count deliveries and record their latency until `stop`.
/// Returns the deliveries received and whether the connection ended first.
async fn subscriber(
    mut io: Box<dyn Io>,
    mut buf: BytesMut,
    size: usize,
    shared: Arc<Shared>,
    t0: Instant,
    last: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> (u64, bool) {
    let mut reader = StampReader::default();
    let mut samples = Vec::with_capacity(64);
    let mut pongs = Vec::new();
    let mut received = 0u64;
    let mut next_seq = 0u64;
    let mut out_of_order = false;
    let closed = loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let read = tokio::select! {
            r = io.read_buf(&mut buf) => r,
            _ = stop.changed() => break false,
        };
        match read {
            Ok(0) => {
                shared.error("server closed a subscriber without a close frame".into());
                break true;
            }
            Ok(_) => {}
            Err(e) => {
                shared.error(format!("subscriber read: {}", e.kind()));
                break true;
            }
        }
        let now = since(t0);
        let mut n = 0u64;
        let res = reader.read(
            &mut buf,
            &mut |stamp| {
                n += 1;
                if let Some((seq, at)) = stamp {
                    samples.push(now.saturating_sub(at));
                    out_of_order |= seq != next_seq;
                    next_seq = seq.saturating_add(1);
                }
            },
            &mut pongs,
        );
        if n > 0 {
            received += n;
            shared.messages.fetch_add(n, Ordering::Relaxed);
            shared.bytes.fetch_add(n * size as u64, Ordering::Relaxed);
            last.fetch_max(now, Ordering::Relaxed);
            if samples.len() >= 64 {
                shared.record(&mut samples);
            }
        }
        if !pongs.is_empty() {
            if io.write_all(&pongs).await.is_err() {
                shared.error("subscriber write failed".into());
                break true;
            }
            pongs.clear();
        }
        match res {
            Ok(()) => {}
            Err(End::Closed(code)) => {
                let code = code.map_or_else(|| "no code".to_owned(), |c| c.to_string());
                shared.error(format!("server closed a subscriber with {code}"));
                break true;
            }
            Err(End::Bad(e)) => {
                shared.error(e);
                break true;
            }
        }
    };
    shared.record(&mut samples);
    if out_of_order {
        shared.error("a subscriber saw messages out of order or skipped".into());
    }
    if !closed {
        let _ = tokio::time::timeout(Duration::from_millis(100), io.write_all(&CLOSE)).await;
    }
    (received, closed)
}

/// When the publisher's messages are due: `count` of them, `rate` per second
/// from `start`; stamped in nanoseconds since `t0`.
#[derive(Clone, Copy)]
struct Schedule {
    count: u64,
    rate: f64,
    start: Instant,
    t0: Instant,
}

/// The publisher: the messages of `plan`, each stamped with the moment it
/// was due; how many were sent goes to `done` once the last one is written.
/// Its own copies of the messages (it is a subscriber too) are read and
/// dropped until `stop`.
async fn publisher(
    io: Box<dyn Io>,
    mut buf: BytesMut,
    size: usize,
    plan: Schedule,
    shared: Arc<Shared>,
    done: tokio::sync::oneshot::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let reader_shared = shared.clone();
    let mut reader = tokio::spawn(async move {
        let mut counter = FrameCounter::default();
        loop {
            buf.reserve(16 * 1024);
            match rd.read_buf(&mut buf).await {
                Ok(0) => return reader_shared.error("server closed the publisher".into()),
                Ok(_) => {}
                Err(e) => return reader_shared.error(format!("publisher read: {}", e.kind())),
            }
            if let Err(e) = counter.count(&mut buf) {
                return reader_shared.error(format!("publisher: {e}"));
            }
        }
    });
    let mut frame = Vec::with_capacity(size + 14);
    let mut sent = 0;
    for seq in 0..plan.count {
        let due = plan.start + Duration::from_secs_f64(seq as f64 / plan.rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if reader.is_finished() {
            break;
        }
        let at = u64::try_from(due.saturating_duration_since(plan.t0).as_nanos()).unwrap_or(u64::MAX);
        frame.clear();
        message_frame(seq, at, size, &mut frame);
        if let Err(e) = wr.write_all(&frame).await {
            shared.error(format!("publisher write: {}", e.kind()));
            break;
        }
        sent += 1;
    }
    let _ = done.send(sent);
    // Keep reading the publisher's own copies until the subscribers are done.
    tokio::select! {
        _ = &mut reader => {}
        _ = stop.changed() => {}
    }
    reader.abort();
    let _ = tokio::time::timeout(Duration::from_millis(100), wr.write_all(&CLOSE)).await;
}

pub(super) async fn fanout(
    args: Arc<BenchArgs>,
    url: WsUrl,
    tls: Option<tokio_rustls::TlsConnector>,
    shared: Arc<Shared>,
) -> std::process::ExitCode {
    let t0 = Instant::now();
    if args.size < STAMP {
        eprintln!("weft bench: fanout messages carry a {STAMP}-byte stamp: --size must be at least {STAMP}");
        return std::process::ExitCode::FAILURE;
    }
    let rate = args.rate.unwrap_or(100.0);
    if !(rate.is_finite() && rate > 0.0) {
        eprintln!("weft bench: --rate must be a positive number of messages per second");
        return std::process::ExitCode::FAILURE;
    }
    let count = args
        .messages
        .unwrap_or_else(|| (rate * args.duration).round().max(1.0) as u64);
    let bar = progress(&format!("opening {} subscribers", args.connections));
    let conns = open_all(&args, &url, &tls, &shared).await;
    if conns.is_empty() {
        bar.finish_and_clear();
        eprintln!(
            "weft bench: no subscriber could be opened: {}",
            super::errors_line(&shared)
        );
        return std::process::ExitCode::FAILURE;
    }
    let opened = conns.len();
    let (stop_tx, stop_rx) = watch::channel(false);
    let last = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::with_capacity(opened);
    for (io, buf) in conns {
        subs.push(tokio::spawn(subscriber(
            io,
            buf,
            args.size,
            shared.clone(),
            t0,
            last.clone(),
            stop_rx.clone(),
        )));
    }
    let (pio, pbuf) = match open(&url, &args, tls.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            bar.finish_and_clear();
            eprintln!("weft bench: the publisher could not connect: {e}");
            let _ = stop_tx.send(true);
            return std::process::ExitCode::FAILURE;
        }
    };
    bar.set_message(format!("{opened} subscribers open, settling"));
    tokio::time::sleep(Duration::from_secs_f64(args.settle.max(0.0))).await;

    let cpu0 = args.server_pid.and_then(cpu_seconds);
    let own0 = cpu_seconds(std::process::id());
    shared.phase.store(MEASURE, Ordering::Relaxed);
    let start = Instant::now();
    let start_ns = since(t0);
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let pubtask = tokio::spawn(publisher(
        pio,
        pbuf,
        args.size,
        Schedule { count, rate, start, t0 },
        shared.clone(),
        done_tx,
        stop_rx.clone(),
    ));
    let expected_now = |sent: f64| sent * opened as f64;
    // Publishing, then draining: done when every delivery arrived, or DRAIN
    // after the last message was due.
    let publish_end = start + Duration::from_secs_f64(count as f64 / rate);
    let mut published = None;
    let mut publish_seconds = 0.0;
    loop {
        tokio::select! {
            r = &mut done_rx, if published.is_none() => {
                published = Some(r.unwrap_or(0));
                publish_seconds = start.elapsed().as_secs_f64();
            }
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        let delivered = shared.messages.load(Ordering::Relaxed);
        if let Some(p) = published
            && (delivered >= p * opened as u64 || Instant::now() > publish_end.max(start) + DRAIN)
        {
            break;
        }
        let due = (start.elapsed().as_secs_f64() * rate).min(count as f64);
        bar.set_message(format!(
            "publishing: {due:.0} of {count} messages due, {delivered} of {:.0} deliveries",
            expected_now(due)
        ));
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu1 = args.server_pid.and_then(cpu_seconds);
    let own1 = cpu_seconds(std::process::id());
    let _ = stop_tx.send(true);
    let published = published.unwrap_or(0);
    let _ = tokio::time::timeout(Duration::from_secs(1), pubtask).await;
    let mut lost_closed = 0;
    let mut lost_open = 0;
    let mut closed = 0;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for s in subs {
            let (got, ended) = s.await.unwrap_or((0, true));
            let missing = published.saturating_sub(got);
            if ended {
                closed += 1;
                lost_closed += missing;
            } else {
                lost_open += missing;
            }
        }
    })
    .await;
    bar.finish_and_clear();
    let delivered = shared.messages.load(Ordering::Relaxed);
    // From the first message to the last delivery.
    let last_ns = last.load(Ordering::Relaxed);
    let elapsed = if last_ns > start_ns {
        (last_ns - start_ns) as f64 / 1e9
    } else {
        wall
    };
    let per_core = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some((b - a) / wall),
        _ => None,
    };
    let stats = FanoutStats {
        published,
        subscribers: opened,
        rate,
        publish_seconds,
        expected: published * opened as u64,
        delivered,
        lost_closed,
        lost_open,
        closed,
        client_cpu: per_core(own0, own1),
    };
    report(
        &args,
        &shared,
        opened,
        elapsed,
        per_core(cpu0, cpu1),
        None,
        Some(&stats),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(op: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        FrameHeader {
            fin,
            rsv: 0,
            opcode: op,
            mask: None,
            payload_len: payload.len() as u64,
        }
        .encode(&mut v);
        v.extend_from_slice(payload);
        v
    }

    fn stamped(seq: u64, at: u64, size: usize) -> Vec<u8> {
        let mut p = seq.to_le_bytes().to_vec();
        p.extend_from_slice(&at.to_le_bytes());
        p.resize(size, b'x');
        p
    }

    #[test]
    fn stamps_pings_and_close_in_any_split() {
        let mut wire = Vec::new();
        wire.extend(server_frame(Opcode::Binary, true, &stamped(0, 111, 64)));
        wire.extend(server_frame(Opcode::Ping, true, b"hi"));
        wire.extend(server_frame(Opcode::Binary, true, &stamped(1, 222, 70_000)));
        wire.extend(server_frame(Opcode::Binary, false, &stamped(2, 333, 20)));
        wire.extend(server_frame(Opcode::Continuation, true, b"tail"));
        wire.extend(server_frame(Opcode::Text, true, b"short"));
        wire.extend(server_frame(Opcode::Close, true, &[0x03, 0xf5, b'x']));
        for chunk in [1, 2, 3, 7, 100, 4096, wire.len()] {
            let mut reader = StampReader::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut pongs = Vec::new();
            let mut end = None;
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                if let Err(e) = reader.read(&mut buf, &mut |s| got.push(s), &mut pongs) {
                    end = Some(e);
                    break;
                }
            }
            assert_eq!(
                got,
                vec![Some((0, 111)), Some((1, 222)), Some((2, 333)), None],
                "chunk {chunk}"
            );
            assert_eq!(end, Some(End::Closed(Some(1013))), "chunk {chunk}");
            assert_eq!(pongs, [0x8a, 0x82, 0, 0, 0, 0, b'h', b'i'], "chunk {chunk}");
        }
        let mut buf = BytesMut::from(&server_frame(Opcode::Ping, true, &[0; 126])[..]);
        assert!(matches!(
            StampReader::default().read(&mut buf, &mut |_| {}, &mut Vec::new()),
            Err(End::Bad(_))
        ));
    }

    #[test]
    fn the_publisher_frame_is_a_valid_masked_binary_frame() {
        let mut frame = Vec::new();
        message_frame(7, 123_456, 64, &mut frame);
        let mut server = weft::proto::Connection::new(weft::proto::Role::Server, weft::proto::Config::default());
        server.receive_data(&frame);
        match server.poll_event() {
            Ok(Some(weft::Event::Message(weft::Message::Binary(b)))) => {
                assert_eq!(b.len(), 64);
                assert_eq!(le_u64(&b), Some(7));
                assert_eq!(le_u64(&b[8..]), Some(123_456));
            }
            other => panic!("{other:?}"),
        }
    }
}
