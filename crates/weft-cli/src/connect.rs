//! `weft connect URL`: talk to a WebSocket server from a terminal or a script.
//!
//! Lines read from stdin (on a thread of their own) arrive over a channel; the
//! main loop waits, with `tokio::select!`, for either the next event from the
//! socket (`recv_event`, cancel-safe) or the next line.

use std::future::Future;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::pin::pin;
use std::process::ExitCode;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::mpsc;
use weft::proto::State;
use weft::{Client, CloseCode, CloseFrame, Event, MaybeTlsStream, WebSocket, WsUrl};

mod command;
mod display;

use command::Line;

const AFTER_HELP: &str = "\
Interactive mode (stdin and stdout are a terminal):
  Lines you type are sent as text messages. Messages that arrive are printed
  as \"Received: <text>\", binary ones as \"Received: <binary, N bytes> 0a1b…\"
  (hex, cut after 64 bytes). Commands: /ping [data], /close [code [reason]],
  /binary <hex or text>, /quit, /help; a line starting with // is sent with
  one / removed. Ctrl-D closes the connection with 1000.

Non-interactive mode (--non-interactive, or stdin or stdout is not a terminal):
  Each line of stdin is sent, as it is, as a text message (no commands). Each
  message that arrives is printed on stdout by itself, on its own line: text
  as it is, binary as hex. At the end of stdin the connection is closed with
  1000. Status lines (Connected, Disconnected, errors) go to stderr.

Exit status:
  0  the connection closed cleanly: this side closed it (/close, /quit, end of
     input) and the server answered, or the server closed with 1000 (normal),
     1001 (going away) or without a code
  1  anything else: an invalid URL, a refused connection, a TLS or handshake
     failure, a close with another code, a connection lost without a close
  2  invalid arguments

Examples:
  weft connect ws://127.0.0.1:8080/echo
  printf 'a\\nb\\n' | weft connect ws://127.0.0.1:8080/echo
  weft connect wss://localhost:8443/echo --ca-file cert.pem";

/// Stop reading stdin while this much output is queued and unwritten, so a
/// fast producer waits for the network instead of filling memory.
const INPUT_HIGH_WATER: usize = 64 * 1024;

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct ConnectArgs {
    /// The server's URL: ws://HOST:PORT/PATH (port and path optional), or
    /// wss://… for TLS.
    #[arg(value_name = "URL")]
    url: String,

    /// Add a header to the opening handshake, as "Name: value" (repeatable),
    /// e.g. -H "Authorization: Bearer abc".
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,

    /// Offer a subprotocol (repeatable, most preferred first). The one the
    /// server picks is shown when connected.
    #[arg(long = "subprotocol", value_name = "NAME")]
    subprotocols: Vec<String>,

    /// Send this Origin header (scheme, host and port of a site), as a browser
    /// showing a page from that site would.
    #[arg(long, value_name = "URL")]
    origin: Option<String>,

    /// Also trust the certificates in this PEM file: for wss:// servers with a
    /// self-signed or private-CA certificate.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca_file: Option<PathBuf>,

    /// Do not verify the server's certificate at all (wss://). For testing
    /// only: anyone on the network path could read and change the traffic.
    #[arg(long)]
    insecure: bool,

    /// Do not offer permessage-deflate compression (offered by default, as
    /// browsers do; the agreed parameters are shown on connect).
    #[arg(long)]
    no_compression: bool,

    /// Print the pings and pongs that arrive ("Ping: …", "Pong: …"). The pong
    /// answering a /ping is printed in any case.
    #[arg(long)]
    show_ping_pong: bool,

    /// Give up when DNS, TCP, TLS and the handshake together take longer than
    /// this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    connect_timeout: Duration,

    /// Scripting mode even on a terminal: stdin lines are sent as they are and
    /// messages are printed bare (see below). Automatic when stdin or stdout
    /// is not a terminal.
    #[arg(long)]
    non_interactive: bool,
}

pub(crate) async fn run(args: ConnectArgs) -> ExitCode {
    let interactive = !args.non_interactive && io::stdin().is_terminal() && io::stdout().is_terminal();
    let ws = match connect(&args).await {
        Ok(ws) => ws,
        Err(msg) => {
            eprintln!("weft connect: {msg}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "Connected to {} (protocol: {}, extensions: {})",
        args.url,
        ws.protocol().unwrap_or("none"),
        ws.extensions().unwrap_or("none")
    );
    if interactive {
        eprintln!("Type a message and press Enter to send it; /help lists the commands, Ctrl-D closes.");
    }
    let input = match spawn_stdin_reader() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("weft connect: cannot read stdin: {e}");
            return ExitCode::FAILURE;
        }
    };
    Session {
        ws,
        interactive,
        show_ping_pong: args.show_ping_pong,
        pings_out: 0,
        pending_close: None,
        we_closed: false,
        peer_close: None,
        stdout_failed: false,
    }
    .run(input)
    .await
}

