"""Python's websockets as the client, against the weft servers: the cases of
cases.js, one JSON line per case.

    python py_client.py --echo-url ws://…/echo --url ws://…/ --tls-url wss://…/ --ca cert.pem
        --compression on|off [--case KEY]...
"""

import argparse
import asyncio
import json
import os
import random
import ssl
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

SIZES = [("0", 0), ("125", 125), ("126", 126), ("64k", 64 << 10), ("1m", 1 << 20), ("16m", 16 << 20)]
CASE_TIMEOUT = 60
WORDS = ["weft ", "warp ", "loom ", "señal ", "naïve ", "€uro ", "✓ ", "日本 ", "🧵 ", "\n"]


class Failed(Exception):
    pass


def random_text(n: int) -> str:
    """Words with multi-byte characters, exactly n bytes of UTF-8: a 48 KiB
    block repeated (beyond deflate's 32 KiB window), then padded."""
    block, blen = [], 0
    while True:
        w = random.choice(WORDS)
        wl = len(w.encode())
        if blen + wl > min(n, 48 << 10):
            break
        block.append(w)
        blen += wl
    block = "".join(block)
    reps = n // blen if blen else 0
    s, length = [block * reps], reps * blen
    for ch in block:
        cl = len(ch.encode())
        if length + cl > n:
            break
        s.append(ch)
        length += cl
    s.append("x" * (n - length))
    return "".join(s)


def payload(text: bool, n: int):
    return random_text(n) if text else os.urandom(n)


def same(text: bool, sent, got):
    if isinstance(got, str) != text:
        raise Failed(f"sent {'text' if text else 'binary'}, received {'text' if isinstance(got, str) else 'binary'}")
    a = sent.encode() if text else sent
    b = got.encode() if text else got
    if a == b:
        return
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    raise Failed(f"sent {len(a)} bytes, received {len(b)} bytes, first difference at byte {at}")


class Cases:
    def __init__(self, args):
        self.a = args
        self.compression = args.compression == "on"
        self.ssl = ssl.create_default_context(cafile=args.ca) if args.ca else None

    def open(self, url, protocols=None):
        return connect(
            url,
            compression="deflate" if self.compression else None,
            subprotocols=protocols,
            max_size=64 << 20,
            ssl=self.ssl if url.startswith("wss:") else None,
            open_timeout=10,
            close_timeout=5,
        )

    async def finish(self, ws):
        await ws.close(1000, "done")
        if ws.close_code != 1000:
            raise Failed(f"closing: got {ws.close_code} {ws.close_reason!r}")

    async def ask(self, ws, question):
        await ws.send(question)
        a = await ws.recv()
        if not isinstance(a, str):
            raise Failed(f"{question}: binary answer")
        return a

    async def echo(self, url, text, n):
        async with self.open(url) as ws:
            data = payload(text, n)
            await ws.send(data)
            same(text, data, await ws.recv())
            await self.finish(ws)

    async def deflate(self):
        async with self.open(self.a.url) as ws:
            ours = ", ".join(e.name for e in ws.protocol.extensions) or "none"
            theirs = await self.ask(ws, "extensions?")
            on = lambda s: "permessage-deflate" in s  # noqa: E731
            if on(ours) != self.compression or on(theirs) != self.compression:
                raise Failed(f"compression {self.a.compression}: client agreed {ours!r}, server {theirs!r}")
            await self.finish(ws)

    async def fragments_from_peer(self, text):
        async with self.open(self.a.url) as ws:
            data = payload(text, 10_000)
            raw = data.encode() if text else data

            def inside(n):
                if text:
                    for i in range(n, min(len(raw), n + 8)):
                        if raw[i] & 0xC0 == 0x80:
                            return i
                return n

            a, b = inside(len(raw) // 3), inside(2 * len(raw) // 3)
            # An iterable is sent as fragments; text=True sends byte pieces
            # (here split inside characters) as one text message.
            await ws.send([raw[:a], raw[a:b], raw[b:]], text=text)
            same(text, data, await ws.recv())
            await self.finish(ws)

    async def fragments_from_weft(self, text):
        async with self.open(self.a.url) as ws:
            data = payload(text, 10_000)
            await ws.send("fragment-me:" + data if text else b"fragment-me:" + data)
            same(text, data, await ws.recv())
            await self.finish(ws)

    async def close_from_peer(self):
        cid = "peer-%016x" % random.getrandbits(64)
        async with self.open(f"{self.a.url}?id={cid}") as ws:
            await ws.close(4001, "bye")
            reply = ws.close_code
        async with self.open(self.a.url) as q:
            seen = await self.ask(q, f"closed? {cid}")
            await self.finish(q)
        if seen != "4001 bye":
            raise Failed(f"server received {seen!r}")
        if reply != 4001:
            raise Failed(f"server's close reply had code {reply}")

    async def close_from_weft(self):
        async with self.open(self.a.url) as ws:
            await ws.send("close-me 4001 bye")
            try:
                msg = await ws.recv()
                raise Failed(f"a message instead of the close: {msg!r}")
            except ConnectionClosed as e:
                rcvd = e.rcvd
            if rcvd is None or rcvd.code != 4001 or rcvd.reason != "bye":
                raise Failed(f"received close frame {rcvd}, expected 4001 'bye'")

    async def subprotocol(self):
        async with self.open(self.a.url, ["chat.v2", "chat.v1"]) as ws:
            ours = ws.subprotocol
            theirs = await self.ask(ws, "protocol?")
            if ours != "chat.v2" or theirs != "chat.v2":
                raise Failed(f"offered chat.v2, chat.v1: client agreed {ours!r}, server {theirs!r}")
            await self.finish(ws)

    async def wss(self):
        await self.echo(self.a.tls_url, True, 64 << 10)
        await self.echo(self.a.tls_url, False, 1 << 20)


async def run(key, make, only):
    if only and key not in only:
        return
    t0 = time.monotonic()
    result, detail = "pass", ""
    try:
        await asyncio.wait_for(make(), CASE_TIMEOUT)
    except asyncio.TimeoutError:
        result, detail = "fail", f"no result within {CASE_TIMEOUT} s"
    except Exception as e:  # noqa: BLE001 - every failure is a result
        result, detail = "fail", f"{type(e).__name__}: {e}"
    ms = int((time.monotonic() - t0) * 1000)
    print(json.dumps({"case": key, "result": result, "detail": detail, "ms": ms}), flush=True)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--echo-url", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--tls-url", required=True)
    p.add_argument("--ca")
    p.add_argument("--compression", choices=["on", "off"], default="on")
    p.add_argument("--case", action="append", default=[])
    args = p.parse_args()
    c, only = Cases(args), args.case
    await run("deflate", c.deflate, only)
    for text, prefix in [(True, "text"), (False, "binary")]:
        for name, n in SIZES:
            await run(f"{prefix}-{name}", lambda: c.echo(c.a.echo_url, text, n), only)
    await run("frag-text-peer", lambda: c.fragments_from_peer(True), only)
    await run("frag-binary-peer", lambda: c.fragments_from_peer(False), only)
    await run("frag-text-weft", lambda: c.fragments_from_weft(True), only)
    await run("frag-binary-weft", lambda: c.fragments_from_weft(False), only)
    await run("close-peer", c.close_from_peer, only)
    await run("close-weft", c.close_from_weft, only)
    await run("subprotocol", c.subprotocol, only)
    await run("wss", c.wss, only)


if __name__ == "__main__":
    asyncio.run(main())
