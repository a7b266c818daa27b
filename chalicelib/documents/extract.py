"""A document's bytes as plain text, ready for chunking: one reader per kind, each bounded.

Files come from users, so every reader assumes the worst: a ``.txt`` that is not UTF-8, a PDF
that is damaged, encrypted or thousands of pages long, a ``.docx`` whose XML inflates to gigabytes.
Each of these ends in one ``ExtractionError`` whose ``reason`` is a stable word (the ``code`` of a
``failed`` document event) and whose ``message`` tells the user what to do; anything else a
parser throws on a malformed file is ``unreadable``, never a crash of the pipeline.

Only pypdf is a dependency (pure Python, imported by the PDF reader alone). HTML is read with the
standard library's ``html.parser``, and ``.docx`` with ``zipfile`` and ``xml.etree``: python-docx
would pull in lxml (a compiled library of several MB) for what is one XML part walked once.
"""
from __future__ import annotations

import codecs
import io
import re
from enum import StrEnum
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Callable, Dict, List

from chalicelib.documents.upload import Kind

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

MAX_PDF_PAGES = 500
# word/document.xml as unzipped: a 10 MB .docx of text inflates to a few times that; a zip bomb
# (deflate reaches 1,000:1) stops here, before it is parsed.
MAX_DOCX_XML_BYTES = 20 * 1024 * 1024


class ExtractionReason(StrEnum):
    """Why a file gave no text; stable words (a ``failed`` document's ``code``)."""

    NOT_UTF8 = "not_utf8"
    ENCRYPTED = "encrypted"
    UNREADABLE = "unreadable"
    TOO_LARGE = "too_large"
    TOO_MANY_PAGES = "too_many_pages"
    EMPTY = "empty"