/// Parse the URL, set up TLS, connect and run the handshake. `Err` is the
/// one-line message to show.
async fn connect(args: &ConnectArgs) -> Result<WebSocket<MaybeTlsStream>, String> {
    let url = WsUrl::parse(&args.url).map_err(|e| e.to_string())?;
    let mut client = Client::new(args.url.clone()).connect_timeout(args.connect_timeout);
    for (name, value) in &args.headers {
        client = client.header(name, value);
    }
    for p in &args.subprotocols {
        client = client.protocol(p);
    }
    if !args.no_compression {
        client = client.extension(std::sync::Arc::new(weft::proto::deflate::PerMessageDeflate::default()));
    }
    if let Some(origin) = &args.origin {
        client = client.origin(origin);
    }
    if args.insecure {
        if url.tls {
            eprintln!("weft connect: warning: --insecure: the server's certificate is not verified");
        } else {
            eprintln!("weft connect: warning: --insecure has no effect on ws:// URLs");
        }
    }
    if args.insecure || args.ca_file.is_some() {
        let tls = weft::tls::client_config(args.ca_file.as_deref(), args.insecure).map_err(|e| match e {
            weft::Error::Tls(m) => format!("cannot use --ca-file: {m}"),
            other => format!("cannot use --ca-file: {other}"),
        })?;
        client = client.tls_config(tls);
    }
    client.connect().await.map_err(|e| connect_error(args, &e))
}

/// A connection failure, in words.
fn connect_error(args: &ConnectArgs, e: &weft::Error) -> String {
    let url = &args.url;
    match e {
        weft::Error::Io(io) => format!("cannot connect to {url}: {}", io_reason(io)),
        weft::Error::Timeout(_) => format!(
            "cannot connect to {url}: no answer within {} s (see --connect-timeout)",
            args.connect_timeout.as_secs_f64()
        ),
        weft::Error::Tls(m) => format!("TLS handshake with {url} failed: {}", tls_reason(m, args.insecure)),
        // Handshake failures read "handshake failed: server answered HTTP 404
        // Not Found instead of 101"; URLs "invalid URL: …".
        other => other.to_string(),
    }
}

/// A rustls failure, in words, with what to do about it.
fn tls_reason(m: &str, insecure: bool) -> String {
    if insecure {
        return m.to_owned();
    }
    if m.contains("UnknownIssuer") {
        "the server's certificate is not signed by a trusted authority (for a self-signed server, \
         trust its certificate with --ca-file FILE, or skip the check with --insecure)"
            .to_owned()
    } else if m.contains("CaUsedAsEndEntity") {
        "the server's certificate is a CA certificate (basicConstraints CA:TRUE), which is not \
         accepted as a server's own; give the server one with CA:FALSE, or skip the check with --insecure"
            .to_owned()
    } else if m.contains("certificate") {
        format!("{m} (to skip the check: --insecure)")
    } else {
        m.to_owned()
    }
}

/// An I/O error without the `(os error N)` noise.
fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset by the server".to_owned(),
        io::ErrorKind::UnexpectedEof => "the server closed the connection during the handshake".to_owned(),
        io::ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error ") {
                Some(i) => s[..i].to_owned(),
                None => s,
            }
        }
    }
}

/// What the stdin thread hands over.
#[derive(Debug)]
enum Input {
    /// A line, without its line ending.
    Line(String),
    /// Line number `n` was not UTF-8.
    NotUtf8(u64),
    /// Reading failed; no more input.
    Failed(io::Error),
}

/// Read stdin line by line on a thread of its own and send the lines over a
/// channel that closes at the end of input.
///
/// A plain thread rather than `tokio::io::stdin`: tokio reads stdin with a
/// blocking read that cannot be cancelled, and the runtime waits for it when
/// shutting down, so `weft` would hang after the server closes until Enter is
/// pressed. A thread blocked in `read` does not keep the process alive.
fn spawn_stdin_reader() -> io::Result<mpsc::Receiver<Input>> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buf = Vec::new();
        let mut n = 0u64;
        loop {
            buf.clear();
            let item = match stdin.read_until(b'\n', &mut buf) {
                Ok(0) => return,
                Ok(_) => {
                    n += 1;
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                        if buf.last() == Some(&b'\r') {
                            buf.pop();
                        }
                    }
                    match String::from_utf8(std::mem::take(&mut buf)) {
                        Ok(line) => Input::Line(line),
                        Err(_) => Input::NotUtf8(n),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Input::Failed(e));
                    return;
                }
            };
            if tx.blocking_send(item).is_err() {
                return;
            }
        }
    })?;
    Ok(rx)
}

