"""Extraction (chalicelib/documents/extract.py): real small files of every kind, and the bad ones users send."""
from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chalicelib.documents import extract
from chalicelib.documents.extract import ExtractionError, ExtractionReason, extract_text
from chalicelib.documents.upload import Kind
from tests.support.documents import DOCX_PARTS, docx, document_xml, encrypted_pdf, paragraph, pdf

ROOT = Path(__file__).resolve().parents[3]
SENTENCE = "The quarterly report shows revenue grew by 12 percent (mostly in Europe)."


def failure(data: bytes, kind: Kind) -> ExtractionError:
    with pytest.raises(ExtractionError) as caught:
        extract_text(data, kind)
    return caught.value


def test_importing_extract_does_not_import_pypdf():
    code = "import sys, chalicelib.documents.extract; assert 'pypdf' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---- text and markdown -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [Kind.TEXT, Kind.MARKDOWN])
def test_utf8_text_as_it_is_with_or_without_a_bom(kind):
    source = "# Café notes\r\n\r\n- naïve – 日本\r\n"
    assert extract_text(source.encode("utf-8"), kind) == "# Café notes\n\n- naïve – 日本\n"
    assert extract_text(b"\xef\xbb\xbf" + source.encode("utf-8"), kind) == "# Café notes\n\n- naïve – 日本\n"


def test_text_that_is_not_utf8_says_where():
    error = failure("caf\xe9 au lait".encode("latin-1"), Kind.TEXT)
    assert error.reason == ExtractionReason.NOT_UTF8 and error.reason.value == "not_utf8"
    assert error.message == "The file is not UTF-8 text (byte 3 is not valid UTF-8); save it as UTF-8 and upload it again."
    assert failure("ab".encode("utf-16"), Kind.MARKDOWN).reason == ExtractionReason.NOT_UTF8


@pytest.mark.parametrize("data", [b"", b"  \r\n\t\n", b"\xef\xbb\xbf\n"])
def test_a_file_of_whitespace_is_empty(data):
    error = failure(data, Kind.TEXT)
    assert (error.reason, error.message) == (ExtractionReason.EMPTY, "The file has no text in it.")


# ---- html --------------------------------------------------------------------------------------

PAGE = b"""<!doctype html><html><head><title>Quarterly report</title>
<style>p { color: red }</style><script>var hidden = "<p>not text</p>";</script></head>
<body><h1>Results</h1><p>Revenue &amp; profit   grew
  in Q3.</p><ul><li>Europe</li><li>Asia</li></ul>Call us<br>today<br/>please
<table><tr><th>Region</th><th>Growth</th></tr><tr><td>Europe</td><td>12%</td></tr></table>
<noscript>Enable JavaScript</noscript><pre>line one
line two</pre><div>Caf&eacute; &#8211; end</div></body></html>"""


def test_html_keeps_the_text_a_reader_sees_with_its_blocks():
    assert extract_text(PAGE, Kind.HTML) == (
        "Quarterly report\n\nResults\n\nRevenue & profit grew in Q3.\n\nEurope\nAsia\n\nCall us\ntoday\nplease\n\n"
        "Region Growth\nEurope 12%\n\nline one\nline two\n\nCafé – end"
    )


def test_html_in_the_charset_it_declares():
    page = '<html><head><meta charset="windows-1252"></head><body><p>Caf\xe9 \u201cquoted\u201d</p></body></html>'
    assert extract_text(page.encode("cp1252"), Kind.HTML) == "Café \u201cquoted\u201d"
    other = '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"><p>na\xefve</p>'
    assert extract_text(other.encode("latin-1"), Kind.HTML) == "naïve"


def test_html_neither_utf8_nor_its_declared_charset():
    assert failure("<p>caf\xe9</p>".encode("latin-1"), Kind.HTML).reason == ExtractionReason.NOT_UTF8
    error = failure(b'<meta charset="klingon"><p>caf\xe9</p>', Kind.HTML)
    assert error.reason == ExtractionReason.NOT_UTF8 and "klingon" in error.message


