//! `weft serve`: the demo page, `/echo`, `/healthz`, `/metrics`, the chat
//! and the `/topic/{name}` pub/sub endpoint, over HTTP or HTTPS, with bounded
//! resources and an admission policy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Buf, Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tower_service::Service;
use weft::axum::{Rejection, WebSocketUpgrade};
use weft::policy::{OriginPolicy, TokenAuth};
use weft::proto::deflate::PerMessageDeflate;
use weft::proto::{
    Accept, Connection, HandshakeError, HeadScanner, Request as HttpHead, Role, ServerExtension, UpgradeRequest,
};
use weft::{Config, Keepalive, WebSocket};

use crate::echo::{EchoShared, Place};
use crate::metrics::METRICS;
use crate::ratelog::RateLimitedLog;
use crate::stop::{Shutdown, Stopped};

const INDEX_HTML: &str = include_str!("../../../web/index.html");
const APP_CSS: &str = include_str!("../../../web/app.css");
const APP_JS: &str = include_str!("../../../web/app.js");

/// The answer past `--max-connections`, before any upgrade.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 31\r\nRetry-After: 1\r\nConnection: close\r\n\r\nserver at its connection limit\n";

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address and port to listen on. Use 0.0.0.0:8080 to accept connections
    /// from other machines.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    listen: SocketAddr,

    /// PEM certificate chain: serve HTTPS and wss:// (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Do not accept permessage-deflate compression on /echo and the chat (it
    /// is accepted by default, as browsers ask for it; chat sockets answer
    /// with server_no_context_takeover, so that a room message is compressed
    /// once for every member).
    #[arg(long)]
    no_compression: bool,

    /// Origins whose pages may open WebSockets, besides the server's own
    /// origin: exact origins (https://app.example.com), subdomain patterns
    /// (*.example.com or https://*.example.com) or * for any. Repeatable.
    /// Without it only same-origin pages (and clients that send no Origin,
    /// such as command-line tools) may connect; others get 403.
    #[arg(long = "allow-origin", value_name = "PATTERN")]
    allow_origin: Vec<String>,

    /// Require this token on WebSocket upgrades, as `Authorization: Bearer
    /// TOKEN` or a `token=TOKEN` query parameter; others get 401. The demo
    /// page passes on a `?token=` from its own URL.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,

    /// Most simultaneous connections, HTTP and WebSocket alike (a WebSocket
    /// keeps its place until it ends); further ones get 503 before any upgrade.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_connections: usize,

    /// Largest message accepted, in bytes (larger ones close with 1009).
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    max_message_size: usize,

    /// Largest frame accepted, in bytes (larger ones close with 1009).
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    max_frame_size: usize,

    /// Outgoing bytes queued per connection before the server stops reading
    /// from it; a peer that does not read for --write-timeout is disconnected.
    #[arg(long, default_value_t = 128 * 1024, value_name = "BYTES")]
    write_buffer: usize,

    /// Seconds a write to a connection may make no progress (the peer does not
    /// read) before the connection is dropped. 0 turns the limit off.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    write_timeout: u64,

    /// Seconds a connection may stay silent before it is pinged; it is
    /// dropped if nothing arrives within as long again. 0 turns keepalive off.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    idle_timeout: u64,

    /// Seconds a client has to send its request head (TLS included).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    handshake_timeout: u64,

    /// Seconds open connections get to close after Ctrl-C or SIGTERM.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    shutdown_timeout: u64,

    /// Share the chat rooms and topics with other `weft serve` processes through the
    /// Redis server at URL (e.g. redis://127.0.0.1:6379); in-process otherwise.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,

    /// Do not serve /metrics (Prometheus text format) at all. By default it
    /// is served on the main listener, to anyone who can reach the server
    /// (no origin or token check applies to it).
    #[arg(long, conflicts_with = "metrics_listen")]
    no_metrics: bool,

    /// Serve /metrics on a listener of its own at ADDR:PORT, plain HTTP
    /// (127.0.0.1:9090 keeps it to this machine), instead of on the main
    /// listener, which then answers /metrics with 404.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,

    /// Log verbosity: error, warn, info, debug or trace.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: tracing::Level,

    /// Worker threads (default: one per core). 1 runs the whole server on
    /// the main thread (a current-thread runtime).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,
}

