//! Raw pub/sub over WebSockets in `weft serve`, on top of `weft-hub`.
//!
//! - `GET /topic/{name}` (WebSocket): subscribe to topic `name`. Every message
//!   the socket sends, text or binary, is published to the topic verbatim;
//!   every message published to the topic reaches every subscriber, the
//!   sender included, with its kind kept (text stays text, binary binary).
//!   This is what uWebSockets' `ws.subscribe(topic)` and
//!   `app.publish(topic, message, isBinary)` do, with nothing added.
//!
//! Topic names are 1 to 64 of `A-Z a-z 0-9 _ -` (else 400); on the hub the
//! topic is `topic:{name}`, apart from the chat rooms. Messages are at most
//! 64 KiB (a larger one closes the socket with 1009). A subscriber that does
//! not keep up is evicted by the hub's bounded queues and closed with 1013. A
//! message the hub could not take (Redis unreachable) reached nobody: its
//! sender is closed with 1013, so that it knows.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::task::TaskTracker;
use weft::CloseCode;
use weft::axum::WebSocketUpgrade;
use weft_hub::Hub;

use crate::chat::{close_within, feed_frames, hub_socket_config, valid_room};
use crate::metrics::{TOPIC, Tally};
use crate::serve::{Admission, PeerAddr, Slot};
use crate::stop::Shutdown;

/// Frames taken from the hub per batch.
const BATCH: usize = 64;
/// The socket backlog, in bytes, above which no more frames are taken from
/// the hub until it drains (the rest wait in the subscriber's bounded queue).
const SOCKET_BACKLOG: usize = 64 * 1024;

#[derive(Clone)]
struct TopicState {
    hub: Hub,
    shutdown: Shutdown,
    tracker: TaskTracker,
    /// Origin policy and token, as for /echo and the chat.
    admission: std::sync::Arc<Admission>,
    /// Socket settings: the server's, with hub-sized message limits.
    config: weft::Config,
}

/// The topic route, to merge into the server's router. As for the chat:
/// connections close with 1001 when `shutdown` fires, are tracked by
/// `tracker`, are admitted by `admission`, and use `config` with messages and
/// frames capped at 64 KiB.
pub(crate) fn router(
    hub: Hub,
    shutdown: Shutdown,
    tracker: TaskTracker,
    admission: std::sync::Arc<Admission>,
    config: weft::Config,
) -> Router {
    Router::new()
        .route("/topic/{name}", get(subscribe))
        .with_state(TopicState {
            hub,
            shutdown,
            tracker,
            admission,
            config: hub_socket_config(config),
        })
}

async fn subscribe(
    State(st): State<TopicState>,
    Path(name): Path<String>,
    peer: Option<axum::Extension<PeerAddr>>,
    slot: Option<axum::Extension<Slot>>,
    ws: Result<WebSocketUpgrade, weft::axum::Rejection>,
) -> Response {
    let ws = match st.admission.check(peer, ws) {
        Ok(ws) => ws,
        Err(refusal) => return *refusal,
    };
    if !valid_room(&name) {
        return (StatusCode::BAD_REQUEST, "topic names are 1 to 64 of A-Z a-z 0-9 _ -\n").into_response();
    }
    let token = st.tracker.token();
    let ws = ws.config(st.config.clone());
    ws.on_upgrade(move |ws| async move {
        let _token = token;
        // Counted under --max-connections until the WebSocket ends.
        let _slot = slot;
        relay(ws, st, format!("topic:{name}")).await;
    })
}

/// One subscriber's connection: publish what it sends, send it what is
/// published, until either side ends or the hub evicts it.
async fn relay<S>(mut ws: weft::WebSocket<S>, st: TopicState, topic: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let TopicState {
        hub,
        shutdown,
        admission,
        ..
    } = st;
    let log = &admission.log;
    let mut tally = Tally::<TOPIC>::open();
    let mut sub = hub.subscriber();
    if let Err(e) = sub.subscribe(&topic).await {
        // This node's messages still arrive; other nodes' once the hub reconnects.
        log.warn(format_args!("{topic}: subscription not confirmed by the hub: {e}"));
    }
    let mut stopped = shutdown.stopped();
    let mut batch = Vec::with_capacity(BATCH);
    let mut published = 0usize;
    loop {
        tokio::select! {
            msg = crate::metrics::recv(&mut ws, &mut tally) => match msg {
                Some(Ok(msg)) => {
                    if let Err(e) = hub.publish(&topic, msg).await {
                        log.warn(format_args!("{topic}: message not delivered: {e}"));
                        let code = CloseCode::TRY_AGAIN_LATER;
                        let closed = close_within(&mut ws, code, "message not delivered: hub unavailable").await;
                        tally.end(&ws, closed.as_ref().err(), Some(code));
                        break;
                    }
                    // A publish wakes every subscriber, and messages already
                    // read are published without touching the socket (so
                    // without using up the task's scheduling budget): after
                    // BATCH of them, let the subscribers write (each takes up
                    // to BATCH frames at a time), or a fast publisher keeps
                    // the thread and every subscriber is evicted as stalled.
                    // The publisher's reads slow down instead, and TCP pushes
                    // back on it.
                    published += 1;
                    if published.is_multiple_of(BATCH) {
                        tokio::task::yield_now().await;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(topic, "topic connection failed: {e}");
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
                Err(evicted) => {
                    log.info(format_args!("{topic}: subscriber evicted: {evicted}"));
                    let code = evicted.close_code();
                    let closed = close_within(&mut ws, code, evicted.reason()).await;
                    tally.end(&ws, closed.as_ref().err(), Some(code));
                    break;
                }
            },
            _ = &mut stopped => {
                let closed = ws.close(CloseCode::GOING_AWAY, "server shutting down").await;
                tally.end(&ws, closed.as_ref().err(), Some(CloseCode::GOING_AWAY));
                break;
            }
        }
    }
}
