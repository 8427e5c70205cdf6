"""Python's websockets as the server, for the weft client (interop_client).

An echo that also answers ``close-me CODE REASON``, ``closed? ID``,
``protocol?``, ``extensions?`` and ``fragment-me:PAYLOAD`` (sent back in three
fragments), and picks the first subprotocol the client offers among chat.v1,
chat.v2.

    python py_server.py --compression on|off [--tls-cert cert.pem --tls-key key.pem]

prints {"ws": "ws://127.0.0.1:PORT/", "wss": "wss://127.0.0.1:PORT/"} once listening.
"""

import argparse
import asyncio
import json
import ssl
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

PROTOCOLS = ["chat.v1", "chat.v2"]
FRAGMENT_ME = b"fragment-me:"
closes: dict[str, str] = {}


def select_subprotocol(_conn, offered):
    # The first one the client offers that this server speaks; none is fine.
    return next((p for p in offered if p in PROTOCOLS), None)


def inside(body: bytes, n: int, text: bool) -> int:
    """A cut near n that falls inside a character, where there is one."""
    if text:
        for i in range(n, min(len(body), n + 8)):
            if body[i] & 0xC0 == 0x80:
                return i
    return n


async def handler(ws):
    query = parse_qs(urlsplit(ws.request.path).query)
    conn_id = query.get("id", [None])[0]
    try:
        async for msg in ws:
            text = isinstance(msg, str)
            raw = msg.encode() if text else msg
            if raw.startswith(FRAGMENT_ME):
                body = raw[len(FRAGMENT_ME):]
                a = inside(body, len(body) // 3, text)
                b = inside(body, 2 * len(body) // 3, text)
                # An iterable of bytes is sent as fragments; text=True keeps
                # the opcode text although the pieces split characters.
                await ws.send([body[:a], body[a:b], body[b:]], text=text)
            elif not text:
                await ws.send(msg)
            elif msg.startswith("close-me "):
                _, code, *reason = msg.split(" ")
                await ws.close(int(code), " ".join(reason))
            elif msg.startswith("closed? "):
                want = msg[8:]
                for _ in range(50):
                    if want in closes:
                        break
                    await asyncio.sleep(0.05)
                await ws.send(closes.get(want, "none"))
            elif msg == "protocol?":
                await ws.send(ws.subprotocol or "none")
            elif msg == "extensions?":
                names = [e.name for e in ws.protocol.extensions]
                await ws.send(", ".join(names) or "none")
            else:
                await ws.send(msg)
    except ConnectionClosed:
        pass
    finally:
        if conn_id is not None:
            await ws.wait_closed()
            code, reason = ws.close_code, ws.close_reason
            closes[conn_id] = "1005" if code == 1005 else f"{code} {reason}"


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--compression", choices=["on", "off"], default="on")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args()
    common = dict(
        compression="deflate" if args.compression == "on" else None,
        select_subprotocol=select_subprotocol,
        max_size=64 << 20,
    )
    plain = await serve(handler, "127.0.0.1", 0, **common)
    urls = {"ws": "ws://127.0.0.1:%d/" % plain.sockets[0].getsockname()[1]}
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        tls = await serve(handler, "127.0.0.1", 0, ssl=ctx, **common)
        urls["wss"] = "wss://127.0.0.1:%d/" % tls.sockets[0].getsockname()[1]
    print(json.dumps(urls), flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
