//! `weft serve`: the demo page, `/echo`, `/healthz`, over HTTP or HTTPS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use weft::CloseCode;
use weft::axum::WebSocketUpgrade;
use weft::proto::deflate::PerMessageDeflate;
use weft::proto::{Accept, ServerExtension};

const INDEX_HTML: &str = include_str!("../../../web/index.html");
const APP_CSS: &str = include_str!("../../../web/app.css");
const APP_JS: &str = include_str!("../../../web/app.js");

/// How long open connections get to close after Ctrl-C or SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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

    /// Do not offer permessage-deflate compression on /echo (it is offered by
    /// default, as browsers ask for it).
    #[arg(long)]
    no_compression: bool,

    /// Share the chat rooms with other `weft serve` processes through the
    /// Redis server at URL (e.g. redis://127.0.0.1:6379); in-process otherwise.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,

    /// Log verbosity: error, warn, info, debug or trace.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: tracing::Level,
}

#[derive(Clone)]
struct AppState {
    shutdown: watch::Receiver<bool>,
    tracker: TaskTracker,
    /// Extensions offered on /echo.
    extensions: Vec<Arc<dyn ServerExtension>>,
}

pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();

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
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("weft serve: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(args.listen);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("serving the demo page at {scheme}://{local}/ and the echo endpoint at /echo");
    // Printed for scripts that start the server on port 0.
    eprintln!("weft serve: listening on {scheme}://{local}/");

    let (stop_tx, stop_rx) = watch::channel(false);
    let tracker = TaskTracker::new();
    let extensions: Vec<Arc<dyn ServerExtension>> = if args.no_compression {
        Vec::new()
    } else {
        vec![Arc::new(PerMessageDeflate::default())]
    };
    let hub = match crate::chat::build_hub(args.redis.as_deref()) {
        Ok(hub) => hub,
        Err(e) => {
            eprintln!("weft serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = router(AppState {
        shutdown: stop_rx.clone(),
        tracker: tracker.clone(),
        extensions,
    })
    .merge(crate::chat::router(hub, stop_rx.clone(), tracker.clone()));

    let mut stop = stop_rx.clone();
    loop {
        tokio::select! {
            _ = shutdown_signal() => break,
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let app = app.clone();
                let tls = tls.clone();
                let stop = stop_rx.clone();
                tracker.spawn(async move {
                    match tls {
                        Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => serve_http(stream, app, stop).await,
                            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        },
                        None => serve_http(tcp, app, stop).await,
                    }
                });
            }
        }
    }
    tracing::info!("shutting down: closing open connections with 1001");
    drop(listener);
    let _ = stop_tx.send(true);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("some connections did not close within {SHUTDOWN_GRACE:?}");
    }
    ExitCode::SUCCESS
}

async fn serve_http<S>(io: S, app: Router, mut stop: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r { tracing::debug!("HTTP connection ended: {e}") },
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
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

/// Echo: text stays text, binary stays binary; the peer's close code is
/// echoed by the protocol core. Replies are queued with `feed` and written
/// together when the socket has nothing more to read.
async fn echo(axum::extract::State(state): axum::extract::State<AppState>, ws: WebSocketUpgrade) -> Response {
    let peer_origin = ws.request().origin().map(str::to_owned);
    let tracker = state.tracker.clone();
    let mut stop = state.shutdown.clone();
    let token = tracker.token();
    let ws = ws.accept(Accept {
        extensions: state.extensions.clone(),
        ..Accept::default()
    });
    ws.on_upgrade(move |mut ws| async move {
        let _token = token;
        tracing::debug!(origin = ?peer_origin, "echo connection opened");
        loop {
            tokio::select! {
                msg = ws.recv() => match msg {
                    Some(Ok(msg)) => {
                        if ws.feed(msg).await.is_err() {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::info!("echo connection failed: {e}");
                        break;
                    }
                    None => break,
                },
                _ = stop.changed() => {
                    let _ = ws.close(CloseCode::GOING_AWAY, "server shutting down").await;
                    break;
                }
            }
        }
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
