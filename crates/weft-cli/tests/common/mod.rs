//! Starting the real `weft serve` for the tests in this folder.
//!
//! Each test crate uses what it needs of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// The `weft` binary cargo built for these tests.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_weft");

/// A `weft serve` that said where it listens.
pub(crate) struct Started {
    /// The process, killed when dropped.
    pub(crate) child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// The lines it wrote on stderr before saying so.
    pub(crate) before: Vec<String>,
    /// The rest of its stderr: read it (or hand it to [`drain`]) so that the
    /// server never blocks on a full pipe.
    pub(crate) lines: Lines<BufReader<ChildStderr>>,
}

/// Start `weft serve --listen 127.0.0.1:0 --log-level warn ARGS` and wait
/// (at most 10 s) for the line saying where it listens.
pub(crate) async fn start_serve(args: &[&str]) -> Started {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("weft serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    let mut before = Vec::new();
    let wait = async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("stderr is readable")
                .expect("weft serve exited early");
            if let Some(rest) = line.strip_prefix("weft serve: listening on http://") {
                break rest.trim_end_matches('/').parse::<SocketAddr>().expect("an address");
            }
            before.push(line);
        }
    };
    let addr = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("timed out after 10 s: the listening line");
    Started {
        child,
        addr,
        before,
        lines,
    }
}

/// Read and drop the rest of a server's stderr, in a task of its own.
pub(crate) fn drain(mut lines: Lines<BufReader<ChildStderr>>) {
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
}