/// What every request handler shares.
#[derive(Clone)]
struct AppState {
    /// Fired once the server shuts down: open connections close with 1001.
    shutdown: Shutdown,
    tracker: TaskTracker,
    /// Extensions offered on /echo.
    extensions: Vec<Arc<dyn ServerExtension>>,
    admission: Arc<Admission>,
    config: Config,
    log: Arc<RateLimitedLog>,
    /// What every echo socket shares.
    echoes: Arc<EchoShared>,
}

/// Who may open a WebSocket: the origin policy and the token, with the
/// rate-limited log that records every refusal. Shared by every WebSocket
/// route (echo and chat).
pub(crate) struct Admission {
    origins: OriginPolicy,
    token: Option<TokenAuth>,
    pub(crate) log: Arc<RateLimitedLog>,
}

impl Admission {
    /// Check an upgrade; on refusal, log it and return the response to send.
    pub(crate) fn check(
        &self,
        peer: Option<axum::Extension<PeerAddr>>,
        ws: Result<WebSocketUpgrade, Rejection>,
    ) -> Result<WebSocketUpgrade, Box<Response>> {
        let peer = peer.map_or_else(|| "unknown peer".to_owned(), |p| p.0.0.to_string());
        let refused = |e: weft::proto::HandshakeError| {
            self.log
                .warn(format_args!("{peer}: handshake refused with {}: {e}", e.status()));
            Box::new(Rejection(e).into_response())
        };
        let ws = ws.map_err(|r| refused(r.0))?;
        self.admit(ws.request()).map_err(refused)?;
        Ok(ws)
    }

    /// The origin policy and the token, without logging.
    fn admit(&self, req: &UpgradeRequest) -> Result<(), HandshakeError> {
        self.origins.check_request(req).and_then(|()| match &self.token {
            Some(auth) => auth.check(req),
            None => Ok(()),
        })
    }
}

/// The peer's address, put on each request for the logs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

/// The connection's place under `--max-connections`, put on each request so
/// that an upgraded WebSocket keeps it until it ends (the HTTP connection's
/// task ends at the upgrade).
#[derive(Clone)]
pub(crate) struct Slot {
    _permit: Arc<OwnedSemaphorePermit>,
}

pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    crate::metrics::start_clock();

    let origins = match OriginPolicy::parse(&args.allow_origin.iter().map(String::as_str).collect::<Vec<_>>()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("weft serve: --allow-origin: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match weft::tls::server_config(cert, key) {
            Ok(cfg) => Some(tokio_rustls::TlsAcceptor::from(cfg)),
            Err(e) => {
                eprintln!("weft serve: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let listener = match listen(args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("weft serve: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(args.listen);
    let metrics_listener = match args.metrics_listen {
        None => None,
        Some(addr) => match listen(addr) {
            Ok(l) => {
                let at = l.local_addr().unwrap_or(addr);
                if !at.ip().is_loopback() {
                    tracing::warn!("/metrics is served on {at}, which is not a loopback address");
                }
                // Printed for scripts that ask for port 0.
                eprintln!("weft serve: metrics on http://{at}/metrics");
                Some(l)
            }
            Err(e) => {
                eprintln!("weft serve: cannot listen on {addr} for /metrics: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("serving the demo page at {scheme}://{local}/ and the echo endpoint at /echo");
    // Printed for scripts that start the server on port 0.
    eprintln!("weft serve: listening on {scheme}://{local}/");

    let handshake_timeout = Duration::from_secs(args.handshake_timeout.max(1));
    let idle = Duration::from_secs(args.idle_timeout);
    let config = Config::default()
        .protocol(
            weft::proto::Config::default()
                .max_message_size(args.max_message_size)
                .max_frame_size(args.max_frame_size),
        )
        .write_buffer_size(args.write_buffer)
        .write_timeout((args.write_timeout > 0).then(|| Duration::from_secs(args.write_timeout)))
        .handshake_timeout(handshake_timeout)
        .keepalive((!idle.is_zero()).then_some(Keepalive {
            interval: idle,
            timeout: idle,
        }));
    let extensions: Vec<Arc<dyn ServerExtension>> = if args.no_compression {
        Vec::new()
    } else {
        vec![Arc::new(PerMessageDeflate::default())]
    };
    let shutdown = Shutdown::new();
    let tracker = TaskTracker::new();
    let log = Arc::new(RateLimitedLog::new(20));
    let hub = match crate::chat::build_hub(args.redis.as_deref()) {
        Ok(hub) => hub,
        Err(e) => {
            eprintln!("weft serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let slots = Arc::new(Semaphore::new(args.max_connections.max(1)));
    let echoes = Arc::new(EchoShared::new(shutdown.clone(), log.clone(), slots.clone()));
    let admission = Arc::new(Admission {
        origins,
        token: args.token.as_deref().map(TokenAuth::new),
        log: log.clone(),
    });
    let state = AppState {
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        extensions,
        admission: admission.clone(),
        config: config.clone(),
        log: log.clone(),
        echoes: echoes.clone(),
    };
    let echo = Arc::new(state.clone());
    let chat = crate::chat::ChatOptions {
        compression: !args.no_compression,
        config: config.clone(),
    };
    let scrape = crate::metrics::Scrape {
        hub: hub.clone(),
        slots: slots.clone(),
        max_connections: args.max_connections.max(1),
    };
    let mut app = router(state)
        .merge(crate::chat::router(
            hub.clone(),
            shutdown.clone(),
            tracker.clone(),
            admission.clone(),
            chat,
        ))
        .merge(crate::topic::router(
            hub,
            shutdown.clone(),
            tracker.clone(),
            admission,
            config.clone(),
        ));
    match metrics_listener {
        Some(l) => {
            let serve = axum::serve(l, crate::metrics::router(scrape)).with_graceful_shutdown(shutdown.stopped());
            tracker.spawn(async move {
                if let Err(e) = serve.await {
                    tracing::warn!("the /metrics listener failed: {e}");
                }
            });
        }
        None if !args.no_metrics => app = app.merge(crate::metrics::router(scrape)),
        None => {}
    }

    loop {
        tokio::select! {
            _ = shutdown_signal() => break,
            accepted = listener.accept() => {
                let (mut tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        log.warn(format_args!("accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                METRICS.tcp_accepted();
                let _ = tcp.set_nodelay(true);
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    METRICS.at_limit();
                    log.warn(format_args!("{peer}: refused with 503: {} connections open", args.max_connections));
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(1), async {
                            let _ = tcp.write_all(BUSY_RESPONSE).await;
                            let _ = tcp.shutdown().await;
                        })
                        .await;
                    });
                    continue;
                };
                let conn = Conn {
                    permit,
                    peer,
                    app: app.clone(),
                    echo: echo.clone(),
                    head_timeout: handshake_timeout,
                };
                // Two task types, so that a plain connection's task is not
                // sized for a TLS stream.
                match &tls {
                    Some(acceptor) => {
                        let accept = acceptor.accept(tcp);
                        let log = log.clone();
                        tracker.spawn(async move {
                            match tokio::time::timeout(handshake_timeout, accept).await {
                                Ok(Ok(stream)) => serve_conn(stream, conn).await,
                                Ok(Err(e)) => {
                                    METRICS.tls_failed();
                                    log.info(format_args!("{peer}: TLS handshake failed: {e}"));
                                }
                                Err(_) => {
                                    METRICS.handshake_timeout();
                                    log.info(format_args!("{peer}: TLS handshake timed out"));
                                }
                            }
                        });
                    }
                    None => {
                        tracker.spawn(serve_conn(tcp, conn));
                    }
                }
            }
        }
    }
    tracing::info!("shutting down: closing open connections with 1001");
    drop(listener);
    shutdown.fire();
    tracker.close();
    let grace = Duration::from_secs(args.shutdown_timeout);
    let closed = async {
        tracker.wait().await;
        echoes.wait_idle().await;
    };
    if tokio::time::timeout(grace, closed).await.is_err() {
        tracing::warn!("some connections did not close within {grace:?}");
    }
    ExitCode::SUCCESS
}

/// Connections the kernel completes and queues for `accept` (Linux caps it at
/// `net.core.somaxconn`, 4096 by default). The usual 128 overflows when a few
/// hundred clients connect at once, and each connection over it waits for a
/// SYN retransmission: a second, then three, then seven.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and tokio do on Unix: a restarted server can bind at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What a connection task needs besides its transport.
struct Conn {
    /// A place under --max-connections, held as long as the connection.
    permit: OwnedSemaphorePermit,
    peer: SocketAddr,
    app: Router,
    echo: Arc<AppState>,
    head_timeout: Duration,
}

/// How the first request head ended.
enum Head {
    /// A complete head of this many bytes.
    Complete(usize),
    /// Not a head weft reads itself (too large, cut short): hyper decides.
    Other,
    /// The peer closed, or the read failed, before sending anything.
    Gone,
}

async fn read_head<S: AsyncRead + Unpin>(io: &mut S, buf: &mut BytesMut, max_head_size: usize) -> Head {
    let mut scanner = HeadScanner::new(max_head_size);
    loop {
        match scanner.scan(buf) {
            Ok(Some(n)) => return Head::Complete(n),
            Ok(None) => {}
            Err(_) => return Head::Other,
        }
        if buf.capacity() == buf.len() {
            buf.reserve(1024);
        }
        match io.read_buf(buf).await {
            Ok(0) | Err(_) if buf.is_empty() => return Head::Gone,
            Ok(0) | Err(_) => return Head::Other,
            Ok(_) => {}
        }
        // Only a GET can be an upgrade. Anything else (another method, a TLS
        // ClientHello, an HTTP/2 preface, garbage) goes to hyper at once, to
        // be answered without waiting for a head that may never end.
        let n = buf.len().min(4);
        if buf[..n] != b"GET "[..n] {
            return Head::Other;
        }
    }
}

/// One connection. A WebSocket upgrade to `/echo` (the hot path) is read
/// and answered here, and the socket runs straight on the transport; every
/// other request (pages, chat, refusals of malformed upgrades) goes to hyper
/// and axum along with the bytes already read, so they are answered as
/// before.
async fn serve_conn<S>(mut io: S, conn: Conn)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        permit,
        peer,
        app,
        echo,
        head_timeout,
    } = conn;
    let limits = echo.config.handshake;
    let mut buf = BytesMut::with_capacity(1024);
    let head = match tokio::time::timeout(head_timeout, read_head(&mut io, &mut buf, limits.max_head_size)).await {
        Ok(head) => head,
        // As hyper's header_read_timeout: close without an answer.
        Err(_) => {
            METRICS.handshake_timeout();
            return;
        }
    };
    let upgrade = match head {
        Head::Gone => return,
        Head::Other => None,
        Head::Complete(n) => HttpHead::parse(&buf[..n], &limits)
            .ok()
            .filter(|req| req.path() == "/echo")
            .and_then(|req| UpgradeRequest::new(req).ok())
            .map(|up| (n, up)),
    };
    let Some((n, up)) = upgrade else {
        let stop = echo.shutdown.stopped();
        drop(echo);
        let io = Prefixed {
            prefix: buf.freeze(),
            io,
        };
        let slot = Slot {
            _permit: Arc::new(permit),
        };
        Box::pin(serve_http(io, peer, slot, app, stop, head_timeout)).await;
        return;
    };
    drop(app);
    if let Err(e) = echo.admission.admit(&up) {
        METRICS.refused(e.status());
        echo.log
            .warn(format_args!("{peer}: handshake refused with {}: {e}", e.status()));
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = io.write_all(&e.response()).await;
            let _ = io.shutdown().await;
        })
        .await;
        return;
    }
    let accepted = up.accept(&Accept {
        extensions: echo.extensions.clone(),
        ..Accept::default()
    });
    drop(up);
    if io.write_all(&accepted.response).await.is_err() || io.flush().await.is_err() {
        return;
    }
    let conn = Connection::new(Role::Server, echo.config.protocol.clone()).with_extension(accepted.extension);
    let ws = WebSocket::from_parts(
        io,
        conn,
        &echo.config,
        &buf[n..],
        accepted.protocol,
        accepted.extensions_header,
    );
    drop(buf);
    // The socket gets a task of its own, sized for it alone rather than for
    // everything this handshake needed: that is what an idle connection costs.
    // (Not a tracked task: the shutdown waits for echo tasks through
    // `EchoShared`, which saves the tracker's 8 bytes in every one.)
    let task = crate::echo::echo(ws, peer, echo.echoes.clone(), Place::take(permit));
    tokio::spawn(task);
}

/// A transport whose first bytes were already read: they are read again
/// first.
struct Prefixed<S> {
    prefix: Bytes,
    io: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

async fn serve_http<S>(io: S, peer: SocketAddr, slot: Slot, app: Router, stop: Stopped, head_timeout: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Whether a request arrived: hyper's header timeout on a connection that
    // had none is a handshake timeout; on a kept-alive one, only idleness.
    let served = Arc::new(AtomicBool::new(false));
    let seen = served.clone();
    // Tag each request with the peer's address for the logs, and with the
    // connection's slot for an upgrade to keep; count refusals.
    let service = TowerToHyperService::new(tower_service_fn(move |mut req: Request| {
        seen.store(true, Ordering::Relaxed);
        req.extensions_mut().insert(PeerAddr(peer));
        req.extensions_mut().insert(slot.clone());
        let response = app.clone().call(req);
        async move {
            let response = response.await;
            if let Ok(r) = &response {
                METRICS.refused(r.status().as_u16());
            }
            response
        }
    }));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(16 * 1024)
        .max_headers(64)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r {
            if let Some(status) = hyper_refusal(&e) {
                METRICS.refused(status);
            } else if e.is_timeout() && !served.load(Ordering::Relaxed) {
                METRICS.handshake_timeout();
            }
            tracing::debug!(%peer, "HTTP connection ended: {e}");
        },
        _ = stop => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The status hyper answered a request it could not parse with, if it
/// answered (an HTTP/2 preface gets no answer).
fn hyper_refusal(e: &hyper::Error) -> Option<u16> {
    if !e.is_parse() || e.is_parse_version_h2() {
        None
    } else if e.is_parse_too_large() {
        Some(431)
    } else {
        Some(400)
    }
}

/// A `tower_service::Service` from a closure over axum requests.
fn tower_service_fn<F, Fut>(f: F) -> ServiceFn<F>
where
    F: FnMut(Request) -> Fut,
{
    ServiceFn(f)
}

#[derive(Clone)]
struct ServiceFn<F>(F);

impl<F, Fut, B> Service<hyper::Request<B>> for ServiceFn<F>
where
    F: FnMut(Request) -> Fut,
    Fut: std::future::Future<Output = Result<Response, std::convert::Infallible>>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<B>) -> Fut {
        (self.0)(req.map(axum::body::Body::new))
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/app.css", get(|| async { page("text/css; charset=utf-8", APP_CSS) }))
        .route(
            "/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/echo", get(echo))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(state)
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Echo through axum (an upgrade that reached hyper: one that followed
/// other requests on a kept-alive connection).
async fn echo(
    State(state): State<AppState>,
    peer: Option<axum::Extension<PeerAddr>>,
    slot: Option<axum::Extension<Slot>>,
    ws: Result<WebSocketUpgrade, Rejection>,
) -> Response {
    let addr = peer.as_ref().map(|p| p.0.0);
    let ws = match state.admission.check(peer, ws) {
        Ok(ws) => ws,
        Err(refusal) => return *refusal,
    };
    let token = state.tracker.token();
    let echoes = state.echoes.clone();
    let ws = ws.config(state.config.clone()).accept(Accept {
        extensions: state.extensions.clone(),
        ..Accept::default()
    });
    ws.on_upgrade(move |ws| async move {
        let _token = token;
        let peer = addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        // Counted under --max-connections until the WebSocket ends.
        crate::echo::echo(ws, peer, echoes, slot.map(|s| s.0)).await;
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
