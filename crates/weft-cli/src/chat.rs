//! The chat demo of `weft serve`: rooms on top of `weft-hub`.
//!
//! - `GET /chat`: the chat page (`web/chat.html`, `web/chat.js`, `web/app.css`).
//! - `GET /chat/{room}?nick=NAME` (WebSocket): join `room`. Every text message
//!   a member sends reaches every member of the room, on every node sharing the
//!   hub, as `{"type":"message","from":NICK,"text":TEXT,"at":MS}` (`at`:
//!   milliseconds since the Unix epoch). Joins and leaves are announced as
//!   `{"type":"join"|"leave","nick":NICK,"members":N,"at":MS}`; the joining
//!   member first gets `{"type":"welcome","nick":NICK,"room":ROOM,"at":MS}`
//!   with its sanitized nickname, sent once it is subscribed: every room
//!   message published after the welcome reaches it. A message the
//!   hub could not take (Redis unreachable) is answered to its sender only, as
//!   `{"type":"error","error":WHY,"text":TEXT,"at":MS}`: it reached nobody.
//! - `GET /hub/stats`: the hub's counters as JSON.
//!
//! Compression: unless `--no-compression`, chat sockets accept
//! permessage-deflate and answer with `server_no_context_takeover` (browsers
//! accept it). Every room message then goes out compressed, compressed once
//! per window size for all the room's members on this node rather than once
//! per member; the price is that each message is compressed on its own (no
//! window shared with earlier messages) — for chat messages, which repeat
//! little of each other, a small loss. `/echo` keeps the default
//! negotiation (context takeover).
//!
//! A member whose queue stays over the hub's high-water mark past the stall
//! timeout is closed with 1013 at the deadline, even while its socket is
//! backed up.
//!
//! Room names are 1 to 64 of `A-Z a-z 0-9 _ -` (else 400). Nicknames are
//! percent-decoded, kept to letters, digits, spaces and `-_.'`, trimmed and
//! cut to 24 characters; an empty one becomes `guest-NNNN`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::task::TaskTracker;
use weft::axum::WebSocketUpgrade;
use weft::proto::deflate::{DeflateConfig, PerMessageDeflate};
use weft::proto::{Accept, ServerExtension};
use weft::{CloseCode, Message};
use weft_hub::redis::{RedisBackend, RedisConfig};
use weft_hub::{Hub, HubConfig};

use crate::metrics::{CHAT, Tally};
use crate::stop::{Shutdown, Stopped};

const CHAT_HTML: &str = include_str!("../../../web/chat.html");
const CHAT_JS: &str = include_str!("../../../web/chat.js");

/// The longest nickname, in characters.
const MAX_NICK: usize = 24;
/// The longest room name, in bytes.
const MAX_ROOM: usize = 64;
/// The longest chat message, in bytes (a longer one is refused with a notice).
const MAX_TEXT: usize = 4096;
/// Frames taken from the hub per batch, and the socket backlog above which
/// no more are taken until it drains.
const BATCH: usize = 64;
const SOCKET_BACKLOG: usize = 64 * 1024;

/// How the chat serves its sockets.
#[derive(Clone, Debug)]
pub(crate) struct ChatOptions {
    /// Accept permessage-deflate (answering with server_no_context_takeover).
    pub(crate) compression: bool,
    /// Socket settings: the server's (write buffer, write timeout, keepalive);
    /// message and frame sizes are capped at [`HUB_MAX_MESSAGE`].
    pub(crate) config: weft::Config,
}

#[derive(Clone)]
struct ChatState {
    hub: Hub,
    /// Extensions chat sockets accept.
    extensions: Vec<std::sync::Arc<dyn ServerExtension>>,
    shutdown: Shutdown,
    tracker: TaskTracker,
    /// Origin policy and token, as for /echo.
    admission: std::sync::Arc<crate::serve::Admission>,
    /// Socket settings: the server's, with chat-sized message limits.
    config: weft::Config,
}

/// The hub for `weft serve`: in-process, or shared through Redis at `redis`.
pub(crate) fn build_hub(redis: Option<&str>) -> Result<Hub, String> {
    match redis {
        None => Ok(Hub::new()),
        Some(url) => {
            let backend = RedisBackend::new(url, RedisConfig::default()).map_err(|e| e.to_string())?;
            Ok(Hub::with_backend(HubConfig::default(), backend))
        }
    }
}

