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

# --- package databases --------------------------------------------------------------------
def rpm_header(entries, region=False):
    """rpm's headerExport blob: entries of (tag, type, count, data bytes)."""
    index, data = [], b""
    for tag, typ, count, d in entries:
        index.append((tag, typ, len(data), count))
        data += d
    if region:
        il = len(entries) + 1
        trailer = struct.pack(">iiii", 63, 7, -16 * il, 16)
        index.insert(0, (63, 7, len(data), 16))
        data += trailer
    return (struct.pack(">II", len(index), len(data))
            + b"".join(struct.pack(">IIII", *e) for e in index) + data)


def strs(*ss):
    return b"".join(s.encode() + b"\0" for s in ss)


sha_empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
md5_empty = "d41d8cd98f00b204e9800998ecf8427e"
sha1_empty = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
files_entries = [
    (1000, 6, 1, strs("tool")), (1001, 6, 1, strs("1.0")), (1002, 6, 1, strs("1.fc40")),
    (1003, 4, 1, struct.pack(">I", 2)),
    (1116, 4, 3, struct.pack(">III", 0, 0, 1)),
    (1117, 8, 3, strs("tool", "tool.conf", "ghost")),
    (1118, 8, 2, strs("/usr/bin/", "/etc/")),
    (1035, 8, 3, strs(sha_empty, sha_empty, "")),
    (5011, 4, 1, struct.pack(">I", 8)),
    (1037, 4, 3, struct.pack(">III", 0, 1, 64)),
    (1029, 1, 3, bytes([0, 0, 0])),
    (1030, 3, 3, struct.pack(">HHH", 0o100755, 0o100644, 0o100644)),
    (1045, 4, 3, struct.pack(">iii", -1, -1, 0)),
]
blobs = [
    rpm_header(files_entries, region=True),
    rpm_header(files_entries),
    rpm_header([(1000, 6, 1, strs("old")), (1027, 8, 2, strs("/bin/a", "/bin/b")),
                (1035, 8, 2, strs(md5_empty, md5_empty))]),
    rpm_header([(1000, 6, 1, strs("sha1")), (1027, 8, 1, strs("/bin/c")),
                (1035, 8, 1, strs(sha1_empty)), (5011, 4, 1, struct.pack(">I", 2))]),
    rpm_header([(1000, 6, 1, strs("sha512")), (1027, 8, 1, strs("/bin/d")),
                (1035, 8, 1, strs("ab" * 64)), (5011, 4, 1, struct.pack(">I", 10))]),
]
for i, b in enumerate(blobs):
    put("package_rpm", f"header{i}", b"\0" + b)


