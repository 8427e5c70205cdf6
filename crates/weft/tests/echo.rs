//! Client ↔ server echo over TCP and TLS at the frame-length boundaries
//! (7-bit, 16-bit and 64-bit lengths) up to the 16 MiB frame limit.
#![allow(clippy::unwrap_used)]

mod common;

use common::{binary, spawn_echo, text, within};
use weft::{CloseCode, DataKind, Message};

/// 0 B, the largest 7-bit length, the smallest 16-bit length, the largest
/// 16-bit length, the smallest 64-bit length, and the default frame limit.
const SIZES: [usize; 6] = [0, 125, 126, 65_535, 65_536, 16 << 20];

async fn echo_all<S>(ws: &mut weft::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for n in SIZES {
        let t = text(n);
        assert_eq!(t.len(), n);
        ws.send(t.clone()).await.unwrap();
        let got = within("text echo", ws.recv()).await.unwrap().unwrap();
        assert_eq!(got.kind(), DataKind::Text, "{n} B text came back as {:?}", got.kind());
        assert!(got.as_text() == Some(t.as_str()), "{n} B text differs");

        let b = binary(n);
        ws.send(b.clone()).await.unwrap();
        let got = within("binary echo", ws.recv()).await.unwrap().unwrap();
        match got {
            Message::Binary(data) => assert!(data[..] == b[..], "{n} B binary differs"),
            Message::Text(_) => panic!("{n} B binary came back as text"),
        }
    }
}

#[tokio::test]
async fn tcp_echo_at_length_boundaries() {
    let addr = spawn_echo(weft::Server::new()).await;
    let mut ws = weft::connect(&format!("ws://{addr}/")).await.unwrap();
    echo_all(&mut ws).await;
    within("close", ws.close(CloseCode::NORMAL, "done")).await.unwrap();
    assert_eq!(ws.state(), weft::proto::State::Closed);
}

#[cfg(feature = "tls")]
mod tls {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::Arc;

    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::TlsAcceptor;

    use super::*;

    /// A self-signed certificate for localhost and 127.0.0.1, and its PEM file.
    struct Pki {
        config: Arc<rustls::ServerConfig>,
        ca_file: PathBuf,
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.ca_file);
        }
    }

    fn pki(tag: &str) -> Pki {
        pki_for(tag, &["localhost", "127.0.0.1"])
    }

    fn pki_for(tag: &str, names: &[&str]) -> Pki {
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        let ca_file = std::env::temp_dir().join(format!("weft-test-{tag}-{}.pem", std::process::id()));
        std::fs::write(&ca_file, ck.cert.pem()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let config = weft::tls::server_config_from_der(vec![ck.cert.der().clone()], key).unwrap();
        Pki { config, ca_file }
    }

    /// A wss echo server; the TLS handshake errors it sees go to `failures`.
    async fn spawn_tls_echo(
        config: Arc<rustls::ServerConfig>,
    ) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (listener, addr) = common::listen().await;
        let acceptor = TlsAcceptor::from(config);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(tls) => {
                            if let Ok(ws) = weft::accept(tls).await {
                                common::echo(ws).await;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(e.to_string());
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn tls_echo_at_length_boundaries() {
        let pki = pki("echo");
        let (addr, _failures) = spawn_tls_echo(pki.config.clone()).await;
        let tls = weft::tls::client_config(Some(&pki.ca_file), false).unwrap();
        let mut ws = weft::Client::new(format!("wss://localhost:{}/", addr.port()))
            .tls_config(tls)
            .connect()
            .await
            .unwrap();
        assert!(matches!(ws.get_ref(), weft::MaybeTlsStream::Tls(_)));
        echo_all(&mut ws).await;
        within("close", ws.close(CloseCode::NORMAL, "done")).await.unwrap();
        assert_eq!(ws.state(), weft::proto::State::Closed);
    }

    #[tokio::test]
    async fn tls_to_an_ip_address_verifies_the_ip_san() {
        let pki = pki("ip");
        let (addr, _failures) = spawn_tls_echo(pki.config.clone()).await;
        let tls = weft::tls::client_config(Some(&pki.ca_file), false).unwrap();
        let mut ws = weft::Client::new(format!("wss://{addr}/"))
            .tls_config(tls)
            .connect()
            .await
            .unwrap();
        ws.send("over tls").await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from("over tls"));
    }

    #[tokio::test]
    async fn tls_without_the_ca_fails_with_a_tls_error() {
        let pki = pki("noca");
        let (addr, mut failures) = spawn_tls_echo(pki.config.clone()).await;
        let url = format!("wss://localhost:{}/", addr.port());

        // The default client configuration (webpki roots only).
        match weft::Client::new(url.clone()).connect().await {
            Err(weft::Error::Tls(msg)) => assert!(!msg.is_empty()),
            other => panic!("expected a TLS error, got {other:?}"),
        }
        // An explicit one without the CA file.
        let tls = weft::tls::client_config(None, false).unwrap();
        match weft::Client::new(url).tls_config(tls).connect().await {
            Err(weft::Error::Tls(msg)) => assert!(!msg.is_empty()),
            other => panic!("expected a TLS error, got {other:?}"),
        }
        // The server saw the handshake fail too.
        let seen = within("server TLS failure", failures.recv()).await.unwrap();
        assert!(!seen.is_empty());
    }

    #[tokio::test]
    async fn tls_with_a_name_the_certificate_lacks_fails() {
        // Trusted CA, but the certificate names only localhost.
        let pki = pki_for("name", &["localhost"]);
        let (addr, _failures) = spawn_tls_echo(pki.config.clone()).await;
        let tls = weft::tls::client_config(Some(&pki.ca_file), false).unwrap();
        let r = weft::Client::new(format!("wss://{addr}/"))
            .tls_config(tls.clone())
            .connect()
            .await;
        assert!(matches!(r, Err(weft::Error::Tls(_))), "{r:?}");
        // The same client configuration works under the certified name.
        let mut ws = weft::Client::new(format!("wss://localhost:{}/", addr.port()))
            .tls_config(tls)
            .connect()
            .await
            .unwrap();
        ws.send(vec![1u8, 2, 3]).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from(vec![1u8, 2, 3]));
    }
}
