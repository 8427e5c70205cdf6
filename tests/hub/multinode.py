#!/usr/bin/env python3
"""Two `weft serve --redis` nodes sharing one redis-server, 100 chat clients.

Run by tests/hub/multinode.sh, which installs what this needs:

    python3 tests/hub/multinode.py --weft target/debug/weft

1. redis-server on a free loopback port (no persistence), two weft nodes.
2. 100 clients join one room, split across the nodes; member counts add up.
3. Every client sends messages: every client receives every message exactly
   once, in each publisher's order.
4. redis-server is killed: both nodes notice; messages sent now are answered
   to their sender with an error notice, and reach nobody.
5. redis-server is restarted: both nodes reconnect and resubscribe, and
   messages flow again, exactly once and in order.
6. A client leaves: the others see the leave and the new count.

Ends with `hub: N passed, M failed` and a non-zero status on failure. Every
process it starts is stopped by its PID.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.asyncio.client import connect

ROOM = "multinode"
CLIENTS = 100
PER_CLIENT = 5


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed.append(f"{name}: {detail}")
            print(f"FAIL {name}: {detail}", flush=True)
        return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Procs:
    """Processes this test started, stopped by PID."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv):
        log = open(os.path.join(self.workdir, f"{name}.log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        p.log_path = log.name
        self.procs.append(p)
        return p

    def kill(self, p):
        if p.poll() is None:
            p.kill()
            p.wait()

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_redis(procs, port, n):
    p = procs.start(
        f"redis{n}",
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def start_node(procs, weft, redis_url, name):
    p = procs.start(name, [weft, "serve", "--listen", "127.0.0.1:0", "--redis", redis_url, "--log-level", "warn"])
    deadline = time.time() + 10
    while time.time() < deadline:
        with open(p.log_path) as f:
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)/", f.read())
        if m:
            return p, m.group(1)
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not start: " + open(p.log_path).read())


def stats(base):
    with urllib.request.urlopen(base + "/hub/stats", timeout=5) as r:
        return json.loads(r.read())


async def wait_for(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


async def wait_stats(bases, pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        all_ok = True
        for b in bases:
            s = await asyncio.to_thread(stats, b)
            all_ok = all_ok and pred(s)
        if all_ok:
            return True
        await asyncio.sleep(0.1)
    return False


class Client:
    def __init__(self, name, base):
        self.name = name
        self.base = base
        self.ws = None
        self.messages = []  # (from, text)
        self.errors = []  # texts that were not delivered
        self.error_reasons = []
        self.joins = []  # (nick, members)
        self.leaves = []
        self.welcome = None
        self.closed = False

    async def open(self):
        url = self.base.replace("http://", "ws://") + f"/chat/{ROOM}?nick={self.name}"
        self.ws = await connect(url, ping_interval=None, compression=None, max_size=1 << 20)
        self.reader = asyncio.create_task(self.read())

    async def read(self):
        try:
            async for raw in self.ws:
                ev = json.loads(raw)
                t = ev.get("type")
                if t == "message":
                    self.messages.append((ev["from"], ev["text"]))
                elif t == "error":
                    self.errors.append(ev.get("text", ""))
                    self.error_reasons.append(ev.get("error", ""))
                elif t == "join":
                    self.joins.append((ev["nick"], ev["members"]))
                elif t == "leave":
                    self.leaves.append((ev["nick"], ev["members"]))
                elif t == "welcome":
                    self.welcome = ev
        except Exception as e:  # noqa: BLE001 - recorded, checked by the caller
            self.error = e
        finally:
            self.closed = True

    async def send_all(self, texts):
        for t in texts:
            await self.ws.send(t)


def check_phase(checks, clients, senders, prefix, per_sender):
    """Each client got each sender's messages of this phase once, in order."""
    want = {s.name: [f"{prefix}:{s.name}:{i}" for i in range(per_sender)] for s in senders}
    bad = 0
    for c in clients:
        got = {}
        for frm, text in c.messages:
            if text.startswith(prefix + ":"):
                got.setdefault(frm, []).append(text)
        ok = got == want
        if not ok and bad < 3:
            missing = sum(len(v) for v in want.values()) - sum(len(v) for v in got.values())
            extra = [f for f in got if f not in want]
            wrong = [f for f in want if f in got and got[f] != want[f]][:2]
            detail = f"missing {missing}, unknown senders {extra}, out of order/duplicated from {wrong}"
            checks.check(f"{prefix}: {c.name} got every message once, in order", False, detail)
            bad += 1
        elif not ok:
            checks.check(f"{prefix}: {c.name}", False, "(same)")
        else:
            checks.check(f"{prefix}: {c.name}", True)


async def expect_phase(clients, prefix, total, timeout):
    def done():
        return all(sum(1 for _, t in c.messages if t.startswith(prefix + ":")) >= total for c in clients)

    await wait_for(done, timeout)
    await asyncio.sleep(0.3)  # anything extra (a duplicate) would show up now


async def run(weft):
    checks = Checks()
    work = tempfile.mkdtemp(prefix="weft-hub-")
    procs = Procs(work)
    try:
        port = free_port()
        redis_url = f"redis://127.0.0.1:{port}/"
        redis = start_redis(procs, port, 1)
        _, a = start_node(procs, weft, redis_url, "node-a")
        _, b = start_node(procs, weft, redis_url, "node-b")
        print(f"redis {redis_url}, nodes {a} {b}", flush=True)
        checks.check(
            "both nodes connected to Redis",
            await wait_stats([a, b], lambda s: s["connected"] and s["backend"] == "redis", 10),
        )

        # Join one at a time (each sees its own join first), so the counts
        # every node reports are exact.
        clients = []
        for i in range(CLIENTS):
            c = Client(f"c{i:03d}", a if i % 2 == 0 else b)
            await c.open()
            await wait_for(lambda c=c: any(n == c.name for n, _ in c.joins), 5)
            clients.append(c)
        last = clients[-1]
        checks.check(
            "every client joined and saw its welcome",
            all(c.welcome and c.welcome["nick"] == c.name for c in clients),
        )
        own = [m for n, m in last.joins if n == last.name]
        checks.check("member count over both nodes is 100", own == [CLIENTS], f"last join notice said {own}")
        first = clients[0]
        # The last joins reach the first client (on node a) through Redis:
        # wait for them rather than read them at once.
        await wait_for(lambda: len(first.joins) >= CLIENTS, 10)
        seen = {n for n, _ in first.joins}
        checks.check(
            "the first client saw its own and all 99 later joins, from both nodes",
            len(first.joins) == CLIENTS,
            f"saw {len(first.joins)}, missing {sorted({c.name for c in clients} - seen)}",
        )

        # Everyone talks at once.
        t0 = time.monotonic()
        await asyncio.gather(*(c.send_all([f"p1:{c.name}:{i}" for i in range(PER_CLIENT)]) for c in clients))
        await expect_phase(clients, "p1", CLIENTS * PER_CLIENT, 30)
        dt = time.monotonic() - t0
        print(f"phase 1: {CLIENTS * PER_CLIENT} messages to {CLIENTS} clients "
              f"({CLIENTS * CLIENTS * PER_CLIENT} deliveries) in {dt:.2f} s", flush=True)
        check_phase(checks, clients, clients, "p1", PER_CLIENT)
        errs = [(c.name, c.error_reasons) for c in clients if c.errors]
        checks.check("no error notices before the outage", not errs, f"{errs[:3]}")

        # Outage: Redis is killed.
        procs.kill(redis)
        checks.check(
            "both nodes noticed the outage",
            await wait_stats([a, b], lambda s: not s["connected"], 15),
        )
        talkers = clients[:10]  # five on each node
        await asyncio.gather(*(c.send_all([f"out:{c.name}:{i}" for i in range(3)]) for c in talkers))
        await wait_for(lambda: all(len(c.errors) >= 3 for c in talkers), 15)
        for c in talkers:
            want = [f"out:{c.name}:{i}" for i in range(3)]
            checks.check(f"outage: {c.name} was told its messages failed", c.errors == want, f"errors {c.errors}")
        await asyncio.sleep(0.5)
        leaked = [(c.name, t) for c in clients for _, t in c.messages if t.startswith("out:")]
        checks.check("outage: failed messages reached nobody", not leaked, f"{leaked[:5]}")
        failed = 0
        for n in (a, b):
            failed += (await asyncio.to_thread(stats, n))["publish_failed"]
        checks.check("outage: failures counted in /hub/stats", failed >= 30, f"publish_failed {failed}")
        checks.check("clients stayed connected", not any(c.closed for c in clients))

        # Redis is back on the same port.
        start_redis(procs, port, 2)
        t0 = time.monotonic()
        checks.check(
            "both nodes reconnected and resubscribed",
            await wait_stats([a, b], lambda s: s["connected"] and s["reconnects"] >= 1, 20),
        )
        print(f"recovered in {time.monotonic() - t0:.2f} s", flush=True)
        await asyncio.gather(*(c.send_all([f"p2:{c.name}:{i}" for i in range(2)]) for c in clients))
        await expect_phase(clients, "p2", CLIENTS * 2, 30)
        check_phase(checks, clients, clients, "p2", 2)

        # A member leaves.
        await clients[1].ws.close()
        await wait_for(lambda: any(n == clients[1].name for n, _ in first.leaves), 5)
        left = [m for n, m in first.leaves if n == clients[1].name]
        checks.check("a leave is seen across nodes with the new count", left == [CLIENTS - 1], f"{left}")

        for c in clients:
            await c.ws.close()
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        checks.check("run", False, repr(e))
    finally:
        procs.stop_all()
        for p in procs.procs:
            if p.returncode not in (0, -9, -15, None) and "node" in p.log_path:
                print(open(p.log_path).read()[-2000:])
    for f in checks.failed[:20]:
        print("  failed:", f)
    print(f"hub: {checks.passed} passed, {len(checks.failed)} failed", flush=True)
    return 1 if checks.failed else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weft", required=True)
    args = ap.parse_args()
    # SIGTERM (e.g. from timeout) unwinds through the cleanup above.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    sys.exit(asyncio.run(run(args.weft)))


if __name__ == "__main__":
    main()
