#!/usr/bin/env python3
"""Bytes per digest of `serve --prevalence` in Redis: MEMORY USAGE of a digest's prevalence key
after N hosts recorded it through the gateway's own script (src/gateway/prevalence.rs, RECORD).

    python3 benches/prevalence_bytes.py      # needs redis-server and redis-cli; ~5 s

Starts its own redis-server on a free loopback port (no persistence) and stops it. Prints one
line per N: the key in use (names: a sorted set; count: a HyperLogLog), its MEMORY USAGE (key,
value and Redis's per-key overhead) and what the gateway would report for N hosts.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src", "gateway", "prevalence.rs")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    script = re.search(r'pub const RECORD: &str = r"(.*?)";', open(SRC).read(), re.S).group(1)
    port = free_port()
    tmp = tempfile.mkdtemp()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def cli(*args, stdin=None):
            return subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin,
                                  capture_output=True, text=True).stdout.strip()
        for _ in range(100):
            if cli("PING") == "PONG":
                break
            time.sleep(0.05)
        version = cli("INFO", "server").split("redis_version:")[1].split()[0]
        print(f"redis {version}; host names like endpoint-00000 (14 bytes)")
        sha = cli("SCRIPT", "LOAD", script)
        hexd = "ab" * 32
        names = f"hashsweep:v1:hosts:sha256:{hexd}"
        count = f"hashsweep:v1:hostcount:sha256:{hexd}"
        print(f"{'hosts':>6}  {'key':<9} {'bytes':>6}  reported")
        for n in [1, 3, 16, 17, 100, 1000, 3000, 10000]:
            cli("FLUSHALL")
            cmds = "".join(f"EVALSHA {sha} 2 {names} {count} endpoint-{i:05d} 2592000 16\n"
                           for i in range(n))
            replies = cli(stdin=cmds).split()
            key = names if n <= 16 else count
            kind = "names" if n <= 16 else "count"
            print(f"{n:>6}  {kind:<9} {cli('MEMORY', 'USAGE', key):>6}  {replies[-1]}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
