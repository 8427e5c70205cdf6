//! Connecting to `ws://` and `wss://` URLs.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use weft_proto::{ClientExtension, ClientHandshake, ClientRequest, Connection, Headers, Role};

use crate::config::Config;
use crate::error::Error;
use crate::socket::WebSocket;

/// A WebSocket URL, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss` (or `https`): use TLS.
    pub tls: bool,
    /// The host name or address, without brackets.
    pub host: String,
    /// The port (80 / 443 when not given).
    pub port: u16,
    /// Path and query, at least `/`.
    pub target: String,
}

impl WsUrl {
    /// Parse `ws://host[:port][/path][?query]` or `wss://…` (`http`/`https`
    /// are accepted as aliases). IPv6 literals go in brackets. Fragments are
    /// refused (RFC 6455 §3), as are user names.
    ///
    /// ```
    /// let u = weft::WsUrl::parse("wss://[::1]:8443/chat?room=a").unwrap();
    /// assert_eq!((u.tls, u.host.as_str(), u.port, u.target.as_str()), (true, "::1", 8443, "/chat?room=a"));
    /// assert_eq!(u.host_header(), "[::1]:8443");
    /// ```
    pub fn parse(url: &str) -> Result<WsUrl, Error> {
        let bad = |why: &str| Error::Url(format!("{why}: {url}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("missing scheme"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return Err(bad("scheme must be ws or wss")),
        };
        if rest.contains('#') {
            return Err(bad("fragments are not allowed in WebSocket URLs"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad("user information is not supported"));
        }
        let (host, port) = if let Some(after) = authority.strip_prefix('[') {
            let (h, tail) = after.split_once(']').ok_or_else(|| bad("unclosed IPv6 literal"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("invalid IPv6 literal"));
            }
            let port = match tail {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after IPv6 literal"))?),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port = match port {
            None | Some("") => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => p.parse().map_err(|_| bad("invalid port"))?,
        };
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else if target.is_empty() {
            "/".to_owned()
        } else {
            target.to_owned()
        };
        Ok(WsUrl {
            tls,
            host: host.to_ascii_lowercase(),
            port,
            target,
        })
    }

    /// The `Host` header: the port is included when it is not the default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A TCP or TLS stream, as a client connects it.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// `ws://`
    Plain(TcpStream),
    /// `wss://`
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Connect to `url` with the default settings.
///
/// ```no_run
/// # async fn run() -> Result<(), weft::Error> {
/// let mut ws = weft::connect("ws://127.0.0.1:8080/echo").await?;
/// ws.send("hello").await?;
/// let reply = ws.recv().await;
/// ws.close(weft::proto::CloseCode::NORMAL, "bye").await?;
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<WebSocket<MaybeTlsStream>, Error> {
    Client::new(url).connect().await
}

/// A client connection in the making: URL, headers, subprotocols, Origin,
/// timeouts and TLS roots.
#[derive(Clone, Debug)]
pub struct Client {
    url: String,
    origin: Option<String>,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    extensions: Vec<Arc<dyn ClientExtension>>,
    connect_timeout: Duration,
    config: Config,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// What the server answered, besides the socket.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// The response headers of the 101.
    pub headers: Headers,
    /// The subprotocol the server chose.
    pub protocol: Option<String>,
    /// The extensions it agreed to.
    pub extensions: Option<String>,
}

impl Client {
    /// A client for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Client {
            url: url.into(),
            origin: None,
            protocols: Vec::new(),
            headers: Vec::new(),
            extensions: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            config: Config::default(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Send an `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Offer a subprotocol (call again for more, most preferred first).
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocols.push(p.into());
        self
    }

    /// Add a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offer an extension.
    pub fn extension(mut self, ext: Arc<dyn ClientExtension>) -> Self {
        self.extensions.push(ext);
        self
    }

    /// Bound DNS, TCP, TLS and the handshake together (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Use `config` for the connection.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Use this rustls configuration for `wss://` (see [`crate::tls`] for
    /// custom CA files and the platform roots).
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Connect, run the handshake, and return the socket.
    pub async fn connect(self) -> Result<WebSocket<MaybeTlsStream>, Error> {
        Ok(self.connect_with_response().await?.0)
    }

    /// Like [`connect`](Self::connect), with the server's answer.
    pub async fn connect_with_response(self) -> Result<(WebSocket<MaybeTlsStream>, Handshake), Error> {
        let timeout = self.connect_timeout;
        match tokio::time::timeout(timeout, self.connect_inner()).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout("connect")),
        }
    }

    async fn connect_inner(self) -> Result<(WebSocket<MaybeTlsStream>, Handshake), Error> {
        let url = WsUrl::parse(&self.url)?;
        let tcp = connect_tcp(&url.host, url.port).await?;
        let _ = tcp.set_nodelay(true);
        let stream = if url.tls {
            #[cfg(feature = "tls")]
            {
                let cfg = match &self.tls {
                    Some(c) => c.clone(),
                    None => crate::tls::client_config(None, false)?,
                };
                let name = rustls_pki_types::ServerName::try_from(url.host.clone())
                    .map_err(|e| Error::Tls(format!("invalid server name {}: {e}", url.host)))?;
                let tls = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Error::Tls(e.to_string()))?;
                MaybeTlsStream::Tls(Box::new(tls))
            }
            #[cfg(not(feature = "tls"))]
            return Err(Error::Tls("wss:// needs the `tls` feature".into()));
        } else {
            MaybeTlsStream::Plain(tcp)
        };
        let request = ClientRequest {
            host: url.host_header(),
            target: url.target.clone(),
            origin: self.origin,
            protocols: self.protocols,
            extensions: self.extensions,
            headers: self.headers,
        };
        client_handshake(stream, request, &self.config).await
    }
}

async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, Error> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Io(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("no address found for {host}"))
    })))
}

