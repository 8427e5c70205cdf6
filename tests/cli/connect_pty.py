#!/usr/bin/env python3
"""`weft connect` driven through a pseudo-terminal, and as a script.

    python3 tests/cli/connect_pty.py path/to/weft

Starts its own `weft serve` on free loopback ports, runs `weft connect`
in a pty (typed lines, /binary, /ping, /close, Ctrl-D, the server shutting
down) and with piped stdin, and checks the one-line errors for a refused
connection, a 404 handshake and a bad URL. With `openssl` on PATH it also
checks wss:// with --ca-file and --insecure. Prints PASS/FAIL per check and
`N passed, M failed`; exits non-zero on any failure. Only standard modules
are used; only the processes started here are stopped, by PID, and every
wait has a timeout.
"""

import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

WAIT = 10.0  # seconds for any one expected output or exit
HARD_LIMIT = 240  # seconds for the whole run

results = {"passed": 0, "failed": 0, "skipped": 0}
started = []  # Popen objects this script started


def check(name, ok, detail=""):
    if ok:
        results["passed"] += 1
        print(f"PASS  {name}", flush=True)
    else:
        results["failed"] += 1
        print(f"FAIL  {name}" + (f"\n      {detail}" if detail else ""), flush=True)
    return ok


def skip(name, why):
    results["skipped"] += 1
    print(f"SKIP  {name}: {why}", flush=True)


