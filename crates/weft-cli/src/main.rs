//! `weft`: serve the echo demo, or connect to any WebSocket server from a terminal.

// The doc comments on the argument structs are the `--help` text, where a
// URL reads best bare.
#![allow(rustdoc::bare_urls)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod chat;
mod connect;
mod echo;
mod metrics;
mod ratelog;
mod serve;
mod stop;
mod topic;

/// jemalloc, whose background thread returns memory freed after a burst of
/// connections (say, thousands of half-open handshakes) to the system within
/// seconds; glibc's malloc keeps most of it, fragmented across its arenas.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// weft: a WebSocket server, client and demo.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the demo page at /, a WebSocket echo endpoint at /echo, the chat
    /// at /chat (rooms at /chat/{room}), pub/sub at /topic/{name} (every
    /// message a subscriber sends reaches every subscriber, itself included),
    /// /healthz, and metrics in the Prometheus text format at /metrics (see
    /// --metrics-listen and --no-metrics).
    Serve(serve::ServeArgs),
    /// Connect to a WebSocket server: lines you type are sent, messages are printed.
    Connect(connect::ConnectArgs),
    /// Load-test a WebSocket echo server: messages per second, latency,
    /// handshakes per second, memory per idle connection.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cli = match cli.command {
        // The load generator sizes its own runtime (--threads).
        Command::Bench(args) => return bench::run(args),
        other => other,
    };
    let runtime = match &cli {
        Command::Serve(args) if args.threads == Some(1) => {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        Command::Serve(args) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = args.threads {
                b.worker_threads(usize::from(n));
            }
            b.enable_all().build()
        }
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weft: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli {
            Command::Serve(args) => serve::run(args).await,
            Command::Connect(args) => connect::run(args).await,
            Command::Bench(_) => ExitCode::FAILURE,
        }
    })
}
