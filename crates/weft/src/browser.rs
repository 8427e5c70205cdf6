//! A client that behaves like the browser's `WebSocket`.
//!
//! | JavaScript | weft |
//! |---|---|
//! | `const ws = new WebSocket(url, protocols)` | `let mut ws = BrowserWebSocket::new(url, &protocols)` |
//! | `ws.onopen = …` | `Some(WsEvent::Open) = ws.next_event().await` |
//! | `ws.onmessage = (e) => e.data` | `WsEvent::Message(msg)` |
//! | `ws.onerror = …` | `WsEvent::Error(reason)` (always followed by `Close`) |
//! | `ws.onclose = (e) => [e.code, e.reason, e.wasClean]` | `WsEvent::Close { code, reason, was_clean }` |
//! | `ws.readyState` (`CONNECTING`…`CLOSED`) | `ws.ready_state()` ([`ReadyState`]) |
//! | `ws.bufferedAmount` | `ws.buffered_amount()` |
//! | `ws.protocol`, `ws.extensions`, `ws.url` | `ws.protocol()`, `ws.extensions()`, `ws.url()` |
//! | `ws.send(data)` | `ws.send(data)` (an error only while `CONNECTING`, as in JS) |
//! | `ws.close(code, reason)` | `ws.close(Some(code), Some(reason))` |
//!
//! ```no_run
//! # async fn run() {
//! use weft::browser::{BrowserWebSocket, WsEvent};
//!
//! let mut ws = BrowserWebSocket::new("ws://127.0.0.1:8080/echo", &[]);
//! while let Some(event) = ws.next_event().await {
//!     match event {
//!         WsEvent::Open => ws.send("hello").unwrap(),
//!         WsEvent::Message(m) => {
//!             println!("Received: {:?}", m.as_text());
//!             ws.close(Some(1000), Some("done")).unwrap();
//!         }
//!         WsEvent::Error(e) => eprintln!("error: {e}"),
//!         WsEvent::Close { code, reason, was_clean } => println!("closed {code} {reason} {was_clean}"),
//!     }
//! }
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use weft_proto::{CloseCode, Event, Message};

use crate::client::Client;

/// The `readyState` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReadyState {
    /// 0: the connection is not yet open.
    Connecting = 0,
    /// 1: open and ready to communicate.
    Open = 1,
    /// 2: the closing handshake is under way.
    Closing = 2,
    /// 3: closed, or could not be opened.
    Closed = 3,
}

impl ReadyState {
    fn from_u8(v: u8) -> ReadyState {
        match v {
            0 => ReadyState::Connecting,
            1 => ReadyState::Open,
            2 => ReadyState::Closing,
            _ => ReadyState::Closed,
        }
    }
}

/// The events a browser fires on a `WebSocket`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// `open`: the handshake succeeded.
    Open,
    /// `message`: a whole message arrived.
    Message(Message),
    /// `error`: the connection failed; a `Close` event follows.
    Error(String),
    /// `close`: the connection is closed. `code` is 1005 when the peer gave
    /// none and 1006 when it closed abnormally.
    Close {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
        /// Whether the closing handshake completed.
        was_clean: bool,
    },
}

/// Misuse of the API, as the browser would throw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomError {
    /// `InvalidStateError`: `send` while `CONNECTING`.
    InvalidState,
    /// `InvalidAccessError`: a close code other than 1000 or 3000–4999.
    InvalidAccess,
    /// `SyntaxError`: a close reason over 123 bytes.
    Syntax,
}

impl fmt::Display for DomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DomError::InvalidState => "InvalidStateError: still in CONNECTING state",
            DomError::InvalidAccess => "InvalidAccessError: close code must be 1000 or in 3000-4999",
            DomError::Syntax => "SyntaxError: close reason longer than 123 bytes",
        })
    }
}

impl std::error::Error for DomError {}

enum Command {
    Send(Message),
    Close(Option<u16>, String),
}

#[derive(Default)]
struct Negotiated {
    protocol: String,
    extensions: String,
}

/// A WebSocket client with the browser's API. Connecting starts at once in a
/// background task (a tokio runtime must be running).
#[derive(Debug)]
pub struct BrowserWebSocket {
    url: String,
    state: Arc<AtomicU8>,
    buffered: Arc<AtomicUsize>,
    negotiated: Arc<Mutex<Negotiated>>,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<WsEvent>,
}

impl fmt::Debug for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Negotiated")
            .field("protocol", &self.protocol)
            .field("extensions", &self.extensions)
            .finish()
    }
}

impl BrowserWebSocket {
    /// `new WebSocket(url, protocols)`.
    pub fn new(url: &str, protocols: &[&str]) -> Self {
        let mut client = Client::new(url);
        for p in protocols {
            client = client.protocol(*p);
        }
        Self::with_client(url, client)
    }

