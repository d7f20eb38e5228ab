#!/usr/bin/env python3
"""Admin API benchmark: a 1,000-user CSV import end to end (upload to every
user able to register) and phonebook search at 100,000 entries (p50/p99),
against a running `tsunagu serve`. Standard library only.

The side-by-side figures: the same import through `tsunagu user import`
(the command line: the same database work without HTTP, checks or audit),
and the same searches as plain SQL `LIKE` queries on the server's own
SQLite file (what a phonebook without an index does). No other PBX on this
machine imports users or serves a phonebook, so there is no peer process.
"""

import base64, hashlib, hmac, http.client, json, os, random, socket, sqlite3, statistics, struct, subprocess, sys, tempfile, time

BIN = os.environ["TSUNAGU_BIN"]
WORK = tempfile.mkdtemp(prefix="tsunagu-bench-admin-")
RUNS = int(os.environ.get("RUNS", "3"))
USERS = int(os.environ.get("USERS", "1000"))
ENTRIES = int(os.environ.get("ENTRIES", "100000"))
SEARCHES = int(os.environ.get("SEARCHES", "2000"))


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def totp(secret_b32, t):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", t // 30), hashlib.sha1).digest()
    o = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


class Api:
    def __init__(self, port):
        self.port, self.cookie, self.csrf = port, "", ""
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None, ctype="application/json"):
        headers = {"Cookie": "tsunagu_session=" + self.cookie, "X-CSRF-Token": self.csrf}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = ctype
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        if r.getheader("Set-Cookie"):
            self.cookie = r.getheader("Set-Cookie").split(";")[0].split("=", 1)[1]
        return r.status, raw

    def json(self, method, path, body=None):
        st, raw = self.call(method, path, body)
        if st >= 300:
            sys.exit(f"{method} {path}: {st} {raw[:300]!r}")
        return json.loads(raw) if raw else None


def sign_in(api, name, otp):
    a = api.json("POST", "/api/v1/session", {"name": name, "password": otp})
    api.csrf = a["csrf"]
    e = api.json("POST", "/api/v1/me/totp")
    api.json("POST", "/api/v1/me/totp/confirm", {"code": totp(e["secret"], int(time.time()))})
    api.json("POST", "/api/v1/me/password", {"current": otp, "new": "benchmark-password-1"})


