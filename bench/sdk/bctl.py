#!/usr/bin/env python3
"""Drive a headless baresip over its ctrl_tcp socket (JSON in netstrings).

    bctl.py PORT dial URI [--wait-established SECONDS]
    bctl.py PORT cmd COMMAND [PARAMS]      # prints the response's data
    bctl.py PORT hangup

Standard library only. Exit status 0 on success; 1 when baresip refused the
command or the call did not establish in time. Only connects to 127.0.0.1.
"""
import json
import socket
import sys
import time


def connect(port, deadline):
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Netstrings:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, obj):
        data = json.dumps(obj).encode()
        self.sock.sendall(str(len(data)).encode() + b":" + data + b",")

    def recv(self, deadline):
        while True:
            colon = self.buf.find(b":")
            if colon > 0:
                n = int(self.buf[:colon])
                if len(self.buf) >= colon + 1 + n + 1:
                    msg = self.buf[colon + 1 : colon + 1 + n]
                    self.buf = self.buf[colon + 1 + n + 1 :]
                    return json.loads(msg.decode(errors="replace"))
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(min(left, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return None
            self.buf += chunk


def command(ns, cmd, params, token, deadline):
    """Sends a command, returns (response, events seen before it)."""
    ns.send({"command": cmd, "params": params, "token": token})
    events = []
    while True:
        msg = ns.recv(deadline)
        if msg is None:
            return None, events
        if msg.get("response") and msg.get("token") == token:
            return msg, events
        if msg.get("event"):
            events.append(msg)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    port, what = int(sys.argv[1]), sys.argv[2]
    deadline = time.monotonic() + 10
    ns = Netstrings(connect(port, deadline))
    # connect() succeeds before baresip accepts; one round trip first, so
    # that no event of ours is lost.
    resp, _ = command(ns, "reginfo", "", "hello", deadline)
    if resp is None:
        print("bctl: no answer from baresip", file=sys.stderr)
        return 1
    if what == "dial":
        uri = sys.argv[3]
        wait = 15.0
        if "--wait-established" in sys.argv:
            wait = float(sys.argv[sys.argv.index("--wait-established") + 1])
        deadline = time.monotonic() + wait
        resp, events = command(ns, "dial", uri, "dial", deadline)
        if resp is None or not resp.get("ok", False):
            print(f"bctl: dial refused: {resp}", file=sys.stderr)
            return 1
        while True:
            for ev in events:
                t = ev.get("type", "")
                if t == "CALL_ESTABLISHED":
                    print("established")
                    return 0
                if t == "CALL_CLOSED":
                    print(f"bctl: call closed: {ev.get('param', '')}", file=sys.stderr)
                    return 1
            events = []
            msg = ns.recv(deadline)
            if msg is None:
                print("bctl: call not established in time", file=sys.stderr)
                return 1
            if msg.get("event"):
                events.append(msg)
    if what == "cmd":
        params = sys.argv[4] if len(sys.argv) > 4 else ""
        resp, _ = command(ns, sys.argv[3], params, "cmd", time.monotonic() + 5)
        if resp is None:
            return 1
        print(resp.get("data", ""))
        return 0 if resp.get("ok", False) else 1
    if what == "hangup":
        resp, _ = command(ns, "hangup", "", "hangup", time.monotonic() + 5)
        return 0 if resp is not None else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
