#!/usr/bin/env python3
"""Loading an NSRL RDSv3 minimal database as --known-good, against SQLite's own read of it.

    benches/nsrl.py            # 2 000 000 FILE rows (~330 000 distinct SHA-256), 3 runs each
    QUICK=1 benches/nsrl.py    # 200 000 rows, 2 runs: well under a minute once built

Builds a synthetic minimal database from tests/fixtures/nsrl/minimal.schema.sql (rows inserted
in random order; each digest in ~6 packages, the modern set's ratio of 440 M rows to 74 M
distinct SHA-256; application types cycling over a few, "Hacker Tool" among them), then times,
on a warm page cache unless COLD=1:

  baseline  sqlite3 DB "SELECT sha256 FROM FILE" > /dev/null  (SQLite scans the table, in rowid
            order: on disk, the order the rows were inserted)
  keyorder  sqlite3 DB "SELECT sha256 FROM FILE ORDER BY sha256" > /dev/null  (SQLite walks the
            primary key's covering index, as hashsweep does: no sort either)
  first     hashsweep scan --offline --known-good DB EMPTY_DIR with a fresh cache directory:
            reads the database and writes the index beside the cache
  later     the same command again: maps the index
  none      the same scan without --known-good (process start and cache open only)

and prints rows/s, first/baseline (target: within 3x), later loads in ms, the index's size per
distinct digest, peak RSS, and the projection for the full modern set (440 M rows, 74 M
distinct SHA-256). The whole run holds /tmp/hashsweep-bench.lock (flock), so no two
benchmarks run at once.

Rows are inserted in random order, so the key's index pages lie scattered in the file, which
costs a cold read (COLD=1) seeks that the table scan does not pay; VACUUM=1 rebuilds the file
first (index pages in key order), as a database written in key order would be.

Environment: QUICK=1, ROWS=N (FILE rows), RUNS=N, COLD=1 (drop the page cache before the
baseline and each first load: root only, slows everyone for a moment), VACUUM=1, HASHSWEEP=PATH (else
`cargo build --release`), KEEP=1 (keep the temp directory), TMPDIR. Needs sqlite3 (the CLI).
"""

import fcntl
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
QUICK = os.environ.get("QUICK") == "1"
ROWS = int(os.environ.get("ROWS", 200_000 if QUICK else 2_000_000))
RUNS = int(os.environ.get("RUNS", 2 if QUICK else 3))
COLD = os.environ.get("COLD") == "1"
ROWS_PER_DIGEST = 6  # 440 M rows / 74 M distinct SHA-256 in the modern set
FULL_ROWS, FULL_DISTINCT = 440e6, 74e6
TYPES = ["Operating System", "Utility", "Development", "Game", "Hacker Tool", "Graphics"]


def cpu_pressure():
    try:
        with open("/proc/pressure/cpu") as f:
            return f.readline().strip()
    except OSError:
        return "n/a"


def drop_caches():
    if COLD:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def binary():
    if os.environ.get("HASHSWEEP"):
        return os.environ["HASHSWEEP"]
    print("== cargo build --release", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "hashsweep"], cwd=REPO, check=True)
    return os.path.join(REPO, "target", "release", "hashsweep")


