#!/usr/bin/env python3
"""Checks the Autobahn|Testsuite reports that tests/autobahn/run.sh wrote.

    python3 tests/autobahn/check.py [--quick] [--role server] [--role client]
                                    [--markdown] [target/autobahn]

For each role (server: wstest's fuzzingclient against `weft serve`; client:
wstest's fuzzingserver against the weft client) it reads
DIR/ROLE/index.json and each case's own report, prints a table per section,
and fails (exit 1) when:

  - a case's behavior is anything but OK or INFORMATIONAL (NON-STRICT,
    FAILED, UNIMPLEMENTED, ...);
  - a close was unclean: behaviorClose is not OK (INFORMATIONAL is accepted
    only for a case whose behavior is INFORMATIONAL), or the case's report says
    wasClean false;
  - the results differ from tests/autobahn/expected.json (case -> behavior
    for both roles): a case missing, a case extra, or a behavior changed.

With --quick, cases 12.* and 13.* are not expected. --markdown prints the
tables as Markdown (for docs/CONFORMANCE.md).
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SECTIONS = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved Bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 Handling",
    "7": "Close Handling",
    "9": "Limits/Performance",
    "10": "Miscellaneous",
    "12": "Compression (payloads)",
    "13": "Compression (parameters)",
}
BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED"]
ACCEPTED = {"OK", "INFORMATIONAL"}
QUICK_EXCLUDED = ("12", "13")
ROLE_TITLE = {
    "server": "weft as server (wstest -m fuzzingclient against weft serve /echo)",
    "client": "weft as client (examples/autobahn_client against wstest -m fuzzingserver)",
}


def case_key(case_id):
    return tuple(int(p) for p in case_id.split("."))


def section_of(case_id):
    return case_id.split(".")[0]


def load_role(outdir, role):
    """The cases of one role's report: id -> dict with behavior,
    behaviorClose, wasClean, remoteCloseCode, duration."""
    path = os.path.join(outdir, role, "index.json")
    with open(path) as f:
        index = json.load(f)
    if len(index) != 1:
        raise ValueError("%s: expected one agent, found %s" % (path, sorted(index)))
    (agent, cases), = index.items()
    out = {}
    for case_id, c in cases.items():
        report_path = os.path.join(outdir, role, c["reportfile"])
        try:
            with open(report_path) as f:
                report = json.load(f)
            was_clean = report.get("wasClean")
            not_clean_reason = report.get("wasNotCleanReason")
        except (OSError, ValueError) as e:
            was_clean, not_clean_reason = None, "no case report: %s" % e
        out[case_id] = {
            "behavior": c["behavior"],
            "behaviorClose": c["behaviorClose"],
            "remoteCloseCode": c.get("remoteCloseCode"),
            "duration": c.get("duration", 0),
            "wasClean": was_clean,
            "wasNotCleanReason": not_clean_reason,
        }
    return agent, out


def unclean(c):
    """Why the case's close was unclean, or None."""
    close = c["behaviorClose"]
    if close != "OK" and not (close == "INFORMATIONAL" and c["behavior"] == "INFORMATIONAL"):
        return "behaviorClose %s" % close
    if c["wasClean"] is not True:
        return "wasClean %s (%s)" % (c["wasClean"], c["wasNotCleanReason"])
    return None


def table(cases, markdown):
    cols = ["section", "cases"] + BEHAVIORS + ["other", "unclean", "time"]
    rows = []
    totals = dict((k, 0) for k in cols[1:])
    for sec in sorted({section_of(k) for k in cases}, key=int):
        ids = [k for k in cases if section_of(k) == sec]
        row = {"section": "%s %s" % (sec, SECTIONS.get(sec, "")), "cases": len(ids)}
        for b in BEHAVIORS:
            row[b] = sum(1 for k in ids if cases[k]["behavior"] == b)
        row["other"] = sum(1 for k in ids if cases[k]["behavior"] not in BEHAVIORS)
        row["unclean"] = sum(1 for k in ids if unclean(cases[k]))
        row["time"] = sum(cases[k]["duration"] or 0 for k in ids) / 1000.0
        for k in cols[1:]:
            totals[k] += row[k]
        rows.append(row)
    totals["section"] = "all"
    rows.append(totals)

    def cell(row, k):
        v = row[k]
        return "%.1fs" % v if k == "time" else str(v)

    lines = []
    if markdown:
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|")
        for r in rows:
            cells = [cell(r, k) for k in cols]
            if r is totals:
                cells = ["**%s**" % c for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
    else:
        widths = [max(len(c), *(len(cell(r, c)) for r in rows)) for c in cols]
        fmt = lambda vals: "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths))
        )
        lines.append(fmt(cols))
        for r in rows:
            if r is totals:
                lines.append("  ".join("-" * w for w in widths))
            lines.append(fmt([cell(r, k) for k in cols]))
    return "\n".join(lines)


