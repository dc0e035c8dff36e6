"""Small real files of every supported format, made on the fly for tests."""

from __future__ import annotations

import io


def docx_bytes(paragraphs: list[str]) -> bytes:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pdf_bytes(lines: list[str]) -> bytes:
    """A one-page PDF with a real text layer (Helvetica, so ASCII text)."""
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return _pdf(objects)


def scanned_pdf_bytes() -> bytes:
    """A one-page PDF with no text layer, as a scanner makes."""
    content = "0 0 1 rg 100 100 200 200 re f"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
    ]
    return _pdf(objects)


def _pdf(objects: list[str]) -> bytes:
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def html_bytes(title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<html><head><title>{title}</title><style>p{{color:red}}</style>"
            f"<script>var x = '不要索引我';</script></head><body><h1>{title}</h1>{body}</body></html>").encode()


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    """A zip of ``entries`` (deflated), e.g. a .docx with broken or missing parts."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def docx_bomb_bytes(unpacked: int) -> bytes:
    """A real .docx whose document.xml unpacks to about ``unpacked`` bytes (one paragraph, then padding),
    written in pieces so the test never holds it in memory either."""
    import zipfile

    parts = {}
    with zipfile.ZipFile(io.BytesIO(docx_bytes(["炸弹"]))) as archive:
        for name in archive.namelist():
            parts[name] = archive.read(name)
    xml = parts.pop("word/document.xml")
    head, tail = xml.split(b"</w:body>")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(head)
            block = b" " * (1024 * 1024)
            for _ in range(unpacked // len(block)):
                member.write(block)
            member.write(b"</w:body>" + tail)
    return out.getvalue()


def lying_zip_bytes(real: bytes) -> bytes:
    """``real`` with every entry's declared uncompressed size rewritten to 1 byte (local and central
    headers): a reader that trusts the headers sees a tiny archive."""
    import struct

    data = bytearray(real)
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        while at >= 0:
            if struct.unpack_from("<I", data, at + size_at)[0] != 0xFFFFFFFF:
                struct.pack_into("<I", data, at + size_at, 1)
            at = data.find(signature, at + 4)
    return bytes(data)
