"""Print the interop matrix from the clients' JSON lines.

    python3 matrix.py RESULTS_DIR

RESULTS_DIR holds PEER.ROLE.jsonl (one {"case", "result", "detail", "ms"} per
line) and PEER.ROLE.status (the client's exit status) for each column below.
A case with no line is a failure. Exits 1 if any cell failed.
"""

import json
import os
import sys

# (key, column label); "+deflate": the peer offers permessage-deflate and the
# weft server has it on; without it both have it off.
PEERS = [
    ("ws-pmd", "ws +deflate"),
    ("ws", "ws"),
    ("websockets-pmd", "websockets +deflate"),
    ("websockets", "websockets"),
    ("chromium", "chromium"),
]
ROLES = [("server", "server"), ("client", "client")]
# Whole columns a peer cannot take part in, and why.
NA_COLUMNS = {("chromium", "client"): "a browser is only a WebSocket client"}

CASES = [("deflate", "permessage-deflate as configured")]
for kind in ("text", "binary"):
    for key, size in (("0", "0 B"), ("125", "125 B"), ("126", "126 B"), ("64k", "64 KiB"), ("1m", "1 MiB"), ("16m", "16 MiB")):
        CASES.append((f"{kind}-{key}", f"echo {kind} {size}"))
CASES += [
    ("frag-text-peer", "fragmented text, peer sends"),
    ("frag-binary-peer", "fragmented binary, peer sends"),
    ("frag-text-weft", "fragmented text, weft sends"),
    ("frag-binary-weft", "fragmented binary, weft sends"),
    ("close-peer", 'close 4001 "bye", peer starts'),
    ("close-weft", 'close 4001 "bye", weft starts'),
    ("subprotocol", "subprotocol chat.v2 of chat.v2,v1"),
    ("wss", "wss, self-signed certificate"),
]


def load(results_dir, peer, role):
    path = os.path.join(results_dir, f"{peer}.{role}.jsonl")
    rows, status = {}, None
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                rows[r.get("case")] = r
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(results_dir, f"{peer}.{role}.status"), encoding="utf-8") as f:
            status = f.read().strip()
    except FileNotFoundError:
        pass
    return rows, status


def main():
    results_dir = sys.argv[1]
    cells = {}  # (case, peer, role) -> (result, detail)
    for peer, _ in PEERS:
        for role, _ in ROLES:
            if (peer, role) in NA_COLUMNS:
                for case, _ in CASES:
                    cells[(case, peer, role)] = ("n/a", NA_COLUMNS[(peer, role)])
                continue
            rows, status = load(results_dir, peer, role)
            for case, _ in CASES:
                r = rows.get(case)
                if r is None:
                    why = "no result" + (f" (the client exited with status {status})" if status else " (the client did not run)")
                    cells[(case, peer, role)] = ("fail", why)
                else:
                    cells[(case, peer, role)] = (r.get("result", "fail"), r.get("detail", ""))

    shown = {"pass": "pass", "fail": "FAIL", "n/a": "n/a"}
    w_case = max(len(label) for _, label in CASES) + 2
    w_cell = 7
    w_group = max(2 * w_cell + 2, max(len(label) for _, label in PEERS) + 2)
    print("weft's role: server = weft server, the peer is the client; client = weft client, the peer is the server")
    print((" " * w_case + "".join(f"{label:<{w_group}}" for _, label in PEERS)).rstrip())
    roles = f"{'server':<{w_cell}}{'client':<{w_cell}}"
    print((f"{'case':<{w_case}}" + "".join(f"{roles:<{w_group}}" for _ in PEERS)).rstrip())
    for case, label in CASES:
        line = f"{label:<{w_case}}"
        for peer, _ in PEERS:
            pair = "".join(f"{shown.get(cells[(case, peer, role)][0], 'FAIL'):<{w_cell}}" for role, _ in ROLES)
            line += f"{pair:<{w_group}}"
        print(line.rstrip())

    counts = {"pass": 0, "fail": 0, "n/a": 0}
    na_reasons, failures = {}, {}
    for (case, peer, role), (result, detail) in cells.items():
        result = result if result in counts else "fail"
        counts[result] += 1
        if result == "n/a" and (peer, role) not in NA_COLUMNS:
            na_reasons.setdefault(detail, []).append(f"{peer}/{role} {case}")
        elif result == "fail":
            failures.setdefault((peer, role, detail), []).append(case)
    print()
    for (peer, role), reason in NA_COLUMNS.items():
        print(f"n/a: {peer}/{role}, every case: {reason}")
    for reason, where in na_reasons.items():
        print(f"n/a: {', '.join(where)}: {reason}")
    if failures:
        print("failures:")
        for (peer, role, detail), cases in failures.items():
            which = "every case" if len(cases) == len(CASES) else ", ".join(cases)
            print(f"  {peer}/{role} {which}: {detail}")
    print(f"{counts['n/a']} cells n/a (not counted)")
    print(f"interop: {counts['pass']} passed, {counts['fail']} failed")
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