def check_role(role, cases, expected, quick):
    """A list of problems for one role."""
    problems = []
    want = dict(expected)
    if quick:
        want = dict((k, v) for k, v in want.items() if section_of(k) not in QUICK_EXCLUDED)
    for k in sorted(set(want) - set(cases), key=case_key):
        problems.append("%s: missing from the report (expected %s)" % (k, want[k]))
    for k in sorted(set(cases) - set(want), key=case_key):
        problems.append("%s: not expected in this run (got %s)" % (k, cases[k]["behavior"]))
    for k in sorted(cases, key=case_key):
        c = cases[k]
        if c["behavior"] not in ACCEPTED:
            problems.append("%s: %s" % (k, c["behavior"]))
        why = unclean(c)
        if why:
            problems.append("%s: unclean close: %s" % (k, why))
        if k in want and c["behavior"] != want[k]:
            problems.append("%s: %s, expected.json says %s" % (k, c["behavior"], want[k]))
    return problems


def summary(cases):
    ok = sum(1 for c in cases.values() if c["behavior"] == "OK")
    info = sum(1 for c in cases.values() if c["behavior"] == "INFORMATIONAL")
    other = len(cases) - ok - info
    bad_close = sum(1 for c in cases.values() if unclean(c))
    s = "%d OK, %d INFORMATIONAL, %d other" % (ok, info, other)
    if bad_close:
        s += ", %d unclean" % bad_close
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", nargs="?", default=os.path.join(ROOT, "target", "autobahn"))
    ap.add_argument("--quick", action="store_true", help="cases 12.* and 13.* were not run")
    ap.add_argument("--role", action="append", choices=["server", "client"])
    ap.add_argument("--expected", default=os.path.join(HERE, "expected.json"))
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument(
        "--write-expected",
        action="store_true",
        help="record a full run as expected.json (only if every case is OK or INFORMATIONAL and closed cleanly)",
    )
    args = ap.parse_args()
    roles = args.role or ["server", "client"]

    results = {}
    for role in roles:
        try:
            results[role] = load_role(args.outdir, role)[1]
        except (OSError, ValueError) as e:
            print("autobahn %s: cannot read the report: %s" % (role, e))
            results[role] = None

    if args.write_expected:
        if args.quick or any(results[r] is None for r in roles):
            sys.exit("--write-expected needs full reports for the roles given")
        try:
            with open(args.expected) as f:
                expected = json.load(f)
        except OSError:
            expected = {}
        for role in roles:
            bad = [k for k, c in results[role].items() if c["behavior"] not in ACCEPTED or unclean(c)]
            if bad:
                sys.exit("not recording %s: %s" % (role, ", ".join(sorted(bad, key=case_key))))
            expected[role] = dict(
                (k, results[role][k]["behavior"]) for k in sorted(results[role], key=case_key)
            )
        with open(args.expected, "w") as f:
            f.write(json.dumps(expected, indent=1) + "\n")
        print("wrote %s" % args.expected)
        return 0

    with open(args.expected) as f:
        expected = json.load(f)

    failed = False
    finals = []
    for role in roles:
        cases = results[role]
        if cases is None:
            failed = True
            finals.append("%s: no report" % role)
            continue
        seconds = None
        try:
            with open(os.path.join(args.outdir, role, "seconds")) as f:
                seconds = int(f.read().strip())
        except (OSError, ValueError):
            pass
        title = ROLE_TITLE[role] + (", %ds" % seconds if seconds is not None else "")
        print("\n%s %s\n" % ("###" if args.markdown else "==", title))
        print(table(cases, args.markdown))
        problems = check_role(role, cases, expected.get(role, {}), args.quick)
        if problems:
            failed = True
            print("\n%d problem(s):" % len(problems))
            for p in problems:
                print("  " + p)
        finals.append("%s: %s" % (role, summary(cases)))
    print("")
    print("autobahn%s %s => %s" % (" (quick)" if args.quick else "", "; ".join(finals), "FAIL" if failed else "PASS"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