def test_html_with_only_scripts_and_styles_is_empty():
    assert failure(b"<script>alert(1)</script><style>p{}</style><p> </p>", Kind.HTML).reason == ExtractionReason.EMPTY


# ---- pdf ---------------------------------------------------------------------------------------

def test_a_pdf_s_sentence_is_extracted():
    assert extract_text(pdf([[SENTENCE]]), Kind.PDF) == SENTENCE


def test_a_pdf_s_pages_are_separated_by_a_blank_line():
    text = extract_text(pdf([["Page one, line one.", "Line two."], ["Page two."]]), Kind.PDF)
    assert text == "Page one, line one.\nLine two.\n\nPage two."


def test_a_pdf_locked_with_a_password_is_encrypted():
    error = failure(encrypted_pdf(pdf([[SENTENCE]]), user_password="secret"), Kind.PDF)
    assert error.reason == ExtractionReason.ENCRYPTED and error.reason.value == "encrypted"
    assert "password" in error.message


def test_a_pdf_restricted_only_against_editing_is_read():
    assert extract_text(encrypted_pdf(pdf([[SENTENCE]]), user_password=""), Kind.PDF) == SENTENCE


def test_a_pdf_of_too_many_pages_is_refused_before_reading_them():
    assert extract.MAX_PDF_PAGES == 500
    error = failure(pdf([["x"]] * 501), Kind.PDF)
    assert (error.reason, error.message) == (ExtractionReason.TOO_MANY_PAGES, "The PDF has 501 pages; the limit is 500.")


def test_a_pdf_without_text_needs_ocr():
    error = failure(pdf([[]]), Kind.PDF)
    assert error.reason == ExtractionReason.EMPTY and "OCR" in error.message


