"""Small real documents for the extraction tests: PDFs written by hand, .docx packages zipped here.

Written from the formats themselves (PDF 1.4's objects and cross-reference table; a WordprocessingML
package's three parts), so the tests read what a user's files hold, not what a library under test
would write; pypdf only encrypts a copy, as a user's PDF tool would.
"""
from __future__ import annotations

import io
import zipfile
from typing import List, Optional, Sequence

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MC_NS = "http://schemas.openxmlformats.org/markup-compatibility/2006"
DOCX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
        'Target="word/document.xml"/>'
        "</Relationships>"
    ),
}


# ---- PDF -------------------------------------------------------------------------------------

def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def pdf(pages: Sequence[Sequence[str]]) -> bytes:
    """A PDF 1.4 file: one page per item, each line of it drawn in Helvetica (WinAnsi text)."""
    count = len(pages)
    font = 3 + 2 * count  # objects: 1 catalog, 2 pages, then (page, contents) per page, then the font
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects: List[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
    ]
    for i, lines in enumerate(pages):
        page, contents = 3 + 2 * i, 4 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {contents} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        drawn = "".join(f"{_pdf_string(line)} Tj 0 -16 Td " for line in lines)
        stream = f"BT /F1 12 Tf 72 720 Td {drawn}ET".encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        assert page == len(objects) - 1
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def encrypted_pdf(source: bytes, user_password: str, owner_password: Optional[str] = "owner") -> bytes:
    """``source`` encrypted (AES-256) as a PDF tool does: with an empty user password it opens
    without one (only editing is restricted)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(source)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# ---- docx ------------------------------------------------------------------------------------

def document_xml(body: str) -> bytes:
    """word/document.xml around ``body`` (WordprocessingML with the ``w:`` and ``mc:`` prefixes)."""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<w:document xmlns:w="{W_NS}" xmlns:mc="{MC_NS}"><w:body>{body}</w:body></w:document>'
    ).encode("utf-8")


def paragraph(*runs: str) -> str:
    """A ``w:p`` with one run per text (``w:t`` keeping its spaces)."""
    return "<w:p>" + "".join(f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>' for text in runs) + "</w:p>"


def docx(body: str = "", xml: Optional[bytes] = None) -> bytes:
    """A .docx package (zip) whose document is ``body`` (or exactly ``xml``)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        for name, text in DOCX_PARTS.items():
            package.writestr(name, text)
        package.writestr("word/document.xml", xml if xml is not None else document_xml(body))
    return out.getvalue()
