#!/usr/bin/env python3
"""Write a synthetic rpm database: ROOT/var/lib/rpm/rpmdb.sqlite with PACKAGES packages of
FILES files each (SHA-256 digests, a %config file per package), in rpm's own sqlite schema and
header-blob layout (big-endian index entries, a region tag 63 with its trailer). For timing
`cargo run --release --example packages_load -- ROOT` (docs/src/performance.md, "Package databases").

Usage: rpmdb_synth.py ROOT [PACKAGES [FILES]]   (default 2000 packages of 100 files)
"""
import hashlib
import os
import sqlite3
import struct
import sys

STRING, INT32, CHAR, INT16, STRING_ARRAY, BIN = 6, 4, 1, 3, 8, 7


def header(entries):
    data = bytearray()
    index = []
    for tag, kind, count, payload in entries:
        align = {INT16: 2, INT32: 4}.get(kind, 1)
        while len(data) % align:
            data.append(0)
        index.append((tag, kind, len(data), count))
        data += payload
    il = len(entries) + 1
    trailer_at = len(data)
    data += struct.pack(">IIiI", 63, BIN, -16 * il, 16)
    out = struct.pack(">II", il, len(data))
    for tag, kind, off, count in [(63, BIN, trailer_at, 16)] + index:
        out += struct.pack(">IIII", tag, kind, off, count)
    return bytes(out + data)


def strs(values):
    return b"".join(v.encode() + b"\0" for v in values)


def ints(values, fmt=">I"):
    return b"".join(struct.pack(fmt, v) for v in values)


def main():
    root = sys.argv[1]
    packages = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    db = os.path.join(root, "var/lib/rpm")
    os.makedirs(db, exist_ok=True)
    path = os.path.join(db, "rpmdb.sqlite")
    if os.path.exists(path):
        os.remove(path)
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)"
    )
    for p in range(packages):
        name = f"pkg{p:05d}"
        dirs = [f"/usr/lib/{name}/", f"/usr/share/doc/{name}/", "/etc/"]
        base, index, digests, flags = [], [], [], []
        for f in range(files):
            d = 0 if f < files * 3 // 4 else 1
            if f == files - 1:
                d = 2
            base.append(f"{name}.conf" if d == 2 else f"file{f:04d}")
            index.append(d)
            digests.append(hashlib.sha256(f"{name}/{f}".encode()).hexdigest())
            flags.append(1 if d == 2 else 0)
        blob = header(
            [
                (1000, STRING, 1, strs([name])),
                (1001, STRING, 1, strs(["1.0"])),
                (1002, STRING, 1, strs(["1.fc40"])),
                (1029, CHAR, files, bytes(files)),
                (1030, INT16, files, ints([0o100644] * files, ">H")),
                (1035, STRING_ARRAY, files, strs(digests)),
                (1037, INT32, files, ints(flags)),
                (1116, INT32, files, ints(index)),
                (1117, STRING_ARRAY, files, strs(base)),
                (1118, STRING_ARRAY, len(dirs), strs(dirs)),
                (5011, INT32, 1, ints([8])),
            ]
        )
        conn.execute("INSERT INTO Packages (blob) VALUES (?)", (blob,))
    conn.commit()
    conn.close()
    print(f"{path}: {packages} packages, {packages * files} files")


if __name__ == "__main__":
    main()
