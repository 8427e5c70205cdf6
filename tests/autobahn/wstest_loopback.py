"""wstest, with the sockets it listens on bound to 127.0.0.1 only.

Autobahn|Testsuite's fuzzing server listens on every interface; this runs the
same `wstest` entry point with listenWS bound to the loopback interface.
Python 2.7, like wstest itself:

    $VENV/bin/python tests/autobahn/wstest_loopback.py -m fuzzingserver -s spec.json --webport 0
"""
import sys

import autobahn.twisted.websocket as websocket
from autobahntestsuite import fuzzing, wstest

_listen_ws = websocket.listenWS


def listen_loopback(factory, contextFactory=None, backlog=50, interface="127.0.0.1"):
    return _listen_ws(factory, contextFactory, backlog, interface or "127.0.0.1")


websocket.listenWS = listen_loopback
fuzzing.listenWS = listen_loopback

if __name__ == "__main__":
    sys.argv[0] = "wstest"
    wstest.run()
