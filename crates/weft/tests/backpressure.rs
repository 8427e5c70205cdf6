//! A peer that stops reading: sends wait (bounded output), then fail with the
//! write timeout, and the connection ends without waiting any longer.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{binary, listen, raw_client, read_to_end, within};
use weft::proto::State;
use weft::{Config, Error, Server};

#[tokio::test]
async fn a_peer_that_never_reads_fails_the_write_then_the_connection_ends() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let config = Config::default()
            .write_timeout(Some(Duration::from_millis(300)))
            .write_buffer_size(64 * 1024);
        let mut ws = Server::new().with_config(config).accept(tcp).await.unwrap();
        let chunk = bytes::Bytes::from(binary(256 * 1024));
        let mut sent = 0usize;
        let err = loop {
            match ws.send(chunk.clone()).await {
                Ok(()) => sent += chunk.len(),
                Err(e) => break e,
            }
            // Output stays bounded while the peer does not read.
            assert!(ws.buffered_amount() <= 64 * 1024 + chunk.len());
            assert!(sent < 1 << 30, "sends never blocked");
        };
        assert!(matches!(err, Error::Timeout("write")), "{err:?}");
        assert_eq!(ws.state(), State::Failed);
        // The connection is over: recv reports the failure promptly rather
        // than after another close timeout (5 s by default), then ends.
        let first = tokio::time::timeout(Duration::from_secs(2), ws.recv())
            .await
            .expect("recv ends without waiting for the close timeout");
        if let Some(r) = first {
            assert!(r.is_err(), "{r:?}");
            assert!(ws.recv().await.is_none());
        }
        sent
    });

    // Complete the handshake, then read nothing until the server gave up.
    let mut tcp = raw_client(addr).await;
    let sent = within("server", server).await.unwrap();
    assert!(sent > 0);
    // The server closed its side: draining the socket reaches end of file.
    let rest = within("EOF after the flood", read_to_end(&mut tcp)).await;
    assert!(rest.len() >= sent, "at least what was sent in full arrives");
}
