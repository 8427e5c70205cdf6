//! The browser-style client: print every event of a short session.
//!
//! Run: `cargo run -p weft --example browser_client -- ws://127.0.0.1:9001/`

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use weft::browser::{BrowserWebSocket, WsEvent};

#[tokio::main]
async fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: browser_client URL");
        return ExitCode::FAILURE;
    };
    let mut ws = BrowserWebSocket::new(&url, &[]);
    println!("readyState: {:?}", ws.ready_state());
    let mut clean = false;
    while let Some(event) = ws.next_event().await {
        match &event {
            WsEvent::Open => {
                println!("open (protocol {:?})", ws.protocol());
                for m in ["hello", "from", "weft"] {
                    if let Err(e) = ws.send(m) {
                        eprintln!("send: {e}");
                    }
                }
            }
            WsEvent::Message(m) => {
                match m.as_text() {
                    Some(t) => println!("message: {t}"),
                    None => println!("message: <{} bytes of binary>", m.len()),
                }
                if m.as_text() == Some("weft")
                    && let Err(e) = ws.close(Some(1000), Some("done"))
                {
                    eprintln!("close: {e}");
                }
            }
            WsEvent::Error(e) => println!("error: {e}"),
            WsEvent::Close {
                code,
                reason,
                was_clean,
            } => {
                println!("close: code {code}, reason {reason:?}, clean {was_clean}");
                clean = *was_clean;
            }
        }
        println!("readyState: {:?}", ws.ready_state());
    }
    if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
