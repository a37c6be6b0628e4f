#!/usr/bin/env python3
"""Soak test of `hashsweep serve` under idle and slow connections (issue 18).

    python3 benches/soak.py            # 300 silent + 200 slowloris for 30 s: ~50 s in all
    QUICK=1 python3 benches/soak.py    # 100 silent + 60 slowloris for 12 s: ~25 s in all

Everything is on 127.0.0.1: the upstream stand-in `mock-api` (crates/mock) and `hashsweep serve`
with a SQLite store in a temp dir and the gateway's default connection deadlines (unless
FIRST_TIMEOUT / HEADER_TIMEOUT / IDLE_TIMEOUT are set). One "normal endpoint" posts the same
10 SHA-256 digests (cached after the first request) every 200 ms on a fresh connection and
times each request (connect to last byte). Phases:
  baseline  BASE seconds (default 10, QUICK 5) of the normal endpoint alone: the reference.
  attack    DURATION seconds (default 30, QUICK 12) with SILENT connections that never send a
            byte and SLOW slowloris connections that send a request line and then one header
            byte every SLOW_EVERY seconds (default 1) and never finish their headers. Every
            attacker the gateway closes is opened again at once, so the pressure stays the same.
Reported: p50/p90/p99/max of the normal endpoint in the baseline, in the whole attack and in the
attack after the first timeout window (first-request timeout + 1 s, when the first attackers
have been closed), the ratio attack-after-window p99 / baseline p99, errors (non-200 or socket
errors), and how many attacker connections the gateway closed. Targets: no error, p99 under
100 ms after the first timeout window. Exit status 1 when a target is missed.

Environment: QUICK=1, SILENT=N, SLOW=N, DURATION=S, BASE=S, SLOW_EVERY=S, FIRST_TIMEOUT,
HEADER_TIMEOUT, IDLE_TIMEOUT (gateway flags, e.g. 10s), HASHSWEEP=PATH and MOCK_API=PATH (else
both are built with `cargo build --locked --release`), KEEP=1 (keep the temp dir). Run it under the
bench lock: flock /tmp/hashsweep-bench.lock python3 benches/soak.py
"""

import hashlib
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.environ.get("QUICK") == "1"
SILENT = int(os.environ.get("SILENT", 100 if QUICK else 300))
SLOW = int(os.environ.get("SLOW", 60 if QUICK else 200))
DURATION = float(os.environ.get("DURATION", 12 if QUICK else 30))
BASE = float(os.environ.get("BASE", 5 if QUICK else 10))
SLOW_EVERY = float(os.environ.get("SLOW_EVERY", 1))
EVERY = 0.2
TARGET_P99 = 0.100
TOKEN = "soak-endpoint-token-0123456789"
UPSTREAM_KEY = "soak-upstream-key-0123456789abcdef"


def build(env_name, args, path):
    if os.environ.get(env_name):
        return os.environ[env_name]
    print(f"== cargo build --locked --release {' '.join(args)}", file=sys.stderr)
    subprocess.run(["cargo", "build", "--locked", "--release", "--quiet", *args], cwd=REPO,
                   check=True)
    return os.path.join(REPO, "target", "release", path)


def wait_line(proc, pattern, what):
    """The first match of `pattern` in the process's stderr lines (up to 20 s)."""
    deadline = time.time() + 20
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(pattern, line)
        if m:
            # Keep draining so the pipe never fills.
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return m.group(1)
    sys.exit(f"soak.py: {what} did not start")


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fmt(xs):
    if not xs:
        return "no requests"
    ms = lambda v: f"{v * 1000:.1f}"
    return (f"n={len(xs)} p50 {ms(percentile(xs, 50))} ms, p90 {ms(percentile(xs, 90))} ms, "
            f"p99 {ms(percentile(xs, 99))} ms, max {ms(max(xs))} ms")


