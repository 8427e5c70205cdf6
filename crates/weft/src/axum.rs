//! Upgrading requests served by axum (hyper) to weft WebSockets.
//!
//! ```no_run
//! use axum::{Router, routing::get, response::Response};
//! use weft::axum::WebSocketUpgrade;
//!
//! async fn echo(ws: WebSocketUpgrade) -> Response {
//!     ws.on_upgrade(|mut ws| async move {
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn run() {
//! let app: Router = Router::new().route("/echo", get(echo));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use weft_proto::{Accept, Connection, HandshakeError, Header, Headers, Request, Role, UpgradeRequest, accept_key};

use crate::config::Config;
use crate::socket::WebSocket;

/// The upgraded transport handed to the socket.
pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// An extractor for a checked WebSocket upgrade request (RFC 6455 §4.2.1).
/// Requests that break the rules are rejected with [`Rejection`] (400, 405,
/// 426 with `Sec-WebSocket-Version: 13`) before the handler runs.
pub struct WebSocketUpgrade {
    request: UpgradeRequest,
    on_upgrade: OnUpgrade,
    config: Config,
    accept: Accept,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

/// A refused upgrade: the status, headers and one-line body of
/// [`HandshakeError`].
#[derive(Debug)]
pub struct Rejection(pub HandshakeError);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = (status, format!("{}\n", self.0)).into_response();
        let h = resp.headers_mut();
        match &self.0 {
            HandshakeError::UnsupportedVersion => {
                h.insert(
                    HeaderName::from_static("sec-websocket-version"),
                    HeaderValue::from_static("13"),
                );
            }
            HandshakeError::NotUpgrade => {
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            HandshakeError::MethodNotGet(_) => {
                h.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            _ => {}
        }
        resp
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        let version = match parts.version {
            http::Version::HTTP_09 | http::Version::HTTP_10 => 0,
            _ => 1,
        };
        let headers = Headers(
            parts
                .headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.as_str().to_owned(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
        );
        let request = Request {
            method: parts.method.as_str().to_owned(),
            target: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            version,
            headers,
        };
        let request = UpgradeRequest::new(request).map_err(Rejection)?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| Rejection(HandshakeError::reject(426, "this connection cannot be upgraded")))?;
        Ok(WebSocketUpgrade {
            request,
            on_upgrade,
            config: Config::default(),
            accept: Accept::default(),
        })
    }
}

impl WebSocketUpgrade {
    /// The checked request: path, query, Origin, offered subprotocols and
    /// extensions.
    pub fn request(&self) -> &UpgradeRequest {
        &self.request
    }

    /// Choose the subprotocol, extension negotiators and extra headers.
    pub fn accept(mut self, accept: Accept) -> Self {
        self.accept = accept;
        self
    }

    /// Use `config` for the socket.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Answer 101 and run `callback` with the socket once hyper hands over
    /// the connection.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket<Upgraded>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accepted = self.request.accept(&self.accept);
        let mut resp = Response::new(axum::body::Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept_key(self.request.key())) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Some(p) = accepted.protocol.as_deref().and_then(|p| HeaderValue::from_str(p).ok()) {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
        }
        if let Some(e) = accepted
            .extensions_header
            .as_deref()
            .and_then(|e| HeaderValue::from_str(e).ok())
        {
            h.insert(header::SEC_WEBSOCKET_EXTENSIONS, e);
        }
        for (n, v) in &self.accept.headers {
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(n.as_str()), HeaderValue::from_str(v)) {
                h.append(n, v);
            }
        }
        let config = self.config;
        let on_upgrade = self.on_upgrade;
        let (protocol, extensions, extension) = (accepted.protocol, accepted.extensions_header, accepted.extension);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let conn = Connection::new(Role::Server, config.protocol.clone()).with_extension(extension);
            let ws = WebSocket::from_parts(TokioIo::new(upgraded), conn, &config, &[], protocol, extensions);
            callback(ws).await;
        });
        resp
    }
}
