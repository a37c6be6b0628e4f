#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made as the tests make their fixtures.

    fuzz/seeds.py OUT_DIR        # writes OUT_DIR/<target>/<seed>, for every target

Archives in every format (Python's tarfile/zipfile/gzip/lzma/bz2, GNU tar's sparse members when
`tar` is there, ar/cpio/rpm as tests/integration/odd_archives.rs builds them, the 7z files of
tests/fixtures/archives and, when cargo has fetched it, sevenz-rust2's own test archives), the
hash list and set formats, an NSRL RDS database built from tests/fixtures/nsrl, the vendor's
answers and errors (the shapes src/lookup/protocol.rs's tests use), gateway request bodies and
reports in each format `diff` reads.
"""

import bz2
import glob
import gzip
import io
import lzma
import os
import sqlite3
import struct
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1]
warnings.simplefilter("ignore")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tar(files, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="latin-1") as tf:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zipped(files, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in files:
            z.writestr(name, data)
    return buf.getvalue()


def zstd_raw(data):
    # One frame, one raw block (no compressor needed): magic, single-segment header with a
    # 1-byte (or 2-byte) content size, block header.
    if len(data) < 256:
        head = bytes([0x20, len(data)])
    else:
        head = bytes([0x60]) + struct.pack("<H", len(data) - 256)
    block = ((len(data) << 3) | 1).to_bytes(3, "little")
    return b"\x28\xb5\x2f\xfd" + head + block + data


def ar(members):
    out = b"!<arch>\n"
    for name, data in members:
        out += b"%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (name, 0, 0, 0, b"100644", len(data))
        out += data + (b"\n" if len(data) % 2 else b"")
    return out


def newc(name, data, mode=0o100755):
    name = name.encode() + b"\0"
    h = b"070701" + b"".join(
        b"%08X" % v for v in [1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name), 0]
    )
    out = h + name
    out += b"\0" * (-len(out) % 4)
    return out + data + b"\0" * (-len(data) % 4)


def rpm(payload):
    def header(entries, data):
        return (b"\x8e\xad\xe8\x01\0\0\0\0" + struct.pack(">II", entries, len(data))
                + b"\0" * (16 * entries) + data)
    sig = header(1, b"sigdata")
    sig += b"\0" * (-len(sig) % 8)
    return b"\xed\xab\xee\xdb" + b"\0" * 92 + sig + header(2, b"headerdata!") + payload


# --- archives -----------------------------------------------------------------------------
files = [("dir/a.exe", b"MZ" + bytes(range(256))), ("b.txt", b"hello\n"), ("empty", b"")]
plain_tar = tar(files)
dup_tar = tar([("payload.exe", b"first"), ("payload.exe", b"second")], tarfile.USTAR_FORMAT)
signed = bytearray(tar([("caf\xe9\xff.txt", b"x" * 10), ("next", b"y")], tarfile.USTAR_FORMAT))
s = sum((32 if 148 <= i < 156 else (c - 256 if c > 127 else c)) for i, c in enumerate(signed[:512]))
signed[148:156] = b"%06o\0 " % s
cpio = newc("./usr/bin/tool", b"ELF tool") + newc("./etc/conf", b"x=1\n", 0o100644) \
    + newc("TRAILER!!!", b"", 0)
gnu_tar = tar(files, tarfile.GNU_FORMAT)

put("archive_tar", "pax.tar", plain_tar)
put("archive_tar", "gnu.tar", gnu_tar)
put("archive_tar", "dup.tar", dup_tar)
put("archive_tar", "signed.tar", bytes(signed))
with tempfile.TemporaryDirectory() as d:
    with open(d + "/sparse.bin", "wb") as f:
        f.seek(8192)
        f.write(b"data after a hole")
        f.seek(40000)
        f.write(b"end")
    for name, args in [("pax00", ["--format=pax", "--sparse-version=0.0"]),
                       ("pax01", ["--format=pax", "--sparse-version=0.1"]),
                       ("pax10", ["--format=pax", "--sparse-version=1.0"]),
                       ("gnu", ["--format=gnu"])]:
        try:
            subprocess.run(["tar", "--sparse", *args, "-cf", d + "/" + name, "-C", d,
                            "sparse.bin"], check=True, capture_output=True)
            put("archive_tar", "sparse-" + name + ".tar", open(d + "/" + name, "rb").read())
        except (OSError, subprocess.CalledProcessError):
            pass

put("archive_zip", "deflate.zip", zipped(files))
put("archive_zip", "stored.zip", zipped(files, zipfile.ZIP_STORED))
put("archive_zip", "bzip2.zip", zipped(files, zipfile.ZIP_BZIP2))
put("archive_zip", "dup.zip", zipped([("a.txt", b"one"), ("a.txt", b"two")]))
put("archive_zip", "nested.zip", zipped([("inner.tar.gz", gzip.compress(plain_tar))]))

put("archive_gzip", "tar.gz", gzip.compress(plain_tar))
put("archive_gzip", "exe.gz", gzip.compress(b"MZ" + bytes(200)))
put("archive_xz", "tar.xz", lzma.compress(plain_tar))
put("archive_xz", "exe.xz", lzma.compress(b"MZ" + bytes(200)))
put("archive_bzip2", "tar.bz2", bz2.compress(plain_tar))
put("archive_bzip2", "exe.bz2", bz2.compress(b"MZ" + bytes(200)))
put("archive_zstd", "exe.zst", zstd_raw(b"MZ" + bytes(200)))
put("archive_zstd", "tar.zst", zstd_raw(dup_tar[:1024] + bytes(1024)))

deb = ar([(b"debian-binary", b"2.0\n"),
          (b"control.tar.gz", gzip.compress(tar([("./control", b"Package: x\n")]))),
          (b"data.tar.xz", lzma.compress(tar([("./usr/bin/tool", b"MZ tool")])))])
put("archive_ar", "tool.deb", deb)
long_names = b"a_rather_long_member_name.o/\n"
put("archive_ar", "gnu-long.a",
    ar([(b"//", long_names), (b"/0", b"\x7fELF object")]))
put("archive_cpio", "newc.cpio", cpio)
put("archive_rpm", "tool.rpm", rpm(gzip.compress(cpio)))
put("archive_rpm", "tool-xz.rpm", rpm(lzma.compress(cpio)))

sevenz = glob.glob(os.path.join(ROOT, "tests/fixtures/archives/*.7z"))
home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
sevenz += [p for p in glob.glob(home + "/registry/src/*/sevenz-rust2-*/tests/resources/*.7z")
           if os.path.getsize(p) < 16384]
for p in sevenz:
    put("archive_sevenz", os.path.basename(p), open(p, "rb").read())

# Nesting: every archive above, found by its first bytes.
for target in os.listdir(OUT):
    if target.startswith("archive_"):
        for name in os.listdir(os.path.join(OUT, target)):
            put("archive_nested", target + "-" + name,
                open(os.path.join(OUT, target, name), "rb").read())
put("archive_nested", "deep.zip",
    zipped([("l2.tar.gz", gzip.compress(tar([("l3.zip", zipped([("l4.deb", deb)]))])))]))

# --- hash lists and sets ------------------------------------------------------------------
sha = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
md5 = "44d88612fea8a8f36de82e1278abb02f"
sha1 = "3395856ce81f2b7382dee72602f798b642f14140"
lines = {
    "plain.txt": f"{sha}\n{md5}\n{sha1}\n# comment\n\n",
    "sha256sum.txt": f"{sha}  eicar.com\n{sha} *binary mode\n\\{sha}  back\\\\slash\n",
    "bsd.txt": f"SHA256 (eicar.com) = {sha}\nMD5 (x) = {md5}\n",
    "csv.csv": f"sha256,name\n{sha},eicar\n",
    "rds2.txt": f'"SHA-1","MD5","CRC32","FileName","FileSize","ProductCode","OpSystemCode","SpecialCode"\n"{sha1.upper()}","{md5.upper()}","00000000","x.exe",68,1,"358",""\n',
}
for name, text in lines.items():
    put("hashset", name, text.encode())
    for line in text.splitlines():
        put("hashlist_line", name + "-" + str(abs(hash(line)) % 10**8), line.encode())
for schema in glob.glob(os.path.join(ROOT, "tests/fixtures/nsrl/*.schema.sql")):
    with tempfile.TemporaryDirectory() as d:
        db = sqlite3.connect(d + "/rds.db")
        db.executescript(open(schema).read())
        db.commit()
        db.close()
        put("hashset", "rds-" + os.path.basename(schema) + ".db", open(d + "/rds.db", "rb").read())

# --- the vendor's answers (first byte: 0 a 200 body, 1 an error body, 2 headers) ----------
bodies = [
    b'{"data":[{"hash":"%s","scan_result_i":1,"total_detected_avs":3,"data_id":"x"},'
    b'{"hash":"%s","error":{"code":404003,"messages":["not found"]}}]}' % (sha.encode(), md5.encode()),
    b'{"data":[{"data_id":"x","scan_result_i":0,"hash":"%s","scan_details":{'
    b'"Zoner":{"wait_time":1,"threat_found":"","scan_time":3,"scan_result_i":0},'
    b'"Avira":{"scan_result_i":0,"threat_found":"","scan_result":"Clean"}}}]}' % sha1.encode(),
]
for i, b in enumerate(bodies):
    put("vendor_answer", f"answer{i}", b"\0" + b)
for i, b in enumerate([
    b'{"error":{"code":400062,"messages":["The `hash` field is empty"]}}',
    b'{"error":{"name":"ClientError","code":429001,"status":429,"messages":"slow down"}}',
    b"Unauthorized",
]):
    put("vendor_answer", f"error{i}", b"\1" + b)
put("vendor_answer", "headers0",
    b"\2x-ratelimit-limit: 4000\nx-ratelimit-remaining: 3999\nx-ratelimit-reset-in: 86400s\n")
put("vendor_answer", "headers1", b"\2X-RateLimit-Remaining:  0 \nRetry-After: 120\n")

# --- the gateway's requests ---------------------------------------------------------------
for i, b in enumerate([b'{"hash":["%s","%s"]}' % (sha.encode(), md5.encode()),
                       b'{"hash":["ab","c\\u0064"]}', b'{"hash":[]}', b'{"hash":"abc"}']):
    put("gateway_request", f"req{i}", b)

# --- reports read by diff -----------------------------------------------------------------
rec = (b'{"path":"/srv/a.exe","size":5,"sha256":"%s","verdict":"clean","scan_result_i":0,'
       b'"total_detected_avs":0,"data_id":"x","error":null}' % sha.encode())
member = (b'{"path":"/srv/a.zip!b.exe","size":5,"sha256":"%s","verdict":"infected",'
          b'"scan_result_i":1,"total_detected_avs":3,"data_id":null,"error":null,'
          b'"container":"/srv/a.zip","member":"b.exe"}' % sha.encode())
put("report_read", "report.ndjson", rec + b"\n" + member + b"\n")
put("report_read", "report.json", b'{"summary":{},"records":[' + rec + b"," + member + b"]}")
put("report_read", "report.csv",
    b"path,size,sha256,verdict,scan_result_i,total_detected_avs,data_id,error\n"
    b"/srv/a.exe,5,%s,clean,0,0,x,\n" % sha.encode())