/// Run the client handshake on an already connected transport.
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    request: ClientRequest,
    config: &Config,
) -> Result<(WebSocket<S>, Handshake), Error> {
    let (mut hs, bytes) = ClientHandshake::new(request, config.handshake)?;
    io.write_all(&bytes).await?;
    io.flush().await?;
    let mut buf = BytesMut::with_capacity(1024);
    let (resp, n) = loop {
        if let Some(done) = hs.parse_response(&buf)? {
            break done;
        }
        if buf.capacity() == buf.len() {
            buf.reserve(1024);
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during the handshake",
            )));
        }
    };
    let conn = Connection::new(Role::Client, config.protocol.clone()).with_extension(resp.extension);
    let info = Handshake {
        headers: resp.headers,
        protocol: resp.protocol.clone(),
        extensions: resp.extensions_header.clone(),
    };
    let ws = WebSocket::from_parts(io, conn, config, &buf[n..], resp.protocol, resp.extensions_header);
    Ok((ws, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = WsUrl::parse("ws://example.com").unwrap();
        assert_eq!(
            (u.tls, u.port, u.target.as_str(), u.host_header()),
            (false, 80, "/", "example.com".into())
        );
        let u = WsUrl::parse("wss://Example.com:443/a/b?c=d").unwrap();
        assert_eq!(
            (u.tls, u.port, u.target.as_str(), u.host_header()),
            (true, 443, "/a/b?c=d", "example.com".into())
        );
        let u = WsUrl::parse("ws://127.0.0.1:8080?x").unwrap();
        assert_eq!(
            (u.port, u.target.as_str(), u.host_header()),
            (8080, "/?x", "127.0.0.1:8080".into())
        );
        let u = WsUrl::parse("ws://[::1]/").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.host_header()), ("::1", 80, "[::1]".into()));
        for bad in [
            "example.com",
            "ftp://x",
            "ws://",
            "ws://a:b",
            "ws://a/#frag",
            "ws://u@h",
            "ws://[::1",
            "ws://[zz]",
            "ws://[::1]x",
        ] {
            assert!(WsUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
