//! Connect to a WebSocket URL, send one text message, print the reply.
//!
//! Run: `cargo run -p weft --example client -- ws://127.0.0.1:9001/ [MESSAGE]`

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use weft::{CloseCode, Message};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: client URL [MESSAGE]");
        return ExitCode::FAILURE;
    };
    let text = args.next().unwrap_or_else(|| "hello from weft".to_owned());
    match run(&url, text).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str, text: String) -> Result<(), weft::Error> {
    let mut ws = weft::connect(url).await?;
    ws.send(text).await?;
    match ws.recv().await {
        Some(Ok(Message::Text(t))) => println!("{t}"),
        Some(Ok(Message::Binary(b))) => println!("<{} bytes of binary>", b.len()),
        Some(Err(e)) => return Err(e),
        None => {
            let code = ws.close_frame().map(|f| f.code.0);
            println!("the server closed the connection ({code:?}) without replying");
            return Ok(());
        }
    }
    ws.close(CloseCode::NORMAL, "done").await
}