@pytest.mark.parametrize(
    "data",
    [b"", b"not a pdf at all", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", pdf([[SENTENCE]])[:60]],
)
def test_a_damaged_pdf_is_unreadable(data):
    error = failure(data, Kind.PDF)
    assert error.reason == ExtractionReason.UNREADABLE
    assert error.message == "The PDF cannot be read (it may be damaged or not a PDF)."


# ---- docx --------------------------------------------------------------------------------------

def test_docx_paragraphs_runs_tabs_and_breaks():
    body = (
        paragraph("The quarterly ", "report ", "shows growth.")
        + "<w:p><w:r><w:t>Region</w:t><w:tab/><w:t>Growth</w:t><w:br/><w:t>Europe</w:t><w:tab/><w:t>12%</w:t></w:r></w:p>"
        + "<w:p/>"  # an empty paragraph (spacing) is left out
        + "<w:p><w:r><w:t>e-mail</w:t><w:noBreakHyphen/><w:t>ready</w:t></w:r></w:p>"
    )
    assert extract_text(docx(body), Kind.DOCX) == (
        "The quarterly report shows growth.\n\nRegion\tGrowth\nEurope\t12%\n\ne-mail-ready"
    )


def test_docx_tables_text_boxes_and_tracked_changes():
    table = "<w:tbl><w:tr><w:tc>" + paragraph("Cell A") + "</w:tc><w:tc>" + paragraph("Cell B") + "</w:tc></w:tr></w:tbl>"
    text_box = (
        "<w:p><w:r><w:t>Before the box.</w:t></w:r><w:r><mc:AlternateContent>"
        "<mc:Choice Requires=\"wps\"><w:drawing><w:txbxContent>" + paragraph("Boxed text.")
        + "</w:txbxContent></w:drawing></mc:Choice>"
        "<mc:Fallback><w:pict><w:txbxContent>" + paragraph("Boxed text.") + "</w:txbxContent></w:pict></mc:Fallback>"
        "</mc:AlternateContent></w:r></w:p>"
    )
    tracked = (
        "<w:p><w:r><w:t xml:space=\"preserve\">Kept </w:t></w:r><w:del><w:r><w:delText>removed </w:delText></w:r></w:del>"
        "<w:ins><w:r><w:t>added</w:t></w:r></w:ins><w:r><w:instrText> PAGE </w:instrText></w:r></w:p>"
    )
    text = extract_text(docx(table + text_box + tracked), Kind.DOCX)
    assert text == "Cell A\n\nCell B\n\nBefore the box.\n\nBoxed text.\n\nKept added"


def test_docx_without_text_is_empty():
    assert failure(docx("<w:p/><w:p><w:r><w:t>  </w:t></w:r></w:p>"), Kind.DOCX).reason == ExtractionReason.EMPTY


def test_a_docx_bomb_is_stopped_before_it_is_parsed():
    assert extract.MAX_DOCX_XML_BYTES == 20 * 1024 * 1024
    inflated = document_xml(paragraph("x") + " " * (extract.MAX_DOCX_XML_BYTES + 1))
    bomb = docx(xml=inflated)
    assert len(bomb) < 100_000  # 20 MB of XML in a few KB of zip
    error = failure(bomb, Kind.DOCX)
    assert error.reason == ExtractionReason.TOO_LARGE and error.reason.value == "too_large"
    assert "20 MB" in error.message


def _understated(package: bytes, name: bytes, size: int) -> bytes:
    """``package`` with ``name``'s uncompressed size set to ``size`` in its local and central headers."""
    out = bytearray(package)
    for signature, name_at, size_at in ((b"PK\x03\x04", 30, 22), (b"PK\x01\x02", 46, 24)):
        at = out.find(signature)
        while out[at + name_at: at + name_at + len(name)] != name:
            at = out.find(signature, at + 1)
            assert at >= 0
        out[at + size_at: at + size_at + 4] = size.to_bytes(4, "little")
    return bytes(out)


def test_a_docx_that_understates_its_size_is_not_read_past_it():
    lying = _understated(docx(paragraph("y" * 50_000)), b"word/document.xml", 100)
    assert zipfile.ZipFile(io.BytesIO(lying)).getinfo("word/document.xml").file_size == 100
    error = failure(lying, Kind.DOCX)
    assert error.reason == ExtractionReason.UNREADABLE  # read up to the declared size: a bad CRC, not 50 KB


def test_a_docx_with_a_dtd_is_refused():
    xml = b'<?xml version="1.0"?><!DOCTYPE w [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>' + document_xml(
        paragraph("&b;")
    ).split(b"?>", 1)[1]
    assert failure(docx(xml=xml), Kind.DOCX).reason == ExtractionReason.UNREADABLE


def test_a_password_protected_word_file_is_encrypted_and_an_old_doc_unreadable():
    compound = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504
    error = failure(compound + "EncryptionInfo".encode("utf-16-le") + b"\0" * 100, Kind.DOCX)
    assert error.reason == ExtractionReason.ENCRYPTED
    old = failure(compound + "WordDocument".encode("utf-16-le"), Kind.DOCX)
    assert old.reason == ExtractionReason.UNREADABLE and ".doc" in old.message


def _zip(parts: dict) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        for name, data in parts.items():
            package.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    "data, words",
    [
        (b"PK\x03\x04 not really a zip", "cannot be read"),
        (b"plain text named .docx", "cannot be read"),
        (_zip(DOCX_PARTS), "no word/document.xml"),
        (_zip({**DOCX_PARTS, "word/document.xml": b"<w:document><w:body><w:p>"}), "cannot be read"),
        (docx(paragraph("x"))[:200], "cannot be read"),
    ],
)
def test_a_damaged_docx_is_unreadable(data, words):
    error = failure(data, Kind.DOCX)
    assert error.reason == ExtractionReason.UNREADABLE
    assert words in error.message


def test_every_kind_has_a_reader():
    assert set(extract._READERS) == set(Kind)
