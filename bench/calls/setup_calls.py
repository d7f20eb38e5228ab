#!/usr/bin/env python3
"""SIP driver for the relay benchmark (bench/calls/run.sh): sets up N calls
through a media-anchoring server and writes the relay addresses for rtpload.

It is both parties at once, over SIP/UDP on 127.0.0.1 (standard library only):

  callee  registers as EXT (digest MD5, optional qop=auth) from --callee-port,
          then answers every INVITE it receives: 180, 200 with SDP (its own
          RTP port b_j), retransmitting the 200 until the ACK
  caller  sends INVITEs for --did from --caller-port (the "carrier" trunk),
          SDP with its RTP port a_i; on 200 it sends the ACK (following
          Record-Route) and reads the relay address RA_i from the 200's SDP

The callee reads RB_j (where it must send its RTP) from the INVITE's SDP. For
each call leg it writes a line to --out:

  LOCAL_RTP_PORT  RELAY_IP  RELAY_PORT  A|B

(A = caller side: send from a_i to RA_i; B = callee side: b_j to RB_j). The
two legs of one call need not be paired: a B2BUA gives the callee another
Call-ID, and rtpload finds the pairing from the packets themselves.

Then it holds the calls (answering OPTIONS, re-INVITE, UPDATE with 200) until
--release-file exists or --hold-max seconds have passed, and tears them down:
a BYE per call from the caller, retransmitted like any non-INVITE request.
Results (key=value lines) go to --stats after the setup and after the
teardown. Every wait is bounded; the process exits at --max-seconds at the
latest.

Exit status: 0 if every call was set up and torn down, 1 if some failed,
2 on usage errors or if registration failed.
"""

import argparse
import hashlib
import heapq
import os
import random
import re
import select
import socket
import sys
import time

T1 = 0.5
T2 = 4.0
TIMER_B = 64 * T1  # INVITE / non-INVITE transaction timeout


def now():
    return time.monotonic()


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
           "l": "content-length", "c": "content-type", "k": "supported", "s": "subject"}


class Msg:
    """A parsed SIP message: start line, headers (ordered, names lower-case), body."""

    def __init__(self, data):
        text = data.decode("utf-8", "replace")
        head, sep, body = text.partition("\r\n\r\n")
        if not sep:
            head, sep, body = text.partition("\n\n")
        lines = re.split(r"\r?\n", head)
        self.start = lines[0]
        self.headers = []  # (name, value) with name lower-case, folded lines joined
        for ln in lines[1:]:
            if ln[:1] in (" ", "\t") and self.headers:
                n, v = self.headers[-1]
                self.headers[-1] = (n, v + " " + ln.strip())
                continue
            name, _, value = ln.partition(":")
            name = name.strip().lower()
            self.headers.append((COMPACT.get(name, name), value.strip()))
        self.body = body
        parts = self.start.split(" ", 2)
        if parts[0].startswith("SIP/2.0"):
            self.is_request = False
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self.method = None
        else:
            self.is_request = True
            self.method = parts[0]
            self.ruri = parts[1] if len(parts) > 1 else ""
            self.status = None

    def get(self, name):
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def raw(self, name):
        """All values of a header as they are (auth challenges contain commas)."""
        return [v for n, v in self.headers if n == name]

    def all(self, name):
        """All values of a header, comma-separated ones split (not inside <> or quotes)."""
        out = []
        for n, v in self.headers:
            if n == name:
                out.extend(split_commas(v))
        return out

    def cseq(self):
        v = self.get("cseq") or "0 X"
        num, _, meth = v.partition(" ")
        return int(num) if num.isdigit() else 0, meth.strip()

    def branch(self):
        vias = self.all("via")
        if not vias:
            return ""
        m = re.search(r";\s*branch=([^;,\s]+)", vias[0], re.I)
        return m.group(1) if m else ""

    def tag(self, header):
        v = self.get(header) or ""
        m = re.search(r";\s*tag=([^;>\s]+)", v, re.I)
        return m.group(1) if m else ""


