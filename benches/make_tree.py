#!/usr/bin/env python3
"""Make a tree of many small distinct files for whole-process benchmarks.

usage: make_tree.py DIR FILES [MAX_BYTES]
Files are spread over directories of 1000, named like real trees (varying lengths), with
distinct contents of 0..MAX_BYTES bytes (default 16384), so every file has its own digest.
"""
import os
import random
import sys


def main() -> None:
    root, count = sys.argv[1], int(sys.argv[2])
    max_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else 16384
    rng = random.Random(42)
    blob = rng.randbytes(max_bytes + 64)
    for i in range(count):
        d = os.path.join(root, f"pkg{i // 1000:05d}", "lib" if i % 3 else "share/doc")
        if i % 1000 < 3:
            os.makedirs(d, exist_ok=True)
        size = rng.randrange(0, max_bytes + 1)
        name = f"module_{i:07d}{'.so' if i % 2 else '.py'}"
        with open(os.path.join(d, name), "wb") as f:
            # A distinct prefix makes every file's digest distinct.
            f.write(i.to_bytes(8, "little") + blob[:size])


if __name__ == "__main__":
    main()