/// Write one line to stdout and flush it, so that scripts see each message as
/// it arrives.
fn print_line(s: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// What woke the main loop.
enum Wake {
    /// `recv_event` returned.
    Event(Option<Result<Event, weft::Error>>),
    /// Everything queued was written.
    Drained(Result<(), weft::Error>),
}

/// The next event, or (when `drain`) the moment all queued output is written,
/// whichever comes first. `recv_event` and `flush` are both cancel-safe, so
/// fresh futures are made on every poll and nothing is lost in between.
async fn event_or_drained(ws: &mut WebSocket<MaybeTlsStream>, drain: bool) -> Wake {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(ev) = pin!(ws.recv_event()).poll(cx) {
            return Poll::Ready(Wake::Event(ev));
        }
        if drain && let Poll::Ready(r) = pin!(ws.flush()).poll(cx) {
            return Poll::Ready(Wake::Drained(r));
        }
        Poll::Pending
    })
    .await
}

struct Session {
    ws: WebSocket<MaybeTlsStream>,
    interactive: bool,
    show_ping_pong: bool,
    /// Pings sent with /ping whose pongs are still to come: those are printed
    /// even without --show-ping-pong.
    pings_out: usize,
    /// A close to send once the output queued before it is written (so that
    /// the socket is read, not blocked on, while a backlog drains).
    pending_close: Option<CloseFrame>,
    /// This side started the closing handshake.
    we_closed: bool,
    /// The server's close frame, once it arrived (inner `None`: no code).
    peer_close: Option<Option<CloseFrame>>,
    /// Writing to stdout failed (e.g. the reader of a pipe went away).
    stdout_failed: bool,
}