/// Hub messages are short: a chat member's or topic subscriber's message and
/// frame sizes are capped here even when the server allows larger echo
/// messages.
pub(crate) const HUB_MAX_MESSAGE: usize = 64 * 1024;

/// The server's socket settings with messages and frames capped at
/// [`HUB_MAX_MESSAGE`] (a larger one closes the socket with 1009).
pub(crate) fn hub_socket_config(mut config: weft::Config) -> weft::Config {
    config.protocol.max_message_size = config.protocol.max_message_size.min(HUB_MAX_MESSAGE);
    config.protocol.max_frame_size = config.protocol.max_frame_size.min(HUB_MAX_MESSAGE);
    config
}

/// The chat routes, to merge into the server's router. Connections close with
/// 1001 when `shutdown` fires, and are tracked by `tracker`; `options`
/// says how their sockets are served.
pub(crate) fn router(
    hub: Hub,
    shutdown: Shutdown,
    tracker: TaskTracker,
    admission: std::sync::Arc<crate::serve::Admission>,
    options: ChatOptions,
) -> Router {
    let config = hub_socket_config(options.config);
    let extensions: Vec<std::sync::Arc<dyn ServerExtension>> = if options.compression {
        vec![std::sync::Arc::new(PerMessageDeflate::new(
            DeflateConfig::default().server_no_context_takeover(true),
        ))]
    } else {
        Vec::new()
    };
    Router::new()
        .route("/chat", get(|| async { asset("text/html; charset=utf-8", CHAT_HTML) }))
        .route(
            "/chat.js",
            get(|| async { asset("text/javascript; charset=utf-8", CHAT_JS) }),
        )
        .route("/chat/{room}", get(join))
        .route("/hub/stats", get(stats))
        .with_state(ChatState {
            hub,
            extensions,
            shutdown,
            tracker,
            admission,
            config,
        })
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `room` is a valid room (or topic) name: 1 to 64 of
/// `A-Z a-z 0-9 _ -`.
pub(crate) fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Decode `%XX` and `+` of a query component (invalid escapes stay as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The nickname from the `nick` query parameter, sanitized and bounded.
fn nick_from_query(query: Option<&str>) -> String {
    let raw = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("nick="))
        .map(percent_decode)
        .unwrap_or_default();
    let mut nick = String::new();
    let mut space = false;
    for c in raw.chars() {
        if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '\'') {
            if space && !nick.is_empty() {
                nick.push(' ');
            }
            space = false;
            nick.push(c);
        } else if c == ' ' {
            space = true;
        }
        if nick.chars().count() >= MAX_NICK {
            break;
        }
    }
    if nick.is_empty() {
        format!("guest-{:04}", now_ms() % 10_000)
    } else {
        nick
    }
}

fn notice(kind: &str, nick: &str, members: Option<u64>) -> String {
    let members = members.map_or_else(|| "null".to_owned(), |n| n.to_string());
    format!(
        r#"{{"type":"{kind}","nick":{},"members":{members},"at":{}}}"#,
        json_str(nick),
        now_ms()
    )
}

fn error_notice(why: &str, text: &str) -> String {
    format!(
        r#"{{"type":"error","error":{},"text":{},"at":{}}}"#,
        json_str(why),
        json_str(text),
        now_ms()
    )
}