def stop(proc, sig=signal.SIGTERM):
    """Stop one process this script started, by its PID."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass


def stop_all():
    for p in started:
        try:
            stop(p)
        except Exception:  # keep stopping the others
            pass


def on_alarm(signum, frame):
    raise TimeoutError(f"the whole run took longer than {HARD_LIMIT} s")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_server(weft, workdir, name, extra=()):
    """`weft serve` on a free port; returns (proc, port) once /healthz answers."""
    scheme = "https" if extra else "http"
    for _ in range(3):  # the free port may be taken between close and bind
        port = free_port()
        log = open(os.path.join(workdir, f"{name}.log"), "wb")
        proc = subprocess.Popen(
            [weft, "serve", "--listen", f"127.0.0.1:{port}", "--log-level", "warn", *extra],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
        started.append(proc)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ctx = ssl._create_unverified_context() if scheme == "https" else None
                with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/healthz", timeout=1, context=ctx) as r:
                    if r.status == 200 and r.read() == b"ok\n":
                        return proc, port
            except OSError:
                time.sleep(0.05)
        stop(proc)
    raise RuntimeError(f"weft serve ({name}) did not start; see {workdir}/{name}.log")


class Pty:
    """`weft connect …` on a pseudo-terminal (stdin, stdout and stderr)."""

    def __init__(self, argv):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True,
        )
        started.append(self.proc)
        os.close(slave)
        self.out = b""
        self.seen = 0  # output before this offset was matched already

    def _read(self, timeout):
        r, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not r:
            return True
        try:
            data = os.read(self.master, 4096)
        except OSError:  # EIO: the other side is closed
            data = b""
        if not data:
            return False
        self.out += data
        return True

    def type(self, line):
        os.write(self.master, line.encode() + b"\r")

    def send_raw(self, data):
        os.write(self.master, data)

    def expect(self, pattern, timeout=WAIT):
        """Wait for `pattern` (a regex) in the output after the last match."""
        rx = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.out, self.seen)
            if m:
                self.seen = m.end()
                return True, m
            left = deadline - time.monotonic()
            if left <= 0:
                return False, None
            if not self._read(min(left, 0.2)):  # end of output
                m = rx.search(self.out, self.seen)
                if m:
                    self.seen = m.end()
                return bool(m), m

    def wait_exit(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0.05) and select.select([self.master], [], [], 0)[0]:
            pass
        return self.proc.poll()

    def tail(self):
        return repr(self.out[-400:].decode(errors="replace"))

    def close(self):
        stop(self.proc)
        os.close(self.master)


def run_connect(weft, args, stdin=b"", timeout=WAIT):
    """`weft connect …` with piped stdin; returns (status, stdout, stderr)."""
    proc = subprocess.Popen(
        [weft, "connect", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    started.append(proc)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        out, err = proc.communicate()
        return None, out, err
    return proc.returncode, out, err


def one_line_error(name, status, err, needle):
    text = err.decode(errors="replace")
    lines = text.splitlines()
    check(
        name,
        status == 1 and len(lines) == 1 and needle in lines[0],
        f"status {status}, stderr {text!r}, wanted one line containing {needle!r}",
    )


def interactive_session(weft, url):
    t = Pty([weft, "connect", "--show-ping-pong", url])
    try:
        ok, _ = t.expect(r"Connected to ws://127\.0\.0\.1:\d+/echo \(protocol: none, extensions: permessage-deflate\)")
        if not check("pty: connect prints the Connected line", ok, t.tail()):
            return
        t.type("hello from a pty")
        ok, _ = t.expect(r"Received: hello from a pty\r?\n")
        check("pty: a typed line comes back as 'Received: hello from a pty'", ok, t.tail())
        t.type("/binary 0a1b2c")
        ok, _ = t.expect(r"Received: <binary, 3 bytes> 0a1b2c\r?\n")
        check("pty: /binary 0a1b2c comes back as a 3-byte binary message", ok, t.tail())
        t.type("//slash")
        ok, _ = t.expect(r"Received: /slash\r?\n")
        check("pty: //slash sends the text '/slash'", ok, t.tail())
        t.type("/nope")
        ok, _ = t.expect(r"unknown command /nope")
        check("pty: an unknown command is reported, not sent", ok, t.tail())
        t.type("/ping hi")
        ok, _ = t.expect(r"Pong: hi\r?\n")
        check("pty: /ping hi with --show-ping-pong prints 'Pong: hi'", ok, t.tail())
        t.type("/close 4000 bye")
        # The line shows what the server answered: weft serve echoes the code
        # (with no reason), other servers may add one.
        ok, _ = t.expect(r"Disconnected \(code 4000(: [^)\r\n]*)?\)\r?\n")
        check("pty: /close 4000 bye prints the server's answer 'Disconnected (code 4000…)'", ok, t.tail())
        status = t.wait_exit()
        check("pty: exit status 0 after /close", status == 0, f"status {status}; output {t.tail()}")
    finally:
        t.close()


def ctrl_d_session(weft, url):
    t = Pty([weft, "connect", url])
    try:
        ok, _ = t.expect(r"Connected to ")
        if not check("pty: second session connects", ok, t.tail()):
            return
        t.send_raw(b"\x04")  # Ctrl-D at the start of a line: end of input
        ok, _ = t.expect(r"Disconnected \(code 1000\)")
        check("pty: Ctrl-D closes with 1000", ok, t.tail())
        status = t.wait_exit()
        check("pty: exit status 0 after Ctrl-D", status == 0, f"status {status}; output {t.tail()}")
    finally:
        t.close()


def server_closes_session(weft, workdir):
    server, port = start_server(weft, workdir, "closing")
    t = Pty([weft, "connect", f"ws://127.0.0.1:{port}/echo"])
    try:
        ok, _ = t.expect(r"Connected to ")
        if not check("pty: connects to a server about to shut down", ok, t.tail()):
            return
        os.kill(server.pid, signal.SIGTERM)  # it closes open connections with 1001
        ok, _ = t.expect(r"Disconnected \(code 1001: server shutting down\)")
        check("pty: the server's close is shown as 'Disconnected (code 1001: …)'", ok, t.tail())
        # Nothing typed: the exit must not wait for a line on stdin.
        status = t.wait_exit()
        check("pty: exits 0 after the server's 1001, without waiting for input", status == 0,
              f"status {status}; output {t.tail()}")
    finally:
        t.close()
        stop(server)


def tls_checks(weft, workdir):
    if not shutil.which("openssl"):
        skip("wss checks", "openssl is not on PATH")
        return
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    gen = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-keyout", key, "-out", cert],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
    )
    if gen.returncode != 0:
        skip("wss checks", "openssl could not make a certificate: " + gen.stderr.decode(errors="replace")[-200:])
        return
    server, port = start_server(weft, workdir, "tls", ("--tls-cert", cert, "--tls-key", key))
    url = f"wss://127.0.0.1:{port}/echo"
    try:
        status, out, err = run_connect(weft, [url], b"x\n")
        one_line_error("wss: an unknown self-signed certificate is one line, status 1", status, err,
                       "not signed by a trusted authority")
        status, out, err = run_connect(weft, ["--ca-file", cert, url], b"secure\n")
        check("wss: --ca-file trusts the server and echoes", status == 0 and out == b"secure\n",
              f"status {status}, stdout {out!r}, stderr {err!r}")
        status, out, err = run_connect(weft, ["--insecure", url], b"x\n")
        check("wss: --insecure connects and warns on stderr",
              status == 0 and out == b"x\n" and b"warning" in err and b"--insecure" in err,
              f"status {status}, stdout {out!r}, stderr {err!r}")
    finally:
        stop(server)


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    weft = os.path.abspath(sys.argv[1])
    if not os.access(weft, os.X_OK):
        print(f"not an executable: {weft}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(HARD_LIMIT)
    workdir = tempfile.mkdtemp(prefix="weft-connect-pty-")
    try:
        server, port = start_server(weft, workdir, "plain")
        base = f"ws://127.0.0.1:{port}"
        print(f"weft serve on {base} (pid {server.pid})", flush=True)

        interactive_session(weft, f"{base}/echo")
        ctrl_d_session(weft, f"{base}/echo")
        server_closes_session(weft, workdir)

        status, out, err = run_connect(weft, [f"{base}/echo"], b"a\nb\n")
        check("pipe: printf 'a\\nb\\n' | weft connect prints exactly 'a\\nb\\n'", out == b"a\nb\n",
              f"stdout {out!r}, stderr {err!r}")
        check("pipe: exit status 0 after end of input and a clean close", status == 0,
              f"status {status}, stderr {err!r}")
        check("pipe: status lines go to stderr", b"Connected to " in err and b"Disconnected (code 1000)" in err,
              f"stderr {err!r}")

        status, _, err = run_connect(weft, ["ws://127.0.0.1:1/"])
        one_line_error("error: refused connection is one line, status 1", status, err,
                       "weft connect: cannot connect to ws://127.0.0.1:1/: connection refused")
        status, _, err = run_connect(weft, [f"{base}/nope"])
        one_line_error("error: a 404 answer is one line, status 1", status, err,
                       "weft connect: handshake failed: server answered HTTP 404 Not Found instead of 101")
        status, _, err = run_connect(weft, ["ftp://127.0.0.1/"])
        one_line_error("error: an invalid URL is one line, status 1", status, err, "weft connect: invalid URL")

        tls_checks(weft, workdir)
    except Exception as e:  # a broken harness is a failure, not a crash
        check("harness", False, f"{type(e).__name__}: {e}")
    finally:
        signal.alarm(0)
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    if results["skipped"]:
        print(f"{results['skipped']} skipped", flush=True)
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