impl Session {
    async fn run(mut self, mut input: mpsc::Receiver<Input>) -> ExitCode {
        let mut input_open = true;
        loop {
            let open = self.ws.state() == State::Open;
            let backlog = self.ws.buffered_amount() >= INPUT_HIGH_WATER;
            let take_input = open && input_open && self.pending_close.is_none() && !backlog;
            // Wake up when the output has drained: to read stdin again, or to
            // send a close that waits for the backlog.
            let drain = open && (self.pending_close.is_some() || (input_open && backlog));
            tokio::select! {
                wake = event_or_drained(&mut self.ws, drain) => match wake {
                    Wake::Event(Some(Ok(ev))) => self.on_event(ev),
                    Wake::Event(Some(Err(e))) => {
                        eprintln!("weft connect: disconnected: {e}");
                        return ExitCode::FAILURE;
                    }
                    Wake::Event(None) => return self.finish(),
                    Wake::Drained(Ok(())) => {
                        if let Some(frame) = self.pending_close.take()
                            && let Err(e) = self.send_close(frame).await
                        {
                            eprintln!("weft connect: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                    Wake::Drained(Err(e)) => {
                        eprintln!("weft connect: disconnected: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                item = input.recv(), if take_input => {
                    let sent = match item {
                        Some(Input::Line(line)) => self.on_line(line).await,
                        Some(Input::NotUtf8(n)) => {
                            eprintln!("weft connect: line {n} of the input is not UTF-8; it was not sent");
                            Ok(())
                        }
                        Some(Input::Failed(e)) => {
                            eprintln!("weft connect: cannot read stdin: {e}; closing");
                            input_open = false;
                            self.close_soon(CloseCode::NORMAL, "");
                            Ok(())
                        }
                        None => {
                            // End of input: close normally.
                            input_open = false;
                            self.close_soon(CloseCode::NORMAL, "");
                            Ok(())
                        }
                    };
                    if let Err(e) = sent {
                        eprintln!("weft connect: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }

    /// Close once the queued output is written.
    fn close_soon(&mut self, code: CloseCode, reason: &str) {
        self.pending_close = Some(CloseFrame::new(code, reason));
    }

    async fn send_close(&mut self, frame: CloseFrame) -> Result<(), weft::Error> {
        if self.ws.state() != State::Open {
            // The server's close came first.
            return Ok(());
        }
        self.we_closed = true;
        self.ws.start_close(Some(frame)).await
    }

    async fn on_line(&mut self, line: String) -> Result<(), weft::Error> {
        if !self.interactive {
            return self.ws.feed(line).await;
        }
        match command::parse(&line) {
            Err(msg) => eprintln!("{msg}"),
            Ok(Line::Empty) => {}
            Ok(Line::Text(text)) => self.ws.feed(text).await?,
            Ok(Line::Binary(bytes)) => self.ws.feed(bytes).await?,
            Ok(Line::Ping(data)) => {
                self.ws.ping(data).await?;
                self.pings_out += 1;
            }
            Ok(Line::Close(code, reason)) => self.close_soon(code, &reason),
            Ok(Line::Quit) => self.close_soon(CloseCode::NORMAL, ""),
            Ok(Line::Help) => self.output(command::HELP),
        }
        Ok(())
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Message(msg) => {
                let text = if self.interactive {
                    display::received(&msg)
                } else {
                    display::raw(&msg).into_owned()
                };
                self.output(&text);
            }
            Event::Ping(data) => {
                if self.show_ping_pong {
                    self.status(&format!("Ping: {}", display::control_payload(&data)));
                }
            }
            Event::Pong(data) => {
                if self.show_ping_pong || self.pings_out > 0 {
                    self.pings_out = self.pings_out.saturating_sub(1);
                    self.status(&format!("Pong: {}", display::control_payload(&data)));
                }
            }
            // Only delivered in streaming mode, which is off.
            Event::Fragment(_) => {}
            Event::Close(frame) => {
                // The server closed first, or answered ours; the reply, if one
                // is due, is already queued.
                self.pending_close = None;
                self.peer_close = Some(frame);
            }
        }
    }

    /// Pings and pongs: with the messages on a terminal, on stderr in
    /// non-interactive mode so that stdout carries only messages.
    fn status(&mut self, line: &str) {
        if self.interactive {
            self.output(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// Print a line on stdout. If stdout is gone, close (1001) and remember
    /// to exit with 1.
    fn output(&mut self, line: &str) {
        if self.stdout_failed {
            return;
        }
        if let Err(e) = print_line(line) {
            self.stdout_failed = true;
            if e.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("weft connect: cannot write to stdout: {e}");
            }
            if self.ws.state() == State::Open {
                self.close_soon(CloseCode::GOING_AWAY, "");
            }
        }
    }

    /// The transport is closed: report how, and choose the exit status.
    fn finish(&self) -> ExitCode {
        let Some(frame) = &self.peer_close else {
            eprintln!("weft connect: the connection closed without a closing handshake");
            return ExitCode::FAILURE;
        };
        eprintln!("{}", display::disconnected(frame.as_ref()));
        let clean = self.we_closed
            || frame
                .as_ref()
                .is_none_or(|f| f.code == CloseCode::NORMAL || f.code == CloseCode::GOING_AWAY);
        if clean && !self.stdout_failed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// `--header "Name: value"`.
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("expected \"Name: value\", got {s:?}"))?;
    let (name, value) = (name.trim(), value.trim());
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("the value of {name} contains control characters"));
    }
    match name.to_ascii_lowercase().as_str() {
        "origin" => Err("use --origin to set Origin".to_owned()),
        "sec-websocket-protocol" => Err("use --subprotocol to offer subprotocols".to_owned()),
        "host"
        | "upgrade"
        | "connection"
        | "sec-websocket-key"
        | "sec-websocket-version"
        | "sec-websocket-extensions" => Err(format!("{name} is set by the handshake itself")),
        _ => Ok((name.to_owned(), value.to_owned())),
    }
}

/// `--connect-timeout SECS`: a positive number of seconds, fractions allowed.
fn parse_secs(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| *x > 0.0)
        .and_then(|x| Duration::try_from_secs_f64(x).ok())
        .ok_or_else(|| format!("expected a positive number of seconds, got {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("Authorization: Bearer a b"),
            Ok(("Authorization".into(), "Bearer a b".into()))
        );
        assert_eq!(parse_header("X-Empty:"), Ok(("X-Empty".into(), String::new())));
        assert_eq!(
            parse_header("X-Url: http://a:1/"),
            Ok(("X-Url".into(), "http://a:1/".into()))
        );
        for bad in [
            "NoColon",
            ": v",
            "Bad Name: v",
            "X: a\r\nY: b",
            "Origin: x",
            "host: x",
            "Sec-WebSocket-Protocol: p",
        ] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "abc", "inf", "NaN", ""] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn io_reasons() {
        assert_eq!(
            io_reason(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            "connection refused"
        );
        assert_eq!(io_reason(&io::Error::from_raw_os_error(2)), "No such file or directory");
    }
}
