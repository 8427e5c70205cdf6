//! A WebSocket echo server on 127.0.0.1.
//!
//! Run: `cargo run -p weft --example echo_server -- [PORT]` (default 9001),
//! then `cargo run -p weft --example client -- ws://127.0.0.1:9001/ hello`.

use std::process::ExitCode;

use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    let port = match std::env::args().nth(1).map(|p| p.parse::<u16>()) {
        None => 9001,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("usage: echo_server [PORT]: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        eprintln!("echo server on ws://{addr}/");
    }
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        tokio::spawn(async move {
            let mut ws = match weft::accept(tcp).await {
                Ok(ws) => ws,
                Err(e) => {
                    eprintln!("{peer}: handshake failed: {e}");
                    return;
                }
            };
            while let Some(msg) = ws.recv().await {
                match msg {
                    Ok(msg) => {
                        if let Err(e) = ws.send(msg).await {
                            eprintln!("{peer}: send failed: {e}");
                            return;
                        }
                    }
                    Err(e) => {
                        eprintln!("{peer}: {e}");
                        return;
                    }
                }
            }
            let code = ws.close_frame().map(|f| f.code.0);
            eprintln!("{peer}: closed ({code:?})");
        });
    }
}