def split_commas(v):
    out, cur, depth, quote = [], [], 0, False
    for ch in v:
        if ch == '"':
            quote = not quote
        elif not quote and ch == "<":
            depth += 1
        elif not quote and ch == ">":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def uri_of(nameaddr):
    m = re.search(r"<([^>]*)>", nameaddr)
    if m:
        return m.group(1)
    return nameaddr.split(";")[0].strip()


def hostport(uri, default_port=5060):
    """(host, port) a request to this SIP URI goes to (maddr/transport ignored)."""
    u = re.sub(r"^sips?:", "", uri, flags=re.I)
    u = u.split(";")[0].split("?")[0]
    if "@" in u:
        u = u.rsplit("@", 1)[1]
    if u.startswith("["):
        host, _, rest = u[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = u.partition(":")
    return host, int(port) if port.isdigit() else default_port


def sdp_media(body):
    """(ip, port) of the first audio stream of an SDP body, or None."""
    if not body:
        return None
    sess_c = media_c = port = None
    in_audio = False
    for ln in re.split(r"\r?\n", body):
        if ln.startswith("m="):
            if port is not None:
                break
            f = ln[2:].split()
            in_audio = bool(f) and f[0] == "audio"
            if in_audio and len(f) > 1 and f[1].split("/")[0].isdigit():
                port = int(f[1].split("/")[0])
        elif ln.startswith("c="):
            f = ln[2:].split()
            if len(f) >= 3:
                if port is None and not in_audio:
                    sess_c = f[2].split("/")[0]
                elif in_audio:
                    media_c = f[2].split("/")[0]
    ip = media_c or sess_c
    if ip is None or port is None or port == 0:
        return None
    return ip, port


def make_sdp(ip, port, sess_id):
    return ("v=0\r\n"
            f"o=- {sess_id} 1 IN IP4 {ip}\r\n"
            "s=-\r\n"
            f"c=IN IP4 {ip}\r\n"
            "t=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\n"
            "a=rtpmap:0 PCMU/8000\r\n"
            "a=ptime:20\r\n"
            "a=sendrecv\r\n")


def digest_header(challenges, method, uri, user, password, header_name):
    """Authorization header answering the MD5 challenge among `challenges`."""
    chosen = None
    for ch in challenges:
        params = dict((k.lower(), v.strip('"')) for k, v in
                      re.findall(r'(\w+)\s*=\s*("[^"]*"|[^,\s]+)', ch))
        alg = params.get("algorithm", "MD5").upper()
        if alg in ("MD5", "MD5-SESS") and ch.strip().lower().startswith("digest"):
            chosen = params
            break
    if chosen is None:
        return None
    realm, nonce = chosen.get("realm", ""), chosen.get("nonce", "")
    alg = chosen.get("algorithm", "MD5")
    ha1 = md5(f"{user}:{realm}:{password}")
    cnonce = "%016x" % random.getrandbits(64)
    if alg.upper() == "MD5-SESS":
        ha1 = md5(f"{ha1}:{nonce}:{cnonce}")
    ha2 = md5(f"{method}:{uri}")
    qops = [q.strip() for q in chosen.get("qop", "").split(",") if q.strip()]
    parts = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in qops:
        nc = "00000001"
        resp = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        parts += [f'response="{resp}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        resp = md5(f"{ha1}:{nonce}:{ha2}")
        parts.append(f'response="{resp}"')
    parts.append(f"algorithm={alg}")
    if "opaque" in chosen:
        parts.append(f'opaque="{chosen["opaque"]}"')
    return f"{header_name}: Digest " + ", ".join(parts)


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(1, int(len(v) * p / 100 + 0.999999))
    return v[min(k, len(v)) - 1]


class Driver:
    def __init__(self, a):
        self.a = a
        self.server = (a.server_host, a.server_port)
        self.ip = a.local_ip
        self.tag_base = "%08x" % random.getrandbits(32)
        self.caller = self._sock(a.caller_port)
        self.callee = self._sock(a.callee_port)
        self.timers = []  # heap of (time, seq, fn)
        self.tseq = 0
        self.counters = {"retransmissions": 0, "unexpected": 0, "server_byes": 0,
                         "callee_invites": 0, "callee_invite_retrans": 0, "callee_no_ack": 0,
                         "requests_answered": 0}
        self.calls = {}       # caller-side Call-ID -> call dict
        self.callee_dialogs = {}  # callee-side (Call-ID, to-tag) -> dialog dict
        self.callee_by_branch = {}  # INVITE branch -> dialog (retransmissions)
        self.next_b = 0
        self.reg_state = {"cseq": -1, "final": None}

    def _sock(self, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.bind((self.a.local_ip, port))
        s.setblocking(False)
        return s

    # ------------------------------------------------------------ plumbing
    def at(self, t, fn):
        self.tseq += 1
        heapq.heappush(self.timers, (t, self.tseq, fn))

    def send(self, sock, data, dest):
        try:
            sock.sendto(data.encode() if isinstance(data, str) else data, dest)
        except OSError as e:
            print(f"setup_calls: sendto {dest}: {e}", file=sys.stderr)

    def poll(self, timeout):
        """Run due timers, wait up to `timeout` for datagrams and handle them."""
        t = now()
        while self.timers and self.timers[0][0] <= t:
            _, _, fn = heapq.heappop(self.timers)
            fn()
        if self.timers:
            timeout = max(0.0, min(timeout, self.timers[0][0] - now()))
        r, _, _ = select.select([self.caller, self.callee], [], [], timeout)
        for s in r:
            for _ in range(256):
                try:
                    data, src = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if not data.strip():
                    continue  # keep-alive
                try:
                    msg = Msg(data)
                except Exception:  # noqa: BLE001 - a broken datagram is not fatal
                    self.counters["unexpected"] += 1
                    continue
                if s is self.caller:
                    self.on_caller(msg, src)
                else:
                    self.on_callee(msg, src)

    def retransmitting(self, sock, data, dest, done, invite):
        """Send `data` and resend it (T1 doubling, capped at T2 unless INVITE)
        until done() or Timer B/F; returns nothing, the caller checks done()."""
        self.send(sock, data, dest)
        start = now()

        def again(interval):
            if done() or now() - start >= TIMER_B:
                return
            self.counters["retransmissions"] += 1
            self.send(sock, data, dest)
            nxt = interval * 2 if invite else min(interval * 2, T2)
            self.at(now() + nxt, lambda: again(nxt))

        self.at(start + T1, lambda: again(T1))

    # ------------------------------------------------------------ registration
    def register(self):
        a = self.a
        uri = f"sip:{a.server_host}:{a.server_port}"
        aor = f"sip:{a.ext}@{a.server_host}:{a.server_port}"
        call_id = f"reg-{self.tag_base}@{self.ip}"
        state = {"cseq": 0, "final": None, "auth": None, "tries": 0}

        def send_reg():
            state["cseq"] += 1
            branch = "z9hG4bK-r%s-%d" % (self.tag_base, state["cseq"])
            lines = [f"REGISTER {uri} SIP/2.0",
                     f"Via: SIP/2.0/UDP {self.ip}:{a.callee_port};branch={branch};rport",
                     "Max-Forwards: 70",
                     f"From: <{aor}>;tag=r{self.tag_base}",
                     f"To: <{aor}>",
                     f"Call-ID: {call_id}",
                     f"CSeq: {state['cseq']} REGISTER",
                     f"Contact: <sip:{a.ext}@{self.ip}:{a.callee_port}>",
                     "Expires: 3600",
                     "User-Agent: tsunagu-calls-bench"]
            if state["auth"]:
                lines.append(state["auth"])
            lines += ["Content-Length: 0", "", ""]
            state["final"] = None
            seq = state["cseq"]
            self.retransmitting(self.callee, "\r\n".join(lines), self.server,
                                lambda: state["final"] is not None or state["cseq"] != seq, False)

        self.reg_state = state
        self.reg_send = send_reg
        send_reg()
        deadline = now() + 40
        while now() < deadline:
            self.poll(0.05)
            f = state["final"]
            if f is None:
                continue
            if f.status in (401, 407) and state["tries"] < 2 and a.password is not None:
                state["tries"] += 1
                hdr = "www-authenticate" if f.status == 401 else "proxy-authenticate"
                name = "Authorization" if f.status == 401 else "Proxy-Authorization"
                state["auth"] = digest_header(f.raw(hdr), "REGISTER", uri,
                                              a.ext, a.password, name)
                if not state["auth"]:
                    print("setup_calls: no MD5 digest challenge in the 401", file=sys.stderr)
                    return False
                send_reg()
                continue
            if 200 <= f.status < 300:
                return True
            print(f"setup_calls: REGISTER failed: {f.start}", file=sys.stderr)
            return False
        print("setup_calls: REGISTER timed out", file=sys.stderr)
        return False

    # ------------------------------------------------------------ caller side
    def start_call(self, i):
        a = self.a
        call_id = f"c{i}-{self.tag_base}@{self.ip}"
        a_port = a.rtp_base + i
        ruri = f"sip:{a.did}@{a.server_host}:{a.server_port}"
        c = {"i": i, "call_id": call_id, "a_port": a_port, "ruri": ruri,
             "from": f"<sip:+1555{i:07d}@{self.ip}:{a.caller_port}>;tag=f{self.tag_base}{i}",
             "to": f"<sip:{a.did}@{a.server_host}:{a.server_port}>",
             "state": "calling", "t0": now(), "final": None, "invite_cseq": 1,
             "relay": None, "ack": None, "route": [], "target": None, "bye_final": None,
             "auth": None}
        self.calls[call_id] = c
        self.send_invite(c)

    def send_invite(self, c):
        a = self.a
        c["branch"] = "z9hG4bK-i%s-%d-%d" % (self.tag_base, c["i"], c["invite_cseq"])
        sdp = make_sdp(self.ip, c["a_port"], 1000 + c["i"])
        lines = [f"INVITE {c['ruri']} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.ip}:{a.caller_port};branch={c['branch']};rport",
                 "Max-Forwards: 70",
                 f"From: {c['from']}",
                 f"To: {c['to']}",
                 f"Call-ID: {c['call_id']}",
                 f"CSeq: {c['invite_cseq']} INVITE",
                 f"Contact: <sip:carrier@{self.ip}:{a.caller_port}>",
                 "User-Agent: tsunagu-calls-bench"]
        if c["auth"]:
            lines.append(c["auth"])
        lines += ["Content-Type: application/sdp", f"Content-Length: {len(sdp)}", "", sdp]
        c["provisional"] = False
        cseq = c["invite_cseq"]
        self.retransmitting(self.caller, "\r\n".join(lines), self.server,
                            lambda: c["provisional"] or c["final"] is not None or c["invite_cseq"] != cseq,
                            True)

        def timeout():
            if c["state"] == "calling" and c["invite_cseq"] == cseq:
                c["state"] = "failed"
                c["why"] = "timeout"
        self.at(now() + TIMER_B, timeout)

    def ack_for(self, c, resp):
        """ACK for a non-2xx final response (same branch, hop-by-hop)."""
        a = self.a
        return "\r\n".join([
            f"ACK {c['ruri']} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.ip}:{a.caller_port};branch={c['branch']};rport",
            "Max-Forwards: 70",
            f"From: {c['from']}",
            f"To: {resp.get('to')}",
            f"Call-ID: {c['call_id']}",
            f"CSeq: {c['invite_cseq']} ACK",
            "Content-Length: 0", "", ""])

    def in_dialog(self, c, method, cseq, branch):
        a = self.a
        lines = [f"{method} {c['target']} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.ip}:{a.caller_port};branch={branch};rport",
                 "Max-Forwards: 70"]
        lines += [f"Route: {r}" for r in c["route"]]
        lines += [f"From: {c['from']}", f"To: {c['to_tagged']}", f"Call-ID: {c['call_id']}",
                  f"CSeq: {cseq} {method}",
                  f"Contact: <sip:carrier@{self.ip}:{a.caller_port}>",
                  "Content-Length: 0", "", ""]
        return "\r\n".join(lines)

    def next_hop(self, c):
        """Where in-dialog requests go: first Route (loose routing) or the target."""
        if c["route"]:
            return hostport(uri_of(c["route"][0]))
        return hostport(c["target"])

    def on_caller(self, m, src):
        if m.is_request:
            self.answer_request(self.caller, m, src, side="caller")
            return
        c = self.calls.get(m.get("call-id") or "")
        if c is None:
            self.counters["unexpected"] += 1
            return
        num, meth = m.cseq()
        if meth == "INVITE":
            if num != c["invite_cseq"]:
                return
            if m.status < 200:
                c["provisional"] = True
                return
            if 200 <= m.status < 300:
                if c["ack"] is None:
                    c["final"] = m
                    c["to_tagged"] = m.get("to")
                    rr = m.all("record-route")
                    c["route"] = list(reversed(rr))
                    contact = m.get("contact")
                    c["target"] = uri_of(contact) if contact else c["ruri"]
                    c["relay"] = sdp_media(m.body)
                    c["t_setup"] = now() - c["t0"]
                    c["state"] = "up" if c["relay"] else "failed"
                    if not c["relay"]:
                        c["why"] = "no SDP in 200"
                    c["ack"] = self.in_dialog(c, "ACK", c["invite_cseq"],
                                              "z9hG4bK-a%s-%d" % (self.tag_base, c["i"]))
                self.send(self.caller, c["ack"], self.next_hop(c))  # also for retransmitted 200s
                return
            # non-2xx final
            self.send(self.caller, self.ack_for(c, m), self.server)
            if c["final"] is not None:
                return
            if m.status in (401, 407) and c["auth"] is None and self.a.caller_password is not None:
                hdr = "www-authenticate" if m.status == 401 else "proxy-authenticate"
                name = "Authorization" if m.status == 401 else "Proxy-Authorization"
                c["auth"] = digest_header(m.raw(hdr), "INVITE", c["ruri"], self.a.caller_user,
                                          self.a.caller_password, name)
                if c["auth"]:
                    c["invite_cseq"] += 1
                    self.send_invite(c)
                    return
            c["final"] = m
            c["state"] = "failed"
            c["why"] = m.start.split(" ", 1)[1] if " " in m.start else m.start
        elif meth == "BYE":
            if m.status >= 200 and c["bye_final"] is None:
                c["bye_final"] = m
                c["t_bye"] = now() - c["bye_t0"]

    # ------------------------------------------------------------ callee side
    def response(self, req, status, reason, to_tag=None, extra=(), body=""):
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for n, v in req.headers if n == "via"]
        lines += [f"Record-Route: {v}" for n, v in req.headers if n == "record-route"]
        to = req.get("to") or ""
        if to_tag and ";tag=" not in to.lower().replace(" ", ""):
            to += f";tag={to_tag}"
        lines += [f"From: {req.get('from')}", f"To: {to}", f"Call-ID: {req.get('call-id')}",
                  f"CSeq: {req.get('cseq')}"]
        lines += list(extra)
        if body:
            lines += ["Content-Type: application/sdp", f"Content-Length: {len(body)}", "", body]
        else:
            lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines)

    def reply_dest(self, req, src):
        """Responses go back to the source (rport / symmetric), as RFC 3581 servers expect."""
        return src

    def on_callee(self, m, src):
        if not m.is_request:
            if m.cseq()[1] == "REGISTER" and m.status >= 200:
                st = self.reg_state
                if m.cseq()[0] == st["cseq"] and st["final"] is None:
                    st["final"] = m
            return
        if m.method == "INVITE" and not m.tag("to"):
            br = m.branch()
            d = self.callee_by_branch.get(br)
            if d is not None:  # retransmission: resend the last response
                self.counters["callee_invite_retrans"] += 1
                self.send(self.callee, d["last_resp"], src)
                return
            self.counters["callee_invites"] += 1
            j = self.next_b
            self.next_b += 1
            b_port = self.a.rtp_base + self.a.calls + j
            tag = "t%s%d" % (self.tag_base, j)
            d = {"j": j, "b_port": b_port, "relay": sdp_media(m.body), "acked": False,
                 "call_id": m.get("call-id"), "tag": tag, "byed": False}
            contact = [f"Contact: <sip:{self.a.ext}@{self.ip}:{self.a.callee_port}>"]
            ringing = self.response(m, 180, "Ringing", tag, contact)
            self.send(self.callee, ringing, src)
            sdp = make_sdp(self.ip, b_port, 5000 + j)
            ok = self.response(m, 200, "OK", tag, contact, sdp)
            d["last_resp"] = ok
            self.callee_by_branch[br] = d
            self.callee_dialogs[(d["call_id"], tag)] = d
            if d["relay"] is None:
                d["bad_sdp"] = True
            self.retransmitting(self.callee, ok, src, lambda: d["acked"], False)

            def no_ack():
                if not d["acked"]:
                    self.counters["callee_no_ack"] += 1
            self.at(now() + TIMER_B + 1, no_ack)
            return
        d = self.callee_dialogs.get((m.get("call-id"), m.tag("to")))
        if m.method == "ACK":
            if d is not None:
                d["acked"] = True
            return
        if m.method == "BYE" and d is not None:
            d["byed"] = True
        self.answer_request(self.callee, m, src, side="callee", dialog=d)

    def answer_request(self, sock, m, src, side, dialog=None):
        """Generic in-dialog UAS: 200 to BYE/OPTIONS/INFO/UPDATE/NOTIFY, re-INVITE
        answered with the same SDP, CANCEL 200, anything else 200 too."""
        if m.method == "ACK":
            return
        self.counters["requests_answered"] += 1
        if side == "caller" and m.method == "BYE":
            self.counters["server_byes"] += 1
            c = self.calls.get(m.get("call-id") or "")
            if c is not None and c["state"] == "up":
                c["state"] = "ended-by-server"
        body = ""
        if m.method in ("INVITE", "UPDATE") and m.body.strip():
            if side == "callee" and dialog is not None:
                body = make_sdp(self.ip, dialog["b_port"], 5000 + dialog["j"])
            elif side == "caller":
                c = self.calls.get(m.get("call-id") or "")
                if c is not None:
                    body = make_sdp(self.ip, c["a_port"], 1000 + c["i"])
        contact = []
        if m.method in ("INVITE", "UPDATE"):
            port = self.a.callee_port if side == "callee" else self.a.caller_port
            contact = [f"Contact: <sip:{self.a.ext if side == 'callee' else 'carrier'}@{self.ip}:{port}>"]
        self.send(sock, self.response(m, 200, "OK", None, contact, body), src)

    # ------------------------------------------------------------ phases
    def setup_all(self):
        a = self.a
        t_start = now()
        started = 0
        deadline = t_start + a.calls / a.rate + TIMER_B + 30
        interval = 1.0 / a.rate
        while now() < deadline:
            pending = sum(1 for c in self.calls.values() if c["state"] == "calling")
            due = int((now() - t_start) / interval) + 1
            while started < a.calls and started < due and pending < a.window:
                self.start_call(started)
                started += 1
                pending += 1
            if started == a.calls and pending == 0:
                break
            self.poll(0.002)
        # Give the callee side a moment to see the last ACKs.
        end = now() + 0.5
        while now() < end:
            self.poll(0.02)
        return now() - t_start

    def teardown_all(self):
        a = self.a
        up = [c for c in self.calls.values() if c["state"] == "up"]
        t_start = now()
        interval = 1.0 / a.bye_rate
        k = 0
        deadline = t_start + len(up) / a.bye_rate + TIMER_B + 5
        while now() < deadline:
            pending = sum(1 for c in up[:k] if c["bye_final"] is None and now() - c["bye_t0"] < TIMER_B)
            due = int((now() - t_start) / interval) + 1
            while k < len(up) and k < due and pending < a.window:
                c = up[k]
                c["bye_t0"] = now()
                bye = self.in_dialog(c, "BYE", c["invite_cseq"] + 1,
                                     "z9hG4bK-b%s-%d" % (self.tag_base, c["i"]))
                self.retransmitting(self.caller, bye, self.next_hop(c),
                                    lambda c=c: c["bye_final"] is not None, False)
                k += 1
                pending += 1
            if k == len(up) and all(c["bye_final"] is not None for c in up):
                break
            self.poll(0.002)
        end = now() + 0.3
        while now() < end:
            self.poll(0.02)
        return up, now() - t_start

    def hold(self):
        a = self.a
        end = now() + a.hold_max
        while now() < end:
            if a.release_file and os.path.exists(a.release_file):
                return "released"
            self.poll(0.05)
        return "hold-max"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="HOST:PORT of the SIP server (UDP)")
    p.add_argument("--local-ip", default="127.0.0.1")
    p.add_argument("--caller-port", type=int, required=True, help="SIP port of the caller (trunk)")
    p.add_argument("--callee-port", type=int, required=True, help="SIP port of the callee (extension)")
    p.add_argument("--ext", default="1001", help="extension the callee registers as")
    p.add_argument("--password", default=None, help="the extension's password (digest)")
    p.add_argument("--caller-user", default="carrier", help="digest user if INVITEs are challenged")
    p.add_argument("--caller-password", default=None, help="digest password if INVITEs are challenged")
    p.add_argument("--did", default="5550100", help="number the caller dials")
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--rate", type=float, default=200, help="call setups started per second")
    p.add_argument("--bye-rate", type=float, default=400, help="BYEs sent per second")
    p.add_argument("--window", type=int, default=100, help="most setups (or BYEs) in flight")
    p.add_argument("--rtp-base", type=int, required=True,
                   help="caller RTP ports rtp_base..+calls-1, callee ports rtp_base+calls..+2*calls-1")
    p.add_argument("--out", required=True, help="endpoints file for rtpload")
    p.add_argument("--stats", required=True, help="key=value results (appended)")
    p.add_argument("--calls-out", default=None,
                   help="also write one line per call set up: Call-ID, From tag, To tag (before --out appears)")
    p.add_argument("--release-file", default=None, help="tear down when this file exists")
    p.add_argument("--hold-max", type=float, default=120, help="longest hold before teardown, s")
    p.add_argument("--max-seconds", type=float, default=600, help="hard limit for the whole run")
    a = p.parse_args()
    host, _, port = a.server.rpartition(":")
    a.server_host, a.server_port = host, int(port)
    if not (0 < a.calls <= 20000) or a.rate <= 0 or a.bye_rate <= 0 or a.window < 1:
        p.error("bad --calls/--rate/--bye-rate/--window")
    if a.rtp_base < 1024 or a.rtp_base + 2 * a.calls > 65535:
        p.error("RTP ports out of range")
    import signal
    signal.signal(signal.SIGALRM, lambda *_: (print("setup_calls: --max-seconds reached", file=sys.stderr),
                                              os._exit(3)))
    signal.alarm(int(a.max_seconds))

    d = Driver(a)
    if not d.register():
        with open(a.stats, "a") as f:
            f.write("phase=setup registered=0\n")
        return 2
    setup_s = d.setup_all()
    up = [c for c in d.calls.values() if c["state"] == "up"]
    failed = [c for c in d.calls.values() if c["state"] != "up"]
    legs_b = [x for x in d.callee_dialogs.values() if x["relay"] is not None and x["acked"]]
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("# local_rtp_port relay_ip relay_port side\n")
        for c in sorted(up, key=lambda c: c["i"]):
            f.write(f"{c['a_port']} {c['relay'][0]} {c['relay'][1]} A\n")
        for x in sorted(legs_b, key=lambda x: x["j"]):
            f.write(f"{x['b_port']} {x['relay'][0]} {x['relay'][1]} B\n")
    if a.calls_out:
        # For a media server's own control commands (rtpengine's "play media"):
        # Call-ID, the caller's From tag and the answering side's To tag.
        with open(a.calls_out + ".tmp", "w") as f:
            for c in sorted(up, key=lambda c: c["i"]):
                m = re.search(r";\s*tag=([^;>\s]+)", c.get("to_tagged") or "", re.I)
                f.write("%s %s %s\n" % (c["call_id"], "f%s%d" % (d.tag_base, c["i"]), m.group(1) if m else "-"))
        os.replace(a.calls_out + ".tmp", a.calls_out)
    os.replace(tmp, a.out)
    times = [c["t_setup"] * 1000 for c in up]
    whys = {}
    for c in failed:
        whys[c.get("why", c["state"])] = whys.get(c.get("why", c["state"]), 0) + 1
    relay_ips = sorted({c["relay"][0] for c in up} | {x["relay"][0] for x in legs_b})
    line = ("phase=setup registered=1 calls=%d up=%d failed=%d callee_legs=%d callee_invites=%d "
            "setup_s=%.2f setup_rate=%.0f setup_p50_ms=%.2f setup_p99_ms=%.2f retrans=%d unexpected=%d "
            "relay_ips=%s fail_reasons=%s" % (
                a.calls, len(up), len(failed), len(legs_b), d.counters["callee_invites"], setup_s,
                len(up) / setup_s if setup_s > 0 else 0, pct(times, 50), pct(times, 99),
                d.counters["retransmissions"], d.counters["unexpected"], ",".join(relay_ips) or "-",
                ";".join(f"{k.replace(' ', '_')}:{v}" for k, v in whys.items()) or "-"))
    with open(a.stats, "a") as f:
        f.write(line + "\n")
    print("setup_calls: " + line, file=sys.stderr, flush=True)

    how = d.hold()
    r0 = d.counters["retransmissions"]
    up, bye_s = d.teardown_all()
    bye_ok = sum(1 for c in up if c["bye_final"] is not None and 200 <= c["bye_final"].status < 300)
    bye_times = [c["t_bye"] * 1000 for c in up if c.get("t_bye") is not None]
    callee_byes = sum(1 for x in d.callee_dialogs.values() if x["byed"])
    line = ("phase=teardown hold_end=%s byes=%d bye_ok=%d bye_failed=%d callee_byes=%d teardown_s=%.2f "
            "bye_p99_ms=%.2f retrans=%d server_byes=%d callee_no_ack=%d unexpected=%d" % (
                how, len(up), bye_ok, len(up) - bye_ok, callee_byes, bye_s, pct(bye_times, 99),
                d.counters["retransmissions"] - r0, d.counters["server_byes"], d.counters["callee_no_ack"],
                d.counters["unexpected"]))
    with open(a.stats, "a") as f:
        f.write(line + "\n")
    print("setup_calls: " + line, file=sys.stderr, flush=True)
    return 0 if (not failed and bye_ok == len(up)) else 1


if __name__ == "__main__":
    sys.exit(main())