def ndb(blobs):
    page = b"RpmP" + struct.pack("<III", 0, 0, 1) + bytes(16)
    slots, body, blk = [], b"", 4096 // 16
    for i, b in enumerate(blobs, 1):
        blob = b"BlbS" + struct.pack("<III", i, 0, len(b)) + b
        blob += b"\0" * (-len(blob) % 16)
        slots.append(b"Slot" + struct.pack("<III", i, blk + len(body) // 16, len(blob) // 16))
        body += blob
    slots += [b"Slot" + bytes(12)] * (4096 // 16 - 2 - len(slots))
    return page + b"".join(slots) + body


def bdb(blobs, ps=512, big=False):
    e = ">" if big else "<"
    room = ps - 26
    pages = [None, None]
    items = []
    for b in blobs:
        first = len(pages)
        chunks = [b[i:i + room] for i in range(0, len(b), room)] or [b""]
        for j, c in enumerate(chunks):
            nxt = len(pages) + 1 if j + 1 < len(chunks) else 0
            p = bytearray(ps)
            struct.pack_into(e + "I", p, 16, nxt)
            struct.pack_into(e + "H", p, 22, len(c))
            p[25] = 7
            p[26:26 + len(c)] = c
            pages.append(bytes(p))
        items.append((first, len(b)))
    hp = bytearray(ps)
    hp[25] = 13
    struct.pack_into(e + "H", hp, 20, 2 * len(items))
    off = ps
    for k, (first, total) in enumerate(items):
        off -= 8
        hp[off] = 1  # a key item (H_KEYDATA)
        struct.pack_into(e + "H", hp, 26 + 4 * k, off)
        off -= 12
        hp[off] = 3  # H_OFFPAGE
        struct.pack_into(e + "II", hp, off + 4, first, total)
        struct.pack_into(e + "H", hp, 26 + 4 * k + 2, off)
    pages[1] = bytes(hp)
    meta = bytearray(ps)
    struct.pack_into(e + "I", meta, 12, 0x061561)
    struct.pack_into(e + "I", meta, 20, ps)
    meta[25] = 8
    struct.pack_into(e + "I", meta, 32, len(pages) - 1)
    pages[0] = bytes(meta)
    return b"".join(pages)


put("package_rpm", "Packages.db", b"\1" + ndb(blobs[:3]))
put("package_rpm", "Packages", b"\2" + bdb(blobs[:3]))
put("package_rpm", "Packages-be", b"\2" + bdb(blobs[2:], big=True))

status = (b"Package: p\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0-1\n"
          b"Conffiles:\n /etc/p.conf " + md5_empty.encode() + b"\n"
          b" /etc/old conf newconffile obsolete\n\n"
          b"Package: gone\nStatus: deinstall ok config-files\n\n")
md5sums = (md5_empty + "  usr/bin/p\n" + md5_empty + "  usr/share/doc/p/README\n"
           + "zz  bad line\n").encode()
plist = b"/.\n/usr\n/usr/bin\n/usr/bin/p\n/etc/p.conf\n"
diversions = b"/usr/bin/p\n/usr/bin/p.distrib\nother\n"
put("package_db", "dpkg", b"\0" + b"\0".join([status, md5sums, plist, diversions]))
put("package_db", "dpkg-multiarch",
    b"\0" + b"\0".join([status, b"", b"", b"", plist, md5sums]))
apk = ("C:Q1abc=\nP:busybox\nV:1.36.1-r2\nf:S\nF:bin\nR:busybox\nZ:Q1"
       + __import__("base64").b64encode(bytes(20)).decode() + "\nF:etc\nR:motd\nZ:X1"
       + sha1_empty + "\nR:profile\nZ:Q2" + __import__("base64").b64encode(bytes(32)).decode()
       + "\n\nP:musl\nV:1\nF:lib\nR:ld.so\nZ:X2" + sha_empty + "\n").encode()
put("package_db", "apk", b"\1" + apk + b"\0" + b"+etc\n-etc/motd\n@etc/init.d\n!etc/apk\n")
desc = b"%NAME%\np\n\n%VERSION%\n1.0-1\n\n%DESC%\nx\n"
pfiles = b"%FILES%\nusr/\nusr/bin/p\n\n%BACKUP%\netc/p.conf\t" + md5_empty.encode() + b"\n"
mtree = ("#mtree\n/set type=file uid=0 gid=0 mode=644\n./.PKGINFO time=1 size=1 md5digest="
         + md5_empty + "\n./usr/bin/p time=1 mode=755 size=0 md5digest=" + md5_empty
         + " sha256digest=" + sha_empty + "\n./usr/bin type=dir\n./etc/p\\040x.conf \\\n md5digest="
         + md5_empty + "\n/unset mode\n./usr/lib/l type=link link=x\n").encode()
put("package_db", "pacman", b"\2" + b"\0".join([desc, pfiles, mtree]))
put("package_db", "pacman-gz", b"\2" + b"\0".join([desc, pfiles, gzip.compress(mtree)]))

# --- Bloom filters (first byte 0: a filter file; 1: size byte and lines to build one from) --
def bloom_file(k, m, values):
    prime, g = 18446744073709551557, 18446744073709550147
    words = (m + 63) // 64
    bits = bytearray(words * 8)
    for v in values:
        h = 14695981039346656037
        for c in v:
            h = ((h * 1099511628211) & (2**64 - 1)) ^ c
        h %= prime
        for _ in range(k):
            h = (h * g % 2**64) % prime
            i = h % m
            bits[i // 8] |= 1 << (i % 8)
    return struct.pack("<QQdQQQ", 1, 100, 0.01, k, m, len(values)) + bytes(bits)


filt = bloom_file(7, 1000, [sha1.upper().encode(), sha1_empty.upper().encode()])
put("bloom", "filter", b"\0" + filt)
put("bloom", "filter-blob", b"\0" + bloom_file(3, 64, [b"x"]) + b"trailing data blob")
put("bloom", "build", b"\1\x10" + b"\n".join([sha.encode(), md5.encode(), b"", b"x"]))
put("hashset", "circl.bloom", filt)

# --- IOC lists: hashset recognises them by content; `ioc` takes each kind by its first byte --
uuid = "5e6b7c1a-0000-4000-8000-000000000001"
event = ('{"Event":{"uuid":"%s","info":"campaign","Attribute":['
         '{"type":"sha256","value":"%s","to_ids":true},'
         '{"type":"filename|md5","value":"a.exe|%s","to_ids":"1"},'
         '{"type":"sha512","value":"%s","to_ids":true},'
         '{"type":"md5","value":"%s","to_ids":false},'
         '{"type":"malware-sample","value":"b.exe|%s","to_ids":1,"deleted":false}],'
         '"Object":[{"deleted":false,"Attribute":[{"type":"sha1","value":"%s","to_ids":1}]}]}}'
         % (uuid, sha, md5, "ab" * 64, md5, md5, sha1)).encode()
rest_attrs = ('{"response":{"Attribute":[{"type":"md5","value":"%s","to_ids":true,'
              '"event_uuid":"u"},{"type":"sha256","value":"%s","to_ids":true,'
              '"Event":{"uuid":"e","info":"i"}}]}}' % (md5, sha)).encode()
rest_events = b'{"response":[' + event + b',{"x":1}]}'
stix = ('{"type":"bundle","id":"bundle--1","objects":['
        '{"type":"indicator","id":"indicator--1","name":"x","pattern_type":"stix",'
        '"pattern":"[file:hashes.\'SHA-256\' = \'%s\'] OR ([file:hashes.MD5 = \'%s\'])",'
        '"valid_from":"2020-01-01T00:00:00Z"},'
        '{"type":"indicator","id":"indicator--2","pattern_type":"stix",'
        '"pattern":"[file:hashes.SHA1 = \'%s\' AND file:name = \'x\']","revoked":false},'
        '{"type":"indicator","id":"indicator--3","pattern_type":"stix",'
        '"pattern":"[file:hashes.sha1 = \'%s\']","valid_until":"2030-01-01T00:00:00Z"},'
        '{"type":"indicator","id":"indicator--4","pattern_type":"stix",'
        '"pattern":"[file:hashes.MD5 = \'%s\']","valid_until":"2001-01-01T00:00:00Z"},'
        '{"type":"malware","id":"malware--1"}]}' % (sha, md5, sha1, sha1, md5)).encode()
mb = ("################\n# MalwareBazaar full data dump (SHA256 hashes)\n#\n%s\nnot-a-hash\n"
      % sha).encode()
mb_csv = ('################\n# "first_seen_utc","sha256_hash","md5_hash","sha1_hash","reporter",'
          '"file_name","file_type_guess","mime_type","signature","clamav","vtpercent","imphash",'
          '"ssdeep","tlsh"\n"2024-01-01 00:00:00", "%s", "%s", "%s", "r", "a.exe", "exe", '
          '"application/x-dosexec", "AgentTesla", "n/a", "n/a", "n/a", "n/a", "n/a"\n'
          % (sha, md5, sha1)).encode()
hdb = ("%s:68:Eicar-Test-Signature\n%s:*:PUA.Win.Tool:73\nbad line\n" % (md5, sha)).encode()
hsb = ("%s:68:Win.Trojan.X\n" % sha1).encode()
manifest = ('{"%s":{"info":"campaign","Orgc":{"name":"o"},"timestamp":"1"}}' % uuid).encode()
iocs = [(0, "misp-event.json", event), (1, "misp-rest-attrs.json", rest_attrs),
        (1, "misp-rest-events.json", rest_events), (2, "stix.json", stix),
        (3, "mb-sha256.txt", mb), (4, "mb-full.csv", mb_csv), (5, "clamav.hdb", hdb),
        (13, "clamav-pua.hdb", hdb), (5, "clamav.hsb", hsb)]
for mode, name, body in iocs:
    put("ioc", name, bytes([mode]) + body)
    put("hashset", name, body)
put("ioc", "misp-feed", b"\6" + manifest + b"\0" + event)
put("ioc", "misp-feed-bad-uuid", b"\6" + b'{"../x":{}}' + b"\0" + event)

# --- CIRCL hashlookup's bulk answers (first byte 0: asked by SHA-1, 1: by MD5) -------------
circl = ('[{"FileName":"./x.exe","FileSize":"68","MD5":"%s","SHA-1":"%s",'
         '"ProductCode":{"ProductName":"p","ProductVersion":"1"},"KnownMalicious":"src"},'
         '{"SHA-1":"%s","MD5":"%s","ProductCode":123,"FileName":""}]'
         % (md5.upper(), sha1.upper(), sha1_empty.upper(), md5_empty.upper())).encode()
put("circl_answer", "sha1", b"\0" + circl)
put("circl_answer", "md5", b"\1" + circl)
put("circl_answer", "empty", b"\0[]")

# --- the file API's answers (0 upload, 1 poll, 2 apikey, 3 a gateway's intent answer) ------
for i, b in enumerate([b'{"data_id":"abc","status":"inqueue","in_queue":1}', b'{"data_id":""}']):
    put("upload_answer", f"upload{i}", b"\0" + b)
for i, b in enumerate([
    b'{"data_id":"x","status":"inqueue","in_queue":1}',
    b'{"scan_results":{"scan_all_result_i":255,"progress_percentage":40}}',
    b'{"process_info":{"progress_percentage":100},"scan_results":{"scan_all_result_i":0}}',
    b'{"scan_results":{"scan_all_result_i":1,"progress_percentage":100,"total_detected_avs":3,'
    b'"scan_details":{"A":{"threat_found":"T","scan_result_i":1,"def_time":"2024"}}}}',
]):
    put("upload_answer", f"poll{i}", b"\1" + b)
put("upload_answer", "apikey", b'\2{"limit_prevention":"40","max_upload_file_size":2,'
    b'"enforce_private_scan":true,"paid_user":1,"hashsweep_gateway":true,'
    b'"hashsweep_max_upload_bytes":1000}')
for i, b in enumerate([b'{"action":"send"}', b'{"action":"wait","data_id":"d"}',
                       b'{"action":"answered","scan_result_i":1,"total_detected_avs":3,'
                       b'"data_id":"d"}']):
    put("upload_answer", f"intent{i}", b"\3" + b)

# --- the gateway's upload requests (0 an intent body, 1 a filename header) -----------------
put("gateway_upload", "intent", b'\0{"hash":"%s","size":68}' % sha.encode())
put("gateway_upload", "intent-md5", b'\0{"hash":"%s","size":0,"x":[1]}' % md5.encode())
put("gateway_upload", "name", b"\1a%20b%2F%C3%BC.exe")
put("gateway_upload", "name-odd", "\1100% é/..\\x%zz".encode())