class Attackers(threading.Thread):
    """SILENT connections that send nothing and SLOW that trickle a never-ending header,
    each reopened as soon as the gateway closes it."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.addr = addr
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.closed = {"silent": 0, "slow": 0}
        self.open_errors = 0

    def open(self, kind):
        try:
            s = socket.create_connection(self.addr, timeout=5)
        except OSError:
            self.open_errors += 1
            return
        s.setblocking(False)
        if kind == "slow":
            try:
                s.send(b"POST /v4/hash HTTP/1.1\r\nHost: soak\r\nX-Slow: ")
            except OSError:
                pass
        self.sel.register(s, selectors.EVENT_READ, {"kind": kind, "next": time.time() + SLOW_EVERY})

    def run(self):
        for _ in range(SILENT):
            self.open("silent")
        for _ in range(SLOW):
            self.open("slow")
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.1):
                self.drop(key)
            now = time.time()
            for key in list(self.sel.get_map().values()):
                d = key.data
                if d["kind"] == "slow" and now >= d["next"]:
                    d["next"] = now + SLOW_EVERY
                    try:
                        key.fileobj.send(b"a")
                    except OSError:
                        self.drop(key)
        for key in list(self.sel.get_map().values()):
            self.sel.unregister(key.fileobj)
            key.fileobj.close()

    def drop(self, key):
        """The gateway closed (or answered) this one: count it and open another."""
        try:
            data = key.fileobj.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return
        self.sel.unregister(key.fileobj)
        key.fileobj.close()
        self.closed[key.data["kind"]] += 1
        if not self.stop.is_set():
            self.open(key.data["kind"])


def normal_endpoint(addr, body, until, samples, errors):
    """One request every EVERY seconds until `until`: (start time, seconds) per 200."""
    nxt = time.time()
    while nxt < until:
        time.sleep(max(0.0, nxt - time.time()))
        t0 = time.time()
        try:
            c = http.client.HTTPConnection(*addr, timeout=30)
            c.request("POST", "/v4/hash", body=body,
                      headers={"apikey": TOKEN, "content-type": "application/json"})
            r = c.getresponse()
            data = r.read()
            c.close()
            took = time.time() - t0
            if r.status != 200 or len(json.loads(data)["data"]) != 10:
                errors.append(f"HTTP {r.status}: {data[:200]!r}")
            else:
                samples.append((t0, took))
        except Exception as e:  # noqa: BLE001 - every failure is an error of the soak
            errors.append(f"{type(e).__name__}: {e}")
        nxt += EVERY


def main():
    # The attackers need SILENT + SLOW descriptors here.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    hashsweep = build("HASHSWEEP", ["--bin", "hashsweep"], "hashsweep")
    mock = build("MOCK_API", ["-p", "hashsweep-mock", "--bin", "mock-api"], "mock-api")
    tmp = tempfile.mkdtemp(prefix="hashsweep-soak.")
    procs = []
    try:
        env = dict(os.environ, METADEFENDER_APIKEY=UPSTREAM_KEY)
        m = subprocess.Popen([mock, "--listen", "127.0.0.1:0"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(m)
        mock_url = None
        for line in m.stdout:
            mm = re.search(r"listening on (http://\S+)", line)
            if mm:
                mock_url = mm.group(1)
                break
        if not mock_url:
            sys.exit("soak.py: mock-api did not start")
        with open(os.path.join(tmp, "tokens"), "w") as f:
            f.write(f"soak {TOKEN}\n")
        flags = []
        for env_name, flag in [("FIRST_TIMEOUT", "--first-request-timeout"),
                               ("HEADER_TIMEOUT", "--header-timeout"),
                               ("IDLE_TIMEOUT", "--idle-timeout")]:
            if os.environ.get(env_name):
                flags += [flag, os.environ[env_name]]
        gw = subprocess.Popen(
            [hashsweep, "serve", "--listen", "127.0.0.1:0", "--tokens", os.path.join(tmp, "tokens"),
             "--store", f"sqlite:{os.path.join(tmp, 'verdicts.sqlite')}", "--api-url", mock_url,
             "--log", "warn", *flags],
            env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(gw)
        url = wait_line(gw, r"listening on http://(\S+)", "hashsweep serve")
        host, port = url.rsplit(":", 1)
        addr = (host, int(port))
        first = os.environ.get("FIRST_TIMEOUT", "10s")
        window = float(first.rstrip("s")) + 1.0

        body = json.dumps({"hash": [hashlib.sha256(f"soak {i}".encode()).hexdigest()
                                    for i in range(10)]})
        warm_s, warm_e = [], []
        normal_endpoint(addr, body, time.time() + 0.01, warm_s, warm_e)
        if warm_e:
            sys.exit(f"soak.py: the warm-up request failed: {warm_e[0]}")

        print(f"== baseline: the normal endpoint alone for {BASE:.0f} s", file=sys.stderr)
        base_s, base_e = [], []
        normal_endpoint(addr, body, time.time() + BASE, base_s, base_e)

        print(f"== attack: {SILENT} silent + {SLOW} slowloris connections for {DURATION:.0f} s",
              file=sys.stderr)
        att = Attackers(addr)
        t_attack = time.time()
        att.start()
        att_s, att_e = [], []
        normal_endpoint(addr, body, t_attack + DURATION, att_s, att_e)
        att.stop.set()
        att.join()
        alive = gw.poll() is None

        base = [d for _, d in base_s]
        during = [d for _, d in att_s]
        after = [d for t, d in att_s if t - t_attack >= window]
        p99_after = percentile(after, 99)
        p99_base = percentile(base, 99)
        print(f"## hashsweep serve soak: {SILENT} silent + {SLOW} slowloris connections, "
              f"{DURATION:.0f} s, one request of 10 cached SHA-256 every {EVERY * 1000:.0f} ms")
        print(f"deadlines: first request {first}, header {os.environ.get('HEADER_TIMEOUT', '10s')}, "
              f"idle {os.environ.get('IDLE_TIMEOUT', '60s')} (first timeout window: {window:.0f} s)")
        print(f"baseline (no attack):           {fmt(base)}; errors {len(base_e)}")
        print(f"attack, whole:                  {fmt(during)}; errors {len(att_e)}")
        print(f"attack, after {window:.0f} s:              {fmt(after)}")
        print(f"ratio p99 after window / p99 baseline: {p99_after / p99_base:.2f}")
        print(f"attacker connections closed by the gateway: silent {att.closed['silent']}, "
              f"slowloris {att.closed['slow']} (reopened at once; {att.open_errors} failed to open)")
        print(f"gateway still running: {alive}")
        for e in (base_e + att_e)[:5]:
            print(f"  error: {e}")
        ok = not base_e and not att_e and alive and p99_after < TARGET_P99
        print(f"targets (no error, p99 after the window < {TARGET_P99 * 1000:.0f} ms): "
              f"{'met' if ok else 'MISSED'}")
        return 0 if ok else 1
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("KEEP") == "1":
            print(f"soak.py: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