async fn stats(State(st): State<ChatState>) -> Response {
    let m = st.hub.metrics();
    let body = format!(
        concat!(
            r#"{{"backend":"{}","node":"{:016x}","connected":{},"reconnects":{},"published":{},"#,
            r#""publish_failed":{},"received_remote":{},"delivered":{},"evicted_stalled":{},"#,
            r#""evicted_overflow":{},"compressions":{},"delivered_compressed":{},"#,
            r#""subscribers":{},"topics":{}}}"#,
            "\n"
        ),
        st.hub.backend_name(),
        st.hub.node_id(),
        m.backend_connected,
        m.backend_reconnects,
        m.published,
        m.publish_failed,
        m.received_remote,
        m.delivered,
        m.evicted_stalled,
        m.evicted_overflow,
        m.compressions,
        m.delivered_compressed,
        m.subscribers,
        m.topics,
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn join(
    State(st): State<ChatState>,
    Path(room): Path<String>,
    uri: Uri,
    peer: Option<axum::Extension<crate::serve::PeerAddr>>,
    slot: Option<axum::Extension<crate::serve::Slot>>,
    ws: Result<WebSocketUpgrade, weft::axum::Rejection>,
) -> Response {
    let ws = match st.admission.check(peer, ws) {
        Ok(ws) => ws,
        Err(refusal) => return *refusal,
    };
    if !valid_room(&room) {
        return (StatusCode::BAD_REQUEST, "room names are 1 to 64 of A-Z a-z 0-9 _ -\n").into_response();
    }
    let nick = nick_from_query(uri.query());
    let token = st.tracker.token();
    let ws = ws.config(st.config.clone()).accept(Accept {
        extensions: st.extensions.clone(),
        ..Accept::default()
    });
    ws.on_upgrade(move |ws| async move {
        let _token = token;
        // Counted under --max-connections until the WebSocket ends.
        let _slot = slot;
        member(ws, st.hub, st.shutdown.stopped(), format!("chat:{room}"), nick).await;
    })
}

/// One member's connection: subscribe, announce, relay, announce the leave.
async fn member<S>(mut ws: weft::WebSocket<S>, hub: Hub, mut stop: Stopped, topic: String, nick: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut tally = Tally::<CHAT>::open();
    let room = topic.strip_prefix("chat:").unwrap_or(&topic);
    let welcome = format!(
        r#"{{"type":"welcome","nick":{},"room":{},"at":{}}}"#,
        json_str(&nick),
        json_str(room),
        now_ms()
    );
    // Subscribed before the welcome is sent, so that a member who has seen
    // its welcome gets every room message published from then on.
    // Compressed frames, shared with the other members, when the socket
    // negotiated server_no_context_takeover.
    let mut sub = hub.subscriber_for(ws.connection());
    let subscribed = sub.subscribe(&topic).await;
    if let Err(e) = feed_counted(&mut ws, &mut tally, welcome).await {
        tally.end(&ws, Some(&e), None);
        return;
    }
    if let Err(e) = subscribed {
        // This node's messages still arrive; other nodes' once the hub reconnects.
        let _ = feed_counted(&mut ws, &mut tally, error_notice(&e.to_string(), "")).await;
    }
    let members = hub.count(&topic).await.ok();
    if let Err(e) = hub.publish(&topic, notice("join", &nick, members)).await {
        let _ = feed_counted(&mut ws, &mut tally, error_notice(&e.to_string(), "")).await;
    }
    tracing::debug!(topic, nick, "chat member joined");
    let mut batch = Vec::with_capacity(BATCH);
    // Resolves at the stall deadline even while the socket is backed up and
    // no frames are taken from the hub.
    let evicted = sub.eviction();
    tokio::pin!(evicted);
    loop {
        tokio::select! {
            msg = crate::metrics::recv(&mut ws, &mut tally) => match msg {
                Some(Ok(Message::Text(t))) => {
                    let text = t.as_str();
                    if text.trim().is_empty() {
                        continue;
                    }
                    let reply = if text.len() > MAX_TEXT {
                        Some(error_notice(&format!("messages are at most {MAX_TEXT} bytes"), ""))
                    } else {
                        let json = format!(
                            r#"{{"type":"message","from":{},"text":{},"at":{}}}"#,
                            json_str(&nick),
                            json_str(text),
                            now_ms()
                        );
                        match hub.publish(&topic, json).await {
                            Ok(_) => None,
                            Err(e) => Some(error_notice(&format!("not delivered: {e}"), text)),
                        }
                    };
                    if let Some(r) = reply
                        && let Err(e) = feed_counted(&mut ws, &mut tally, r).await
                    {
                        tally.end(&ws, Some(&e), None);
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let notice = error_notice("the chat takes text messages only", "");
                    if let Err(e) = feed_counted(&mut ws, &mut tally, notice).await {
                        tally.end(&ws, Some(&e), None);
                        break;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(topic, nick, "chat connection failed: {e}");
                    tally.end(&ws, Some(&e), None);
                    break;
                }
                None => {
                    tally.end(&ws, None, None);
                    break;
                }
            },
            r = sub.recv_many(&mut batch, BATCH), if ws.buffered_amount() < SOCKET_BACKLOG => match r {
                Ok(_) => {
                    if let Err(e) = feed_frames(&mut ws, &mut tally, &mut batch).await {
                        tally.end(&ws, Some(&e), None);
                        break;
                    }
                }
                Err(why) => {
                    let code = why.close_code();
                    let closed = evict(&mut ws, why, &topic, &nick).await;
                    tally.end(&ws, closed.as_ref().err(), Some(code));
                    break;
                }
            },
            why = &mut evicted => {
                let code = why.close_code();
                let closed = evict(&mut ws, why, &topic, &nick).await;
                tally.end(&ws, closed.as_ref().err(), Some(code));
                break;
            }
            _ = &mut stop => {
                let closed = ws.close(CloseCode::GOING_AWAY, "server shutting down").await;
                tally.end(&ws, closed.as_ref().err(), Some(CloseCode::GOING_AWAY));
                break;
            }
        }
    }
    drop(sub);
    let members = hub.count(&topic).await.ok();
    if let Err(e) = hub.publish(&topic, notice("leave", &nick, members)).await {
        tracing::debug!(topic, nick, "leave notice not delivered: {e}");
    }
    tracing::debug!(topic, nick, "chat member left");
}

/// Close an evicted member's socket with 1013 (bounded: its output may be
/// backed up).
async fn evict<S>(
    ws: &mut weft::WebSocket<S>,
    why: weft_hub::Evicted,
    topic: &str,
    nick: &str,
) -> Result<(), weft::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tracing::info!(topic, nick, "chat member evicted: {why}");
    close_within(ws, why.close_code(), why.reason()).await
}

/// Run the closing handshake for at most 5 s (the socket's output may be
/// backed up); running out of time is a close timeout.
pub(crate) async fn close_within<S>(
    ws: &mut weft::WebSocket<S>,
    code: CloseCode,
    reason: &str,
) -> Result<(), weft::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), ws.close(code, reason))
        .await
        .unwrap_or(Err(weft::Error::Timeout("close")))
}

