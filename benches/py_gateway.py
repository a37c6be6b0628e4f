#!/usr/bin/env python3
"""A plain Python 3 stdlib lookup gateway: the baseline for benches/gateway.sh.

It answers `POST /v4/hash` like `hashsweep serve` does for digests already in Redis, reading the
values hashsweep stored there (keys `hashsweep:v1:<algo>:<lowercase hex>`, values compact JSON
like {"c":5,"t":-1} or {"c":1,"t":3,"d":"id"}), with one MGET per request. No upstream: a digest
that is not in Redis is left out of the answer and counted (GET /metrics shows the counters), so
the benchmark can check that every lookup was a hit.

    py_gateway.py --redis-port P --tokens TOKFILE [--listen 127.0.0.1:0]

TOKFILE has lines `NAME TOKEN`, like the one given to `hashsweep serve`. Prints
`py_gateway listening on http://HOST:PORT` on stdout once ready. http.server's
ThreadingHTTPServer, one thread (and one Redis connection) per client connection, HTTP/1.1
keep-alive; nothing beyond the standard library.
"""

import argparse
import json
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY_PREFIX = "hashsweep:v1:"
ALGO_BY_LEN = {32: "md5", 40: "sha1", 64: "sha256"}
HEX = re.compile(r"[0-9a-f]+")
MAX_BODY = 1 << 20
MAX_HASHES = 1000


class RespError(Exception):
    pass


class Redis:
    """A minimal RESP2 client: enough for MGET (and PING)."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb", buffering=1 << 16)

    def command(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.rfile.readline()
        if not line:
            raise RespError("connection closed by Redis")
        kind, rest = line[:1], line[1:-2]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rfile.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        if kind == b"+":
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"-":
            raise RespError(rest.decode(errors="replace"))
        raise RespError(f"unexpected reply {line!r}")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.hits = 0
        self.misses = 0
        self.refused = 0

    def add(self, hits, misses):
        with self.lock:
            self.requests += 1
            self.hits += hits
            self.misses += misses


def load_tokens(path):
    tokens = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, token = line.split(None, 1)
            tokens[token.strip()] = name
    return tokens


def make_handler(redis_host, redis_port, tokens, stats):
    local = threading.local()

    def redis():
        r = getattr(local, "redis", None)
        if r is None:
            r = local.redis = Redis(redis_host, redis_port)
        return r

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        server_version = "py_gateway"
        sys_version = ""

        def log_message(self, fmt, *args):  # quiet
            pass

        def reply(self, status, obj=None, text=None, ctype="application/json"):
            body = (text if text is not None else json.dumps(obj, separators=(",", ":"))).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, status, code, message):
            self.reply(status, {"error": {"code": code, "messages": [message]}})

        def do_GET(self):
            if self.path == "/metrics":
                with stats.lock:
                    text = (
                        f"pygw_requests_total {stats.requests}\n"
                        f"pygw_cache_hits_total {stats.hits}\n"
                        f"pygw_cache_misses_total {stats.misses}\n"
                        f"pygw_refused_total {stats.refused}\n"
                    )
                self.reply(200, text=text, ctype="text/plain")
            else:
                self.error(404, 404000, "Endpoint not found")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/v4/hash":
                self.rfile.read(length)
                return self.error(404, 404000, "Endpoint not found")
            if tokens.get(self.headers.get("apikey", "")) is None:
                self.rfile.read(length)
                with stats.lock:
                    stats.refused += 1
                return self.error(401, 401006, "Invalid apikey")
            if length > MAX_BODY:
                self.close_connection = True
                return self.error(400, 400063, "Request body larger than 1 MiB")
            try:
                req = json.loads(self.rfile.read(length))
                hashes = req["hash"]
            except (ValueError, TypeError, KeyError):
                return self.error(400, 400060, "The `hash` field is required")
            if not isinstance(hashes, list):
                return self.error(400, 400061, "The `hash` field must be an array")
            if not hashes:
                return self.error(400, 400062, "The `hash` field is empty")
            if len(hashes) > MAX_HASHES:
                return self.error(400, 400063, "Exceeded maximum allowed hashes (1000)")
            if not all(isinstance(h, str) for h in hashes):
                return self.error(400, 400064, "A hash value is not valid")

            keys = []  # per hash: its Redis key, or None for a string that is not a hash
            for h in hashes:
                low = h.lower()
                algo = ALGO_BY_LEN.get(len(low))
                keys.append(KEY_PREFIX + algo + ":" + low if algo and HEX.fullmatch(low) else None)
            distinct = list(dict.fromkeys(k for k in keys if k is not None))
            try:
                values = redis().command("MGET", *distinct) if distinct else []
            except (OSError, RespError) as e:
                local.redis = None
                return self.error(503, 503000, f"The verdict store is unreachable: {e}")
            found = {}
            for k, v in zip(distinct, values):
                if v is not None:
                    found[k] = json.loads(v)
            data = []
            for h, k in zip(hashes, keys):
                if k is None:
                    data.append({"data_id": None, "hash": h.upper(), "scan_result_i": 5, "total_detected_avs": -1})
                    continue
                s = found.get(k)
                if s is None:
                    continue  # a miss: no upstream here; the client would ask again
                data.append({"data_id": s.get("d"), "scan_result_i": s["c"], "hash": h.upper(), "total_detected_avs": s["t"]})
            stats.add(len(found), len(distinct) - len(found))
            if distinct and not found:
                return self.error(503, 503000, "No answer in the verdict store")
            self.reply(200, {"data": data})

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--redis-host", default="127.0.0.1")
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--tokens", required=True)
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    tokens = load_tokens(a.tokens)
    Redis(a.redis_host, a.redis_port).command("PING")  # fail early if Redis is not there
    server = ThreadingHTTPServer((host, int(port)), make_handler(a.redis_host, a.redis_port, tokens, Stats()))
    server.daemon_threads = True
    h, prt = server.server_address[:2]
    print(f"py_gateway listening on http://{h}:{prt}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
