//! The client under test for Autobahn|Testsuite's fuzzing server
//! (`wstest -m fuzzingserver`), as `tests/autobahn/run.sh` runs it.
//!
//! It asks the fuzzing server for the number of cases, then runs each one:
//! connect to `/runCase?case=N&agent=AGENT`, offering permessage-deflate, and
//! echo every message back (text as text, binary as binary) until the
//! connection ends. Finally `/updateReports` makes the server write its report.
//!
//! Run: `cargo run --release -p weft --example autobahn_client -- ws://127.0.0.1:9001 weft`

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft::proto::deflate::PerMessageDeflate;
use weft::{Client, Config, Message};

/// Limits large enough for every case (9.x sends messages of 16 MiB).
fn config() -> Config {
    Config::default()
        .protocol(
            weft::proto::Config::default()
                .max_frame_size(64 << 20)
                .max_message_size(64 << 20),
        )
        .read_buffer_size(64 * 1024)
        .write_buffer_size(1 << 20)
        .handshake_timeout(Duration::from_secs(30))
        .close_timeout(Duration::from_secs(10))
}

fn client(url: &str) -> Client {
    Client::new(url)
        .extension(Arc::new(PerMessageDeflate::default()))
        .config(config())
        .connect_timeout(Duration::from_secs(30))
}

/// Connect to `url` and echo until the connection ends.
async fn echo(url: &str) -> Result<(), weft::Error> {
    let mut ws = client(url).connect().await?;
    while let Some(msg) = ws.recv().await {
        ws.send(msg?).await?;
    }
    Ok(())
}

async fn case_count(base: &str) -> Result<usize, String> {
    let mut ws = client(&format!("{base}/getCaseCount"))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut count = None;
    while let Some(msg) = ws.recv().await {
        match msg {
            Ok(Message::Text(t)) => count = t.as_str().trim().parse().ok(),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    count.ok_or_else(|| "no case count received".to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let base = base.trim_end_matches('/').to_owned();
    let agent = args.next().unwrap_or_else(|| "weft".to_owned());

    let count = match case_count(&base).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("autobahn_client: cannot get the case count from {base}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("autobahn_client: {count} cases");
    let started = Instant::now();
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        // A case that makes the connection fail ends here, as it should: the
        // report says whether that was the right reaction.
        if let Err(e) = echo(&url).await {
            eprintln!("autobahn_client: case {case}: {e}");
        }
        if case % 50 == 0 {
            eprintln!(
                "autobahn_client: {case}/{count} cases, {:.0}s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    if let Err(e) = echo(&format!("{base}/updateReports?agent={agent}")).await {
        eprintln!("autobahn_client: updateReports: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "autobahn_client: {count} cases in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