    /// Like [`new`](Self::new) with a configured [`Client`] (headers, TLS,
    /// timeouts).
    pub fn with_client(url: &str, client: Client) -> Self {
        let state = Arc::new(AtomicU8::new(ReadyState::Connecting as u8));
        let buffered = Arc::new(AtomicUsize::new(0));
        let negotiated = Arc::new(Mutex::new(Negotiated::default()));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(
            client,
            state.clone(),
            buffered.clone(),
            negotiated.clone(),
            cmd_rx,
            ev_tx,
        ));
        BrowserWebSocket {
            url: url.to_owned(),
            state,
            buffered,
            negotiated,
            commands: cmd_tx,
            events: ev_rx,
        }
    }

    /// The next event; `None` after `Close` was delivered.
    pub async fn next_event(&mut self) -> Option<WsEvent> {
        self.events.recv().await
    }

    /// `readyState`.
    pub fn ready_state(&self) -> ReadyState {
        ReadyState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// `bufferedAmount`: bytes of application data queued and not yet sent.
    pub fn buffered_amount(&self) -> usize {
        self.buffered.load(Ordering::Acquire)
    }

    /// `url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `protocol`: the chosen subprotocol, empty when none.
    pub fn protocol(&self) -> String {
        self.negotiated.lock().map(|n| n.protocol.clone()).unwrap_or_default()
    }

    /// `extensions`: the agreed extensions, empty when none.
    pub fn extensions(&self) -> String {
        self.negotiated.lock().map(|n| n.extensions.clone()).unwrap_or_default()
    }

    /// `send(data)`: text or binary. While `CONNECTING` this is
    /// `InvalidStateError`; once closing, data is discarded but still counted
    /// in `bufferedAmount`, as the browser does.
    pub fn send(&self, data: impl Into<Message>) -> Result<(), DomError> {
        let msg = data.into();
        match self.ready_state() {
            ReadyState::Connecting => Err(DomError::InvalidState),
            ReadyState::Open => {
                self.buffered.fetch_add(msg.len(), Ordering::AcqRel);
                let _ = self.commands.send(Command::Send(msg));
                Ok(())
            }
            ReadyState::Closing | ReadyState::Closed => {
                self.buffered.fetch_add(msg.len(), Ordering::AcqRel);
                Ok(())
            }
        }
    }

    /// `close(code, reason)`: code 1000 or 3000–4999, reason ≤ 123 bytes.
    pub fn close(&self, code: Option<u16>, reason: Option<&str>) -> Result<(), DomError> {
        if let Some(c) = code
            && c != 1000
            && !(3000..=4999).contains(&c)
        {
            return Err(DomError::InvalidAccess);
        }
        let reason = reason.unwrap_or("");
        if reason.len() > 123 {
            return Err(DomError::Syntax);
        }
        match self.ready_state() {
            ReadyState::Closing | ReadyState::Closed => Ok(()),
            _ => {
                self.state.store(ReadyState::Closing as u8, Ordering::Release);
                let _ = self.commands.send(Command::Close(code, reason.to_owned()));
                Ok(())
            }
        }
    }
}

async fn run(
    client: Client,
    state: Arc<AtomicU8>,
    buffered: Arc<AtomicUsize>,
    negotiated: Arc<Mutex<Negotiated>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<WsEvent>,
) {
    let set = |s: ReadyState| state.store(s as u8, Ordering::Release);
    let closed = |code: u16, reason: String, was_clean: bool| WsEvent::Close {
        code,
        reason,
        was_clean,
    };
    let connecting = client.connect_with_response();
    tokio::pin!(connecting);
    // A close() during CONNECTING fails the connection (as the browser does).
    let ws = loop {
        tokio::select! {
            r = &mut connecting => break r,
            cmd = commands.recv() => if let Some(Command::Close(..)) | None = cmd {
                set(ReadyState::Closed);
                let _ = events.send(WsEvent::Error("WebSocket is closed before the connection is established".into()));
                let _ = events.send(closed(1006, String::new(), false));
                return;
            },
        }
    };
    let (mut ws, info) = match ws {
        Ok(x) => x,
        Err(e) => {
            set(ReadyState::Closed);
            let _ = events.send(WsEvent::Error(e.to_string()));
            let _ = events.send(closed(1006, String::new(), false));
            return;
        }
    };
    if let Ok(mut n) = negotiated.lock() {
        n.protocol = info.protocol.unwrap_or_default();
        n.extensions = info.extensions.unwrap_or_default();
    }
    if state.load(Ordering::Acquire) == ReadyState::Connecting as u8 {
        set(ReadyState::Open);
    }
    let _ = events.send(WsEvent::Open);
    let mut commands_open = true;
    loop {
        tokio::select! {
            ev = ws.recv_event() => match ev {
                Some(Ok(Event::Message(m))) => { let _ = events.send(WsEvent::Message(m)); }
                Some(Ok(Event::Close(_))) => set(ReadyState::Closing),
                Some(Ok(_)) => {}
                None => {
                    set(ReadyState::Closed);
                    let (code, reason) = ws.close_frame().map_or((CloseCode::NO_STATUS.0, String::new()), |f| (f.code.0, f.reason.clone()));
                    let _ = events.send(closed(code, reason, true));
                    return;
                }
                Some(Err(e)) => {
                    set(ReadyState::Closed);
                    let _ = events.send(WsEvent::Error(e.to_string()));
                    let (code, reason) = match e.close_code() {
                        Some(c) if c != CloseCode::ABNORMAL => (c.0, String::new()),
                        _ => (CloseCode::ABNORMAL.0, String::new()),
                    };
                    let _ = events.send(closed(code, reason, false));
                    return;
                }
            },
            cmd = commands.recv(), if commands_open => match cmd {
                Some(Command::Send(m)) => {
                    let len = m.len();
                    let r = ws.send(m).await;
                    buffered.fetch_sub(len, Ordering::AcqRel);
                    if r.is_err() { continue; }
                }
                Some(Command::Close(code, reason)) => {
                    let frame = code.map(|c| weft_proto::CloseFrame::new(c, reason));
                    set(ReadyState::Closing);
                    let _ = send_close(&mut ws, frame).await;
                }
                None => {
                    // The handle was dropped: close normally.
                    commands_open = false;
                    let _ = send_close(&mut ws, Some(weft_proto::CloseFrame::new(CloseCode::NORMAL, ""))).await;
                }
            },
        }
    }
}

async fn send_close<S>(ws: &mut crate::WebSocket<S>, frame: Option<weft_proto::CloseFrame>) -> Result<(), crate::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.start_close(frame).await
}
