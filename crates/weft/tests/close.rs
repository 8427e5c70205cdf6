//! The closing handshake started by either side: codes and reasons arrive,
//! `recv` ends with `None`, both states are `Closed`, both transports close,
//! and the server closes TCP first (RFC 6455 §7.1.1).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{Recorder, Seen, listen, within};
use tokio::net::TcpStream;
use weft::proto::{ClientRequest, SendError, State};
use weft::{CloseCode, CloseFrame, Config, Error, WebSocket};

type Log = Arc<Mutex<Vec<Seen>>>;

/// A connected pair whose transports record EOF and shutdown.
async fn pair() -> (WebSocket<Recorder<TcpStream>>, Log, WebSocket<Recorder<TcpStream>>, Log) {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (io, log) = Recorder::new(tcp);
        (weft::accept(io).await.unwrap(), log)
    });
    let (io, client_log) = Recorder::new(TcpStream::connect(addr).await.unwrap());
    let request = ClientRequest {
        host: addr.to_string(),
        target: "/".into(),
        ..ClientRequest::default()
    };
    let (client, _) = weft::client_handshake(io, request, &Config::default()).await.unwrap();
    let (server, server_log) = server.await.unwrap();
    (server, server_log, client, client_log)
}

fn seen(log: &Log) -> Vec<Seen> {
    log.lock().unwrap().clone()
}

/// The server shut TCP down without having seen the client's EOF first; the
/// client saw the server's EOF before it shut down its own side.
fn assert_server_closed_first(server: &Log, client: &Log) {
    let s = seen(server);
    assert_eq!(s.first(), Some(&Seen::Shutdown), "server transport: {s:?}");
    let c = seen(client);
    assert_eq!(c, vec![Seen::Eof, Seen::Shutdown], "client transport: {c:?}");
}

#[tokio::test]
async fn client_initiated_close() {
    let (mut server, slog, mut client, clog) = pair().await;
    client.send("last words").await.unwrap();

    let server_side = tokio::spawn(async move {
        // Data sent before the close still arrives.
        let m = server.recv().await.unwrap().unwrap();
        assert_eq!(m.as_text(), Some("last words"));
        assert!(server.recv().await.is_none(), "recv ends after the close");
        assert!(server.recv().await.is_none(), "and stays ended");
        server
    });
    within("client close", client.close(CloseCode(4000), "client done"))
        .await
        .unwrap();
    let server = within("server end", server_side).await.unwrap();

    assert_eq!(server.close_frame(), Some(&CloseFrame::new(4000, "client done")));
    assert_eq!(server.state(), State::Closed);
    assert_eq!(client.state(), State::Closed);
    // The server echoed the code (§5.5.1).
    assert_eq!(client.close_frame().map(|f| f.code), Some(CloseCode(4000)));
    assert!(client.recv().await.is_none());
    assert_server_closed_first(&slog, &clog);

    // Nothing can be sent any more, on either side.
    assert!(matches!(client.send("late").await, Err(Error::Send(SendError::Closed))));
    let mut server = server;
    assert!(matches!(server.send("late").await, Err(Error::Send(SendError::Closed))));
}

#[tokio::test]
async fn server_initiated_close() {
    let (mut server, slog, mut client, clog) = pair().await;
    server.send("goodbye").await.unwrap();

    let client_side = tokio::spawn(async move {
        let m = client.recv().await.unwrap().unwrap();
        assert_eq!(m.as_text(), Some("goodbye"));
        assert!(client.recv().await.is_none(), "recv ends after the close");
        client
    });
    within("server close", server.close(CloseCode::GOING_AWAY, "restarting"))
        .await
        .unwrap();
    let client = within("client end", client_side).await.unwrap();

    assert_eq!(client.close_frame(), Some(&CloseFrame::new(1001, "restarting")));
    assert_eq!(client.state(), State::Closed);
    assert_eq!(server.state(), State::Closed);
    assert_eq!(server.close_frame().map(|f| f.code), Some(CloseCode::GOING_AWAY));
    assert!(server.recv().await.is_none());
    assert_server_closed_first(&slog, &clog);
}

#[tokio::test]
async fn close_without_a_code_is_seen_as_no_status() {
    let (mut server, _slog, mut client, _clog) = pair().await;
    client.start_close(None).await.unwrap();
    assert_eq!(client.state(), State::Closing);
    let ev = within("server close event", server.recv_event())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev, weft::Event::Close(None));
    assert!(server.recv().await.is_none());
    assert!(server.close_frame().is_none());
    assert!(within("client end", client.recv()).await.is_none());
    assert_eq!(client.state(), State::Closed);
}

#[tokio::test]
async fn an_unsendable_close_code_is_refused_and_the_connection_stays_open() {
    let (mut server, _slog, mut client, _clog) = pair().await;
    for code in [999u16, 1005, 1006, 1015, 2000, 5000] {
        let r = client.close(CloseCode(code), "").await;
        assert!(
            matches!(r, Err(Error::Send(SendError::InvalidCloseCode(c))) if c == code),
            "{code}: {r:?}"
        );
        assert_eq!(client.state(), State::Open);
    }
    client.send("still open").await.unwrap();
    assert_eq!(server.recv().await.unwrap().unwrap().as_text(), Some("still open"));
}