def build_db(path):
    with open(os.path.join(REPO, "tests", "fixtures", "nsrl", "minimal.schema.sql")) as f:
        ddl = f.read()
    c = sqlite3.connect(path)
    c.executescript(ddl)
    c.execute("PRAGMA journal_mode = OFF")
    c.execute("PRAGMA synchronous = OFF")
    c.execute(
        "INSERT INTO VERSION VALUES ('2025.03.1', 'modern', '2025-03-01', '2025-03-01', "
        "'synthetic benchmark set: not the official RDS')"
    )
    packages = max(ROWS // 400, 10)
    c.executemany(
        "INSERT INTO PKG VALUES (?, ?, '1.0', 1, 1, 'English', ?)",
        [(p, f"package {p}", TYPES[p % len(TYPES)]) for p in range(packages)],
    )
    rng = random.Random(14)
    distinct = ROWS // ROWS_PER_DIGEST
    digests = [os.urandom(32).hex().upper() for _ in range(distinct)]
    order = list(range(ROWS))
    rng.shuffle(order)

    def rows():
        for i in order:
            d = digests[i % distinct]
            pkg = (i * 7919) % packages
            yield (d, d[:40], d[:32], "00000000", f"file{i % 1000}.dll", i % 100000, pkg)

    c.executemany("INSERT INTO FILE VALUES (?, ?, ?, ?, ?, ?, ?)", rows())
    c.commit()
    if os.environ.get("VACUUM") == "1":
        c.execute("VACUUM")
    c.close()
    return distinct


def timed(cmd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=True)
    return time.perf_counter() - start


def main():
    for tool in ["sqlite3"]:
        if not shutil.which(tool):
            sys.exit(f"nsrl.py: '{tool}' is missing (apt-get install sqlite3)")
    lock = open("/tmp/hashsweep-bench.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    bin_ = binary()
    work = tempfile.mkdtemp(prefix="hashsweep-nsrl-")
    try:
        db = os.path.join(work, "RDS_2025.03.1_modern_minimal.db")
        t = time.perf_counter()
        distinct = build_db(db)
        print(f"built {db}: {ROWS} rows, {distinct} distinct SHA-256, "
              f"{os.path.getsize(db) / 2**20:.0f} MiB in {time.perf_counter() - t:.1f} s")
        empty = os.path.join(work, "empty")
        os.mkdir(empty)
        env = dict(os.environ)
        env.pop("HASHSWEEP_NO_CACHE", None)
        print(f"cpu pressure before: {cpu_pressure()}")

        def scan(cache_dir, known=True):
            cmd = [bin_, "scan", "--offline", "--format", "ndjson",
                   "--cache", os.path.join(cache_dir, "cache.sqlite")]
            if known:
                cmd += ["--known-good", db]
            return timed(cmd + [empty], env)

        base, keyorder, first, later, none = [], [], [], [], []
        # One untimed read first: the page cache holds the database for every warm case.
        timed(["sqlite3", db, "SELECT sha256 FROM FILE"])
        for run in range(RUNS):
            drop_caches()
            base.append(timed(["sqlite3", db, "SELECT sha256 FROM FILE"]))
            drop_caches()
            keyorder.append(timed(["sqlite3", db, "SELECT sha256 FROM FILE ORDER BY sha256"]))
            cache = os.path.join(work, f"cache{run}")
            os.mkdir(cache)
            drop_caches()
            first.append(scan(cache))
            for _ in range(3):
                later.append(scan(cache))
            none.append(scan(cache, known=False))
        rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        index = [f for f in os.listdir(os.path.join(work, "cache0")) if f.startswith("hashset-rds-")]
        index_bytes = os.path.getsize(os.path.join(work, "cache0", index[0]))
        print(f"cpu pressure after:  {cpu_pressure()}")

        b, k, f1, l, n = (statistics.median(x) for x in (base, keyorder, first, later, none))
        rate = ROWS / f1
        print(f"\n{'COLD' if COLD else 'warm'} page cache"
              f"{', vacuumed' if os.environ.get('VACUUM') == '1' else ''}, medians of {RUNS} runs "
              f"(later: {len(later)}):")
        print(f"  baseline  sqlite3 SELECT sha256 FROM FILE   {b:8.3f} s  ({ROWS / b:,.0f} rows/s)")
        print(f"  keyorder  ... ORDER BY sha256 (key order)   {k:8.3f} s  ({ROWS / k:,.0f} rows/s)")
        print(f"  first     load + index build                {f1:8.3f} s  ({rate:,.0f} rows/s)"
              f"  = {f1 / b:.2f}x baseline (target <= 3x), {f1 / k:.2f}x keyorder")
        print(f"  later     mapped index                      {l * 1000:8.1f} ms")
        print(f"  none      same scan, no --known-good        {n * 1000:8.1f} ms")
        print(f"  index     {index_bytes:,} bytes = {index_bytes / distinct:.1f} bytes per distinct SHA-256")
        print(f"  peak RSS of the children (the first load's)  {rss_mib:.0f} MiB")
        print(f"  projection for the full modern set ({FULL_ROWS / 1e6:.0f} M rows, "
              f"{FULL_DISTINCT / 1e6:.0f} M distinct): first load ~{FULL_ROWS / rate / 60:.1f} min "
              f"(sqlite3's read ~{FULL_ROWS / (ROWS / b) / 60:.1f} min), index "
              f"~{FULL_DISTINCT * index_bytes / distinct / 2**30:.1f} GiB")
    finally:
        if os.environ.get("KEEP") == "1":
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