/// Queue a message, counting it in `tally` once queued.
async fn feed_counted<S, const E: usize>(
    ws: &mut weft::WebSocket<S>,
    tally: &mut Tally<E>,
    msg: impl Into<Message>,
) -> Result<(), weft::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let msg = msg.into();
    let len = msg.len();
    ws.feed(msg).await?;
    tally.sent(len);
    Ok(())
}

/// Queue the hub's frames in `batch` (all of them are taken out), counting
/// each in `tally` once queued, and add the tally to the shared counters.
pub(crate) async fn feed_frames<S, const E: usize>(
    ws: &mut weft::WebSocket<S>,
    tally: &mut Tally<E>,
    batch: &mut Vec<bytes::Bytes>,
) -> Result<(), weft::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut result = Ok(());
    for frame in batch.drain(..) {
        if result.is_ok() {
            let len = crate::metrics::payload_len(&frame);
            result = ws.feed_raw(frame).await;
            if result.is_ok() {
                tally.sent(len);
            }
        }
    }
    tally.flush();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_are_decoded_sanitized_and_bounded() {
        assert_eq!(nick_from_query(Some("nick=Ada")), "Ada");
        assert_eq!(nick_from_query(Some("x=1&nick=Ada+Lovelace")), "Ada Lovelace");
        assert_eq!(nick_from_query(Some("nick=%C3%A9lo%C3%AFse")), "éloïse");
        assert_eq!(nick_from_query(Some("nick=%3Cscript%3Ebad%22")), "scriptbad");
        assert_eq!(nick_from_query(Some("nick=%20%20a%20%20%20b%20")), "a b");
        assert_eq!(
            nick_from_query(Some(&format!("nick={}", "x".repeat(100)))).len(),
            MAX_NICK
        );
        assert!(nick_from_query(Some("nick=%%%")).starts_with("guest-"));
        assert!(nick_from_query(None).starts_with("guest-"));
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41%zz%"), "A%zz%");
    }

    #[test]
    fn rooms_and_json() {
        assert!(valid_room("lobby-1_a"));
        assert!(!valid_room(""));
        assert!(!valid_room("a b"));
        assert!(!valid_room(&"a".repeat(65)));
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\u0001é""#);
        assert!(notice("join", "Ada", Some(3)).starts_with(r#"{"type":"join","nick":"Ada","members":3,"at":"#));
        assert!(notice("leave", "Ada", None).contains(r#""members":null"#));
    }
}
