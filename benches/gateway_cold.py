#!/usr/bin/env python3
"""Cold-lookup driver for benches/gateway.sh: misses that overlap between clients, posted once.

    gateway_cold.py --url URL --token TOKEN --digests FILE [--clients 8] [--copies 4]
                    [--batch 1000] [--seed 1]

FILE holds M distinct SHA-256 digests (one per line, none in the gateway's store yet; M a
multiple of --batch). The driver makes --copies copies of the list, copy k rotated by
k * batch / copies digests (250, 500, 750 for 4 copies of 1000-digest bodies), and cuts each copy
into bodies of --batch consecutive digests. Client c takes copy c % copies, and the clients
sharing a copy split its bodies into contiguous runs. So every digest is in exactly `copies`
bodies, of `copies` different clients, and at any moment the clients of a group (c = 4g..4g+3
with 8 clients) post bodies overlapping by 750/500/250 digests: the gateway sees the same
misses from several clients at once, which it must ask upstream once.

Each client is one thread with one keep-alive http.client connection; all start together
(a barrier), post their own bodies one after another, once, and stop. Answers are kept and
checked after the run (so that checking does not hold the GIL while others are timed): status
200, one entry per hash in order (upper-case), each unknown to the mock (scan_result_i 5).

Output: a readable summary on stderr and one line on stdout:
    RESULT clients=... copies=... distinct=... requests=... hashes=... wall_s=... rps=...
           hashes_per_s=... p50_ms=... p90_ms=... p99_ms=... max_ms=... non2xx=...
           errors=... bad_answers=... short_answers=...
(percentiles by nearest rank over all requests; `errors` = requests that got no answer)
Exit status 0 even when answers are wrong: the caller checks the RESULT fields.
"""

import argparse
import http.client
import json
import math
import sys
import threading
import time
import urllib.parse


def layout(digests, clients, copies, batch):
    """Per client, the list of bodies (lists of digests) it posts, in order."""
    m = len(digests)
    nbodies = m // batch
    per_copy = [[c for c in range(clients) if c % copies == k] for k in range(copies)]
    plan = [[] for _ in range(clients)]
    for k in range(copies):
        shift = k * batch // copies
        rotated = digests[shift:] + digests[:shift]
        bodies = [rotated[j * batch:(j + 1) * batch] for j in range(nbodies)]
        owners = per_copy[k]
        for i, c in enumerate(owners):
            lo, hi = i * nbodies // len(owners), (i + 1) * nbodies // len(owners)
            plan[c].extend(bodies[lo:hi])
    # Every digest in exactly `copies` bodies, of `copies` different clients.
    seen = {}
    for c, bodies in enumerate(plan):
        for body in bodies:
            assert len(set(body)) == len(body) == batch
            for d in body:
                seen.setdefault(d, []).append(c)
    assert len(seen) == m, "layout lost digests"
    for d, cs in seen.items():
        assert len(cs) == copies and len(set(cs)) == copies, f"{d} asked by {cs}"
    return plan


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--digests", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()

    digests = [line.strip() for line in open(a.digests) if line.strip()]
    if len(digests) % a.batch or not digests:
        sys.exit(f"gateway_cold.py: {len(digests)} digests, not a positive multiple of {a.batch}")
    if len(set(digests)) != len(digests):
        sys.exit("gateway_cold.py: the digests are not distinct")
    if not 1 <= a.copies <= a.clients or len(digests) // a.batch < math.ceil(a.clients / a.copies):
        sys.exit(f"gateway_cold.py: cannot give {a.clients} clients {a.copies} copies of "
                 f"{len(digests) // a.batch} bodies")
    plan = layout(digests, a.clients, a.copies, a.batch)
    payloads = [[json.dumps({"hash": b}, separators=(",", ":")).encode() for b in bodies]
                for bodies in plan]

    u = urllib.parse.urlsplit(a.url)
    headers = {"apikey": a.token, "Content-Type": "application/json"}
    # per client: list of (latency_s, status, body bytes or None, error)
    results = [[] for _ in range(a.clients)]
    finished = [0.0] * a.clients
    barrier = threading.Barrier(a.clients + 1)

    def client(c):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=a.timeout)
        conn.connect()
        out = results[c]
        barrier.wait()
        for payload in payloads[c]:
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v4/hash", body=payload, headers=headers)
                r = conn.getresponse()
                data = r.read()
                out.append((time.perf_counter() - t0, r.status, data, None))
            except (OSError, http.client.HTTPException) as e:
                out.append((time.perf_counter() - t0, 0, None, f"{type(e).__name__}: {e}"))
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=a.timeout)
        finished[c] = time.perf_counter()
        conn.close()

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(a.clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = max(finished) - start

    lat, non2xx, errors, bad, short = [], 0, 0, 0, 0
    shown = 0
    for c in range(a.clients):
        for (secs, status, data, err), asked in zip(results[c], plan[c]):
            lat.append(secs)
            if err is not None:
                errors += 1
                problem = err
            elif not 200 <= status < 300:
                non2xx += 1
                problem = f"status {status}: {data[:200]!r}"
            else:
                problem = None
                try:
                    entries = json.loads(data)["data"]
                except (ValueError, KeyError, TypeError) as e:
                    entries, problem = [], f"unreadable answer ({e}): {data[:200]!r}"
                if problem is None and len(entries) != len(asked):
                    short += 1
                    problem = f"{len(entries)} entries for {len(asked)} hashes"
                if problem is None:
                    for h, e in zip(asked, entries):
                        if e.get("hash") != h.upper() or e.get("scan_result_i") != 5:
                            problem = f"for {h}: {json.dumps(e)[:200]}"
                            break
                if problem is not None:
                    bad += 1
            if problem is not None and shown < 5:
                shown += 1
                print(f"   cold: WRONG answer to client {c}: {problem}", file=sys.stderr)

    requests = len(lat)
    hashes = requests * a.batch
    lat.sort()
    ms = lambda s: s * 1000  # noqa: E731
    r = dict(clients=a.clients, copies=a.copies, distinct=len(digests), requests=requests,
             hashes=hashes, wall_s=f"{wall:.3f}", rps=f"{requests / wall:.2f}",
             hashes_per_s=f"{hashes / wall:.0f}", p50_ms=f"{ms(percentile(lat, 50)):.3f}",
             p90_ms=f"{ms(percentile(lat, 90)):.3f}", p99_ms=f"{ms(percentile(lat, 99)):.3f}",
             max_ms=f"{ms(lat[-1]) if lat else float('nan'):.3f}", non2xx=non2xx, errors=errors,
             bad_answers=bad, short_answers=short)
    print(f"   cold: {a.clients} clients posted {requests} bodies of {a.batch} "
          f"({len(digests):,} distinct digests, each in {a.copies} clients' bodies) in {wall:.2f} s: "
          f"{requests / wall:.1f} requests/s, {hashes / wall:,.0f} hashes/s", file=sys.stderr)
    print(f"   cold: latency per request p50 {r['p50_ms']} ms, p90 {r['p90_ms']} ms, "
          f"p99 {r['p99_ms']} ms, max {r['max_ms']} ms; non-2xx {non2xx}, no answer {errors}, "
          f"wrong answers {bad} ({short} without one entry per hash)", file=sys.stderr)
    print("RESULT " + " ".join(f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