def register(sip_port, ext, password, realm):
    """One digest REGISTER over UDP; True on 200."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.bind(("127.0.0.1", 0))
    lp = s.getsockname()[1]
    call_id = "%x@bench" % random.getrandbits(64)

    def req(cseq, auth=""):
        return (f"REGISTER sip:127.0.0.1:{sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK{random.getrandbits(48):x}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:{ext}@127.0.0.1>;tag={random.getrandbits(32):x}\r\nTo: <sip:{ext}@127.0.0.1>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{ext}@127.0.0.1:{lp}>\r\nExpires: 60\r\n{auth}Content-Length: 0\r\n\r\n").encode()
    try:
        s.sendto(req(1), ("127.0.0.1", sip_port))
        ans = s.recv(65535).decode(errors="replace")
        if " 401 " not in ans.split("\r\n")[0]:
            return False
        ch = [l for l in ans.split("\r\n") if l.lower().startswith("www-authenticate:") and "MD5" in l.upper()] or \
             [l for l in ans.split("\r\n") if l.lower().startswith("www-authenticate:")]
        params = dict(p.strip().split("=", 1) for p in ch[0].split(" ", 2)[2].split(",") if "=" in p)
        nonce = params["nonce"].strip('"')
        r_realm = params.get("realm", realm).strip('"')
        uri = f"sip:127.0.0.1:{sip_port}"
        ha1 = hashlib.md5(f"{ext}:{r_realm}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
        qop = "qop" in params
        if qop:
            resp = hashlib.md5(f"{ha1}:{nonce}:00000001:abcdef:auth:{ha2}".encode()).hexdigest()
            auth = f'Authorization: Digest username="{ext}", realm="{r_realm}", nonce="{nonce}", uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="abcdef"\r\n'
        else:
            resp = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
            auth = f'Authorization: Digest username="{ext}", realm="{r_realm}", nonce="{nonce}", uri="{uri}", response="{resp}", algorithm=MD5\r\n'
        s.sendto(req(2, auth), ("127.0.0.1", sip_port))
        return " 200 " in s.recv(65535).decode(errors="replace").split("\r\n")[0]
    except (socket.timeout, KeyError, IndexError):
        return False
    finally:
        s.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


SURNAMES = [("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"), ("伊藤", "イトウ"), ("渡辺", "ワタナベ"), ("山本", "ヤマモト"),
            ("中村", "ナカムラ"), ("小林", "コバヤシ"), ("加藤", "カトウ"), ("吉田", "ヨシダ"), ("山田", "ヤマダ"), ("佐々木", "ササキ"), ("松本", "マツモト")]
GIVEN = [("太郎", "タロウ"), ("花子", "ハナコ"), ("一郎", "イチロウ"), ("美咲", "ミサキ"), ("健太", "ケンタ"), ("陽子", "ヨウコ"), ("翔", "ショウ"), ("愛", "アイ")]
DEPTS = ["総務課", "市民課", "税務課", "福祉課", "防災課", "建設課", "教育委員会", "水道局"]


def main():
    sip, http_port = free_port(socket.SOCK_DGRAM), free_port()
    data = os.path.join(WORK, "data")
    out = subprocess.run([BIN, "admin", "add", "--data", data, "bench", "--role", "system"], capture_output=True, text=True, check=True).stdout
    otp = [l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("one-time password: ")][0]
    env = dict(os.environ, TSUNAGU_LOG=os.environ.get("TSUNAGU_LOG", "warn"))
    log = open(os.path.join(WORK, "server.log"), "w")
    srv = subprocess.Popen([BIN, "serve", "--data", data, "--sip", f"127.0.0.1:{sip}", "--http", f"127.0.0.1:{http_port}"], stdout=log, stderr=log, env=env)
    try:
        deadline = time.time() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or srv.poll() is not None:
                sys.exit("the server did not start; see " + WORK)
            time.sleep(0.1)
        api = Api(http_port)
        sign_in(api, "bench", otp)
        for d in DEPTS:
            api.json("POST", "/api/v1/departments", {"name": d})
        realm = "tsunagu.local"

        # ---- 1,000-user import, end to end ----
        lines = []
        imports = []
        for run in range(RUNS):
            base = 40000 + run * 10000
            rows = [(str(base + i), "%s %s" % (SURNAMES[i % 14][0], GIVEN[i % 8][0]), DEPTS[i % 8], "pw-%08x" % random.getrandbits(32)) for i in range(USERS)]
            csv = "extension,name,department,password\r\n" + "".join(f"{e},{n},{d},{p}\r\n" for e, n, d, p in rows)
            t0 = time.perf_counter()
            st, raw = api.call("POST", "/api/v1/users/import", csv.encode("utf-8"), "text/csv")
            t_resp = time.perf_counter() - t0
            if st != 200:
                sys.exit(f"import: {st} {raw[:300]!r}")
            last = rows[-1]
            while not register(sip, last[0], last[3], realm):
                if time.perf_counter() - t0 > 30:
                    sys.exit("the last imported user could not register within 30 s")
                time.sleep(0.01)
            t_live = time.perf_counter() - t0
            # Every imported user registers (sampled: 50 of them).
            sample = random.sample(rows, 50)
            ok = sum(register(sip, e, p, realm) for e, _, _, p in sample)
            imports.append((t_resp, t_live, ok))
        # The command line, same kind of rows (extension,password,name), for comparison.
        cli_times = []
        for run in range(RUNS):
            base = 80000 + run * 10000
            path = os.path.join(WORK, f"cli-{run}.csv")
            with open(path, "w") as f:
                f.write("extension,password,name\n" + "".join(f"{base + i},pw-{random.getrandbits(32):08x},user {i}\n" for i in range(USERS)))
            t0 = time.perf_counter()
            subprocess.run([BIN, "user", "import", "--data", data, path], capture_output=True, check=True)
            cli_times.append(time.perf_counter() - t0)

        rss_before = int([l for l in open(f"/proc/{srv.pid}/status") if l.startswith("VmRSS")][0].split()[1]) // 1024
        # ---- phonebook at 100,000 entries ----
        rnd = random.Random(7)
        entries = []
        for i in range(ENTRIES):
            s_, g_ = SURNAMES[rnd.randrange(14)], GIVEN[rnd.randrange(8)]
            entries.append((f"{s_[0]} {g_[0]} {i}", f"{s_[1]} {g_[1]}", "03%08d" % i, DEPTS[i % 8]))
        csv = "name,kana,number,department,note\r\n" + "".join(f"{n},{k},{num},{d},\r\n" for n, k, num, d in entries)
        t0 = time.perf_counter()
        st, raw = api.call("POST", "/api/v1/phonebook/import", csv.encode(), "text/csv")
        t_pb_import = time.perf_counter() - t0
        if st != 200:
            sys.exit(f"phonebook import: {st} {raw[:300]!r}")
        queries = []
        for i in range(SEARCHES):
            k = i % 5
            if k == 0:
                queries.append(SURNAMES[rnd.randrange(14)][0])                        # kanji surname
            elif k == 1:
                kana = SURNAMES[rnd.randrange(14)][1]
                queries.append("".join(chr(ord(c) - 0x60) for c in kana))           # hiragana reading
            elif k == 2:
                queries.append("%05d" % rnd.randrange(100000))                      # number fragment
            elif k == 3:
                queries.append(DEPTS[rnd.randrange(8)])                             # department
            else:
                queries.append("該当なし%d" % i)                                      # no match: a full scan
        api.call("GET", "/api/v1/phonebook?q=warmup&limit=50")
        lat = []
        from urllib.parse import quote
        for q in queries:
            t0 = time.perf_counter()
            st, raw = api.call("GET", "/api/v1/phonebook?limit=50&q=" + quote(q))
            lat.append((time.perf_counter() - t0) * 1000)
            if st != 200:
                sys.exit(f"search {q}: {st}")
        # Plain SQL LIKE on the same rows (the server's own database file).
        db = sqlite3.connect(f"file:{os.path.join(data, 'tsunagu.db')}?mode=ro", uri=True)
        sql_lat = []
        for q in queries:
            like = f"%{q}%"
            t0 = time.perf_counter()
            db.execute("SELECT id, name, kana, number FROM phonebook WHERE deleted = 0 AND (name LIKE ? OR kana LIKE ? OR number LIKE ? OR department LIKE ?) ORDER BY kana, name LIMIT 50", (like, like, like, like)).fetchall()
            sql_lat.append((time.perf_counter() - t0) * 1000)
        rss = int([l for l in open(f"/proc/{srv.pid}/status") if l.startswith("VmRSS")][0].split()[1]) // 1024

        med = lambda xs: statistics.median(xs)
        lines.append(f"machine: {os.cpu_count()} cores; tsunagu {BIN}")
        lines.append(f"1. import of {USERS} users (CSV, UTF-8), {RUNS} runs; target < 5 s end to end")
        for i, (r, l, ok) in enumerate(imports):
            lines.append(f"   run {i + 1}: API answered in {r:.3f} s; last user registered {l:.3f} s after upload; {ok}/50 sampled users registered")
        lines.append(f"   median end to end: {med([l for _, l, _ in imports]):.3f} s   |   `tsunagu user import` (CLI, no HTTP/checks/audit): median {med(cli_times):.3f} s")
        lines.append(f"2. phonebook: {ENTRIES} entries imported through the API in {t_pb_import:.2f} s; {SEARCHES} searches (kanji, hiragana, digits, department, no match), limit 50")
        lines.append(f"   tsunagu API (HTTP round trip): p50 {pct(lat, 50):.2f} ms  p99 {pct(lat, 99):.2f} ms  max {max(lat):.2f} ms   (target p99 < 50 ms)")
        lines.append(f"   plain SQLite LIKE, in-process, no HTTP: p50 {pct(sql_lat, 50):.2f} ms  p99 {pct(sql_lat, 99):.2f} ms  max {max(sql_lat):.2f} ms   (ratio p99 {pct(sql_lat, 99) / max(pct(lat, 99), 1e-9):.1f}x)")
        lines.append(f"   server RSS: {rss_before} MiB before the phonebook import, {rss} MiB after the import and the searches")
        print("\n".join(lines))
    finally:
        srv.terminate()
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    main()