class ExtractionError(Exception):
    """The file's text cannot be had: ``reason`` for code, ``message`` for the user."""

    def __init__(self, reason: ExtractionReason, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def extract_text(data: bytes, kind: Kind) -> str:
    """The text of a file of ``kind``: lines end with ``\\n``, blocks (paragraphs, pages) are
    separated by a blank line. ``ExtractionError`` if there is none to be had."""
    text = _READERS[kind](data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ExtractionError(ExtractionReason.EMPTY, _EMPTY.get(kind, "The file has no text in it."))
    return text


_EMPTY = {
    Kind.PDF: "The PDF has no text we can read: a scanned document needs text recognition (OCR) first.",
}


# ---- text and markdown ---------------------------------------------------------------------

def _utf8(data: bytes) -> str:
    """UTF-8, with or without a byte order mark."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExtractionError(
            ExtractionReason.NOT_UTF8,
            f"The file is not UTF-8 text (byte {exc.start:,} is not valid UTF-8); save it as UTF-8 and upload it again.",
        ) from None


# ---- html ----------------------------------------------------------------------------------

_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _html(data: bytes) -> str:
    return _HtmlText.text_of(_html_source(data))


def _html_source(data: bytes) -> str:
    """UTF-8, else the charset the page declares in its first 2 KB (old pages are often windows-1252)."""
    declared = _CHARSET.search(data[:2048])
    if declared is None:
        return _utf8(data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    name = declared.group(1).decode("ascii")
    try:
        return data.decode(codecs.lookup(name).name)
    except (LookupError, UnicodeDecodeError):
        raise ExtractionError(
            ExtractionReason.NOT_UTF8, f"The page is neither UTF-8 nor valid {name}, the charset it declares."
        ) from None


class _HtmlText(HTMLParser):
    """The text a reader sees: no scripts or styles, a blank line between blocks, a line break
    at ``<br>``, list items and table rows, a space between cells, spaces collapsed as a browser
    does (``<pre>`` keeps its line breaks)."""

    SKIP = frozenset({"script", "style", "noscript", "template"})
    BLOCKS = frozenset({
        "address", "article", "aside", "blockquote", "caption", "details", "dialog", "div", "dl", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main",
        "nav", "ol", "p", "pre", "section", "summary", "table", "title", "ul",
    })
    LINES = frozenset({"br", "li", "tr", "dt", "dd", "option"})
    CELLS = frozenset({"td", "th"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: List[str] = []
        self.skipping = 0
        self.preformatted = 0

    @classmethod
    def text_of(cls, source: str) -> str:
        parser = cls()
        parser.feed(source)
        parser.close()
        lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag == "pre":
            self.preformatted += 1
        if tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag in self.LINES:  # at the start only: <br>, <br/> and <br></br> break once
            self.parts.append("\n")
        elif tag in self.CELLS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag == "pre":
            self.preformatted = max(0, self.preformatted - 1)
        if tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        self.parts.append(data if self.preformatted else re.sub(r"\s+", " ", data))


# ---- pdf -----------------------------------------------------------------------------------

def _pdf(data: bytes) -> str:
    """The pages' text (pypdf), a blank line between pages. An encrypted PDF is read when it opens
    without a password (protected against editing only); more than ``MAX_PDF_PAGES`` pages is
    refused before any page is read."""
    from pypdf import PasswordType, PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise ExtractionError(
                ExtractionReason.ENCRYPTED,
                "The PDF is protected with a password; save a copy without it and upload that.",
            )
        pages = len(reader.pages)
        if pages > MAX_PDF_PAGES:
            raise ExtractionError(
                ExtractionReason.TOO_MANY_PAGES, f"The PDF has {pages:,} pages; the limit is {MAX_PDF_PAGES:,}."
            )
        return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
    except ExtractionError:
        raise
    except Exception:  # noqa: BLE001 - a damaged PDF fails inside pypdf in many ways (and RecursionError)
        raise ExtractionError(
            ExtractionReason.UNREADABLE, "The PDF cannot be read (it may be damaged or not a PDF)."
        ) from None


# ---- docx ----------------------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_PARAGRAPH, _TEXT = _W + "p", _W + "t"
_TABS = frozenset({_W + "tab", _W + "ptab"})
_BREAKS = frozenset({_W + "br", _W + "cr"})
_HYPHEN = _W + "noBreakHyphen"
# Markup compatibility: a text box comes twice, as mc:Choice (DrawingML) and mc:Fallback (VML).
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a compound file: an encrypted .docx, or an old .doc
_ENCRYPTION_INFO = "EncryptionInfo".encode("utf-16-le")


def _docx(data: bytes) -> str:
    """The body's paragraphs (``w:p``), a blank line between them: runs' text (``w:t``), tabs and
    line breaks. Deleted text (``w:delText``) and field codes are left out, as are headers,
    footers and notes (other parts of the package)."""
    root = _parse(_document_xml(data))
    paragraphs = (_paragraph_text(paragraph) for paragraph in _paragraphs(root))
    return "\n\n".join(text for text in paragraphs if text.strip())


def _document_xml(data: bytes) -> bytes:
    import zipfile
    import zlib

    if data.startswith(_OLE):
        if _ENCRYPTION_INFO in data:
            raise ExtractionError(
                ExtractionReason.ENCRYPTED,
                "The document is protected with a password; save a copy without it and upload that.",
            )
        raise ExtractionError(
            ExtractionReason.UNREADABLE, "This is an older Word file (.doc), not a .docx; save it as .docx and upload that."
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            try:
                part = package.getinfo("word/document.xml")
            except KeyError:
                raise ExtractionError(
                    ExtractionReason.UNREADABLE, "The file is not a Word document (it has no word/document.xml)."
                ) from None
            if part.flag_bits & 0x1:
                raise ExtractionError(
                    ExtractionReason.ENCRYPTED, "The document is encrypted; save a copy without a password and upload that."
                )
            if part.file_size > MAX_DOCX_XML_BYTES:
                raise _docx_too_large()
            with package.open(part) as member:
                xml = member.read(MAX_DOCX_XML_BYTES + 1)  # the declared size may lie: read no more than the cap
    except ExtractionError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError):
        raise ExtractionError(ExtractionReason.UNREADABLE, _DOCX_UNREADABLE) from None
    if len(xml) > MAX_DOCX_XML_BYTES:
        raise _docx_too_large()
    return xml


_DOCX_UNREADABLE = "The .docx file cannot be read (it may be damaged or not a Word document)."


def _docx_too_large() -> ExtractionError:
    return ExtractionError(
        ExtractionReason.TOO_LARGE,
        f"The document's text is too large to read (over {MAX_DOCX_XML_BYTES // (1024 * 1024)} MB unzipped).",
    )


def _parse(xml: bytes) -> Element:
    """Parsed, refusing any DTD: Word never writes one, and entities are how XML bombs grow."""
    import xml.etree.ElementTree as ElementTree

    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        raise ExtractionError(ExtractionReason.UNREADABLE, _DOCX_UNREADABLE)
    try:
        return ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        raise ExtractionError(ExtractionReason.UNREADABLE, _DOCX_UNREADABLE) from None


def _paragraphs(root: Element) -> List[Element]:
    """Every ``w:p`` in document order (in tables and text boxes too), each text box once."""
    found: List[Element] = []
    pending = [root]
    while pending:
        element = pending.pop()
        if element.tag == _FALLBACK:
            continue
        if element.tag == _PARAGRAPH:
            found.append(element)
        pending.extend(reversed(element))
    return found


def _paragraph_text(paragraph: Element) -> str:
    """One paragraph's own text: a paragraph nested in it (a text box) is read on its own."""
    parts: List[str] = []
    pending = list(reversed(paragraph))
    while pending:
        element = pending.pop()
        tag = element.tag
        if tag in (_PARAGRAPH, _FALLBACK):
            continue
        if tag == _TEXT:
            parts.append(element.text or "")
        elif tag in _TABS:
            parts.append("\t")
        elif tag in _BREAKS:
            parts.append("\n")
        elif tag == _HYPHEN:
            parts.append("-")
        else:
            pending.extend(reversed(element))
    return "".join(parts)


_READERS: Dict[Kind, Callable[[bytes], str]] = {
    Kind.TEXT: _utf8,
    Kind.MARKDOWN: _utf8,
    Kind.HTML: _html,
    Kind.PDF: _pdf,
    Kind.DOCX: _docx,
}
