#!/usr/bin/env python3
"""Nightly sweeps of one endpoint against the stand-in service with a daily budget, as days pass.

    python3 benches/budget_nights.py                 # 10 nights, 100 hashes a day, 290 paths
    python3 benches/budget_nights.py --nights 7 --daily 300 --files 3000
    python3 benches/budget_nights.py --cap           # the budget as --budget N instead
    python3 benches/budget_nights.py --same-day      # no time passes between nights

Builds a tree (old data files, a few programs and scripts in download and temporary folders,
EICAR planted in an upload folder, a download folder and deep among the data), then each night
moves hashsweep's clock one more day ahead (HASHSWEEP_CLOCK_OFFSET), starts a fresh
`mock-api --daily-budget N` (a new day for the key) and runs `hashsweep scan --format json`
with one cache kept across nights. Prints per night: hashes asked (new digests / refreshes),
paths deferred, paths keeping a stale answer, detections found (cumulative), coverage (paths
with an answer), and the exit status; then checks that the sweep converged within
ceil(N/B) nights and stayed converged (exit 0, nothing deferred) and that no digest was asked
twice before every digest had been asked once. Needs the release binaries (built if missing):
target/release/hashsweep and target/release/mock-api (or HASHSWEEP=..., MOCK_API=...).
Everything is on 127.0.0.1.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binary(env, name, package):
    path = os.environ.get(env)
    if path:
        return path
    path = os.path.join(REPO, "target", "release", name)
    if not os.path.exists(path):
        subprocess.run(
            ["cargo", "build", "--release", "--quiet", "-p", package, "--bin", name],
            cwd=REPO,
            check=True,
        )
    return path


def make_tree(root, files):
    old = time.time() - 365 * 86400
    for i in range(files):
        p = os.path.join(root, "data", f"d{i % 50:02}", f"f{i:05}.dat")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(f"record {i}\n".encode() * (1 + i % 7))
        os.utime(p, (old, old))
    planted = {
        "home/ann/Downloads/tool": b"\x7fELF\x02\x01\x01" + b"planted program\n",
        "home/ann/Downloads/setup.exe": b"MZ\x90\x00" + b"planted installer\n",
        "var/tmp/.x/run.sh": b"#!/bin/sh\nplanted script\n",
        "srv/uploads/invoice.pdf.txt": EICAR,
        "home/ann/Downloads/eicar.com": EICAR,
        "data/d07/zz-deep.dat": EICAR,
    }
    for rel, body in planted.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(body)
    return len(planted)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mock(mock, key, daily, port):
    # The same address every night: the service is the same one (its answers are kept as
    # that URL's, and the key's budget under that URL).
    args = [mock, "--listen", f"127.0.0.1:{port}"]
    if daily is not None:
        args += ["--daily-budget", str(daily)]
    proc = subprocess.Popen(
        args,
        env={**os.environ, "METADEFENDER_APIKEY": key},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    if not m:
        proc.kill()
        sys.exit(f"budget_nights: mock-api did not start: {line!r} {proc.stderr.read()}")
    return proc, m.group(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=10)
    ap.add_argument("--daily", type=int, default=100, help="hashes a day")
    ap.add_argument("--files", type=int, default=284, help="data files in the tree")
    ap.add_argument("--same-day", action="store_true", help="no time passes between nights")
    ap.add_argument("--cap", action="store_true", help="use --budget N, not the key's budget")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    a = ap.parse_args()

    hashsweep = binary("HASHSWEEP", "hashsweep", "hashsweep")
    mock = binary("MOCK_API", "mock-api", "hashsweep-mock")
    tmp = tempfile.mkdtemp(prefix="hashsweep-nights.")
    tree = os.path.join(tmp, "endpoint")
    cache = os.path.join(tmp, "cache.sqlite")
    key = f"nights-key-{os.getpid()}"
    planted = make_tree(tree, a.files)
    port = free_port()
    print(
        f"tree: {a.files} old data files and {planted} planted files (EICAR at 3 paths); "
        f"budget {a.daily} hashes a {'run (--budget)' if a.cap else 'day (the key)'}"
    )
    print()
    print("| night | asked (new / refreshes) | paths deferred | paths stale | detections found | coverage | exit |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    asked_total = 0
    new_total = 0
    found = set()
    distinct = None
    plans = []
    converged_at = None
    failures = []
    for night in range(1, a.nights + 1):
        proc, url = start_mock(mock, key, None if a.cap else a.daily, port)
        try:
            cmd = [
                hashsweep,
                "scan",
                "--api-url",
                url,
                "--cache",
                cache,
                "--format",
                "json",
                # Relative paths: the sweep's order of risk sees the endpoint's own folders,
                # not where this script's temp directory happens to be.
                ".",
            ]
            if a.cap:
                cmd += ["--budget", str(a.daily)]
            env = {k: v for k, v in os.environ.items() if not k.startswith("HASHSWEEP_")}
            env["METADEFENDER_APIKEY"] = key
            if not a.same_day:
                env["HASHSWEEP_CLOCK_OFFSET"] = str(night * 86400)
            out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, timeout=600)
        finally:
            proc.kill()
            proc.wait()
        if out.returncode not in (0, 1, 3):
            sys.exit(f"budget_nights: night {night}: exit {out.returncode}\n{out.stderr.decode()}")
        report = json.loads(out.stdout)
        recs = report["records"]
        budget = report["summary"].get("budget") or {}
        paths = [r for r in recs if r.get("sha256")]
        distinct = len({r["sha256"] for r in paths})
        answered = [r for r in paths if r["verdict"] not in ("deferred", "error")]
        deferred = sum(1 for r in paths if r["verdict"] == "deferred")
        stale = sum(1 for r in paths if r.get("stale") is True)
        for r in recs:
            if r["verdict"] == "infected":
                found.add(r["path"])
        asked = budget.get("asked", 0)
        refreshed = budget.get("refreshed", 0)
        asked_total += asked
        new_total += asked - refreshed
        if refreshed and new_total < distinct and budget.get("never_asked", 0) > asked - refreshed:
            failures.append(f"night {night}: refreshed {refreshed} while digests never asked waited")
        if converged_at is None and deferred == 0 and out.returncode in (0, 1):
            converged_at = night
        elif converged_at is not None and (deferred or out.returncode not in (0, 1)):
            failures.append(f"night {night}: {deferred} paths deferred, exit {out.returncode} after converging")
        print(
            f"| {night} | {asked} ({asked - refreshed} / {refreshed}) | {deferred} | {stale} | "
            f"{len(found)} of 3 | "
            f"{100 * len(answered) / max(len(paths), 1):.1f}% ({len(answered)}/{len(paths)}) | "
            f"{out.returncode} |"
        )
        for line in out.stderr.decode().splitlines():
            if "needs" in line and "lookup" in line:
                plans.append(f"night {night}: {line}")
    print()
    print("\n".join(plans))
    print()
    expected = -(-distinct // a.daily)
    print(
        f"distinct digests: {distinct}; budget {a.daily} a "
        f"{'run' if a.cap else 'day'}: every path answered by night {converged_at} "
        f"(ceil(N/B) = {expected}); hashes asked over {a.nights} nights: {asked_total}, "
        f"of them new digests: {new_total}"
    )
    if converged_at is None or converged_at > expected:
        failures.append(f"did not converge within {expected} nights")
    for f in failures:
        print(f"FAILED: {f}")
    if a.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
