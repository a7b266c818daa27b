"""What an upload may be, and where its bytes, chunks and chunk metadata live in S3.

The client says what it will send (``fileName``, ``contentType``, ``size``) and ``check_upload``
decides before any URL is signed, so a refused file costs nothing. The kind comes from the
extension, and the content type must be one that kind is sent with: a mismatch is a mistake (or a
trick) worth telling the user about before the pipeline fails on it. The size limit is a parameter
because a setting may change it; ``MAX_UPLOAD_BYTES`` is the default.

No S3 key holds text the client wrote as it wrote it: the owner is a digest of the verified user
id, the document id is one this module made, and the file name is reduced to a safe ASCII form
(the real name lives in the document's record and in its chunks' metadata).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Dict, Tuple

from chalicelib.protocol import MAX_FILE_NAME_CHARS, ProtocolError
from chalicelib.turns.ids import encode_parts

MIB = 1024 * 1024
MAX_UPLOAD_BYTES = 10 * MIB  # the default; a setting may lower or raise it (check_upload's max_bytes)
MAX_CHUNKS = 99_999  # chunk-00001 ... chunk-99999: five digits keep the keys in the chunks' order
MAX_KEY_STEM_CHARS = 100  # of the file name's stem in an upload's key (the whole name is in the record)


class Kind(StrEnum):
    """How a file is read (``extract.extract_text``); ``.htm`` and ``.html`` are one kind."""

    TEXT = "txt"
    MARKDOWN = "md"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"


DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
# Extension -> its kind and the content types it may be sent with; the first is the one to send
# when the client does not know (a browser's File.type is "" for some files, e.g. .md on Windows).
EXTENSIONS: Dict[str, Tuple[Kind, Tuple[str, ...]]] = {
    ".txt": (Kind.TEXT, ("text/plain",)),
    ".md": (Kind.MARKDOWN, ("text/markdown", "text/x-markdown", "text/plain")),
    ".html": (Kind.HTML, ("text/html",)),
    ".htm": (Kind.HTML, ("text/html",)),
    ".pdf": (Kind.PDF, ("application/pdf",)),
    ".docx": (Kind.DOCX, (DOCX_TYPE,)),
}


class UploadRefused(ProtocolError):
    """An upload the rules refuse: ``invalid_request`` with words for the user. ``reason`` is for
    logs and tests: ``name``, ``kind``, ``content_type`` or ``size``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class UploadRequest:
    """An upload ``check_upload`` accepted."""

    file_name: str  # as the user named it: shown back to them, stored in the chunks' metadata
    content_type: str  # the media type, lower case, without parameters (what the signed POST pins)
    size: int  # bytes, as declared: the signed POST should hold the upload to exactly this
    kind: Kind


def check_upload(file_name: str, content_type: str, size: int, max_bytes: int = MAX_UPLOAD_BYTES) -> UploadRequest:
    """The upload the client asked for, if the rules accept it; else ``UploadRefused`` saying why.

    Checked in the order a person would fix them: the name, its kind, the content type, the size.
    """
    _check_name(file_name)
    extension = extension_of(file_name)
    if extension not in EXTENSIONS:
        raise UploadRefused("kind", f"{_shown(file_name)} cannot be read: upload {_accepted_kinds()} file.")
    kind, types = EXTENSIONS[extension]
    essence = media_type(content_type)
    if essence not in types:
        raise UploadRefused(
            "content_type",
            f"{_shown(file_name)} is a {extension} file, but its content type is {_shown(content_type)}; "
            f"send it as {_either(types)}.",
        )
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise UploadRefused("size", f"\"size\" must be the file's size in bytes: 1 byte to {_mb(max_bytes)}.")
    if size > max_bytes:
        raise UploadRefused(
            "size", f"{_shown(file_name)} is {_mb(size)} ({size:,} bytes); the limit is {_mb(max_bytes)}."
        )
    return UploadRequest(file_name=file_name, content_type=essence, size=size, kind=kind)


# Control characters, invisible formatting (bidi overrides that make "txt.exe" look like
# "exe.txt", zero-width characters), surrogates and line/paragraph separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _check_name(file_name: str) -> None:
    if not isinstance(file_name, str) or not 1 <= len(file_name) <= MAX_FILE_NAME_CHARS:
        raise UploadRefused("name", f"\"fileName\" must be the file's name: 1 to {MAX_FILE_NAME_CHARS} characters.")
    if "/" in file_name or "\\" in file_name:
        raise UploadRefused("name", "\"fileName\" must be a file's name, not a path: no \"/\" or \"\\\".")
    if any(unicodedata.category(character) in _INVISIBLE for character in file_name):
        raise UploadRefused("name", "\"fileName\" holds a control or invisible formatting character; rename the file.")
    if not file_name.strip():
        raise UploadRefused("name", "\"fileName\" is only spaces; name the file.")


def extension_of(file_name: str) -> str:
    """``.pdf`` for ``Report.PDF``; ``""`` without one (``.txt`` alone is a hidden file's name)."""
    stem, dot, extension = file_name.rpartition(".")
    return "." + extension.lower() if dot and stem.strip() else ""


def media_type(content_type: str) -> str:
    """``text/html; charset=UTF-8`` -> ``text/html``: the type and subtype, lower case."""
    return content_type.split(";", 1)[0].strip().lower() if isinstance(content_type, str) else ""


def _accepted_kinds() -> str:
    names = list(EXTENSIONS)
    return "a " + ", ".join(names[:-1]) + " or " + names[-1]


def _either(options: Tuple[str, ...]) -> str:
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]


def _shown(value: object, limit: int = 60) -> str:
    text = str(value)
    shown = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"\"{shown}\""


def _mb(size: int) -> str:
    return f"{size / MIB:.1f}".removesuffix(".0") + " MB"


# ---- document ids and S3 keys ----------------------------------------------------------------

_DOCUMENT_ID = re.compile(r"[0-9a-f]{32}")


def new_document_id() -> str:
    """A new document's id: 32 hex digits (uuid4), a protocol ``Id`` and safe in an S3 key."""
    return uuid.uuid4().hex


def is_document_id(value: object) -> bool:
    """Whether ``value`` could be an id ``new_document_id`` made (a client's ``documentId`` may not be)."""
    return isinstance(value, str) and _DOCUMENT_ID.fullmatch(value) is not None


def owner_segment(user_id: str) -> str:
    """The user's part of every key: 48 hex digits of SHA-256 over ("documents", user id).

    Why a digest: ``ids.encode_parts`` is unambiguous but not key-safe (it joins with NUL and
    keeps whatever the user id holds), and a user id (an email with some identity providers) would
    otherwise show in S3 event notifications, access logs and CloudTrail. A digest is fixed-length
    hex, cannot collide in practice (192 bits) and is domain-separated, like ``ids.memory_id``;
    ``encode_parts`` builds its input, so ("documents", id) cannot pass for another tuple. It
    cannot be reversed: the pipeline finds a document's owner in its record or its sidecar, never
    in the key.
    """
    return hashlib.sha256(encode_parts("documents", user_id).encode("utf-8")).hexdigest()[:48]


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def key_file_name(file_name: str) -> str:
    """The file name as an upload's key holds it: ASCII letters, digits, ``.``, ``_`` and ``-``.

    Accents are dropped (``Résumé.pdf`` -> ``Resume.pdf``), anything else becomes ``-``, the
    stem is cut to ``MAX_KEY_STEM_CHARS`` and never starts or ends with a dot; a name with nothing
    left is ``document``. Keys stay plain in URLs and S3 event notifications; two names that
    reduce alike cannot collide, since each document has its own prefix.
    """
    extension = extension_of(file_name)
    stem = file_name[: len(file_name) - len(extension)] if extension else file_name
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    safe = re.sub(r"\.{2,}", ".", _UNSAFE.sub("-", ascii_stem)).strip(".-_")[:MAX_KEY_STEM_CHARS].strip(".-_")
    return (safe or "document") + (extension if extension in EXTENSIONS else "")


def upload_prefix(user_id: str, document_id: str) -> str:
    """Where a document's upload lives: ``uploads/<owner>/<documentId>/``."""
    return f"uploads/{owner_segment(user_id)}/{_checked(document_id)}/"


def upload_key(user_id: str, document_id: str, file_name: str) -> str:
    """The S3 key a document is uploaded to: ``uploads/<owner>/<documentId>/<safe file name>``."""
    return upload_prefix(user_id, document_id) + key_file_name(file_name)


def parse_upload_key(key: str) -> Tuple[str, str]:
    """(owner segment, document id) of a key ``upload_key`` made; ValueError for any other key."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "uploads" or not re.fullmatch(r"[0-9a-f]{48}", parts[1]) \
            or not is_document_id(parts[2]) or not parts[3]:
        raise ValueError(f"not an upload key: {key[:200]!r}")
    return parts[1], parts[2]


def chunks_prefix(user_id: str, document_id: str) -> str:
    """Where a document's chunks (and their sidecars) live: ``kb/<owner>/<documentId>/``."""
    return f"kb/{owner_segment(user_id)}/{_checked(document_id)}/"


def chunk_key(user_id: str, document_id: str, number: int) -> str:
    """The key of chunk ``number`` (from 1) of a document: ``kb/<owner>/<documentId>/chunk-00001.txt``."""
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_CHUNKS:
        raise ValueError(f"a chunk number is 1 to {MAX_CHUNKS:,}, not {number!r}")
    return f"{chunks_prefix(user_id, document_id)}chunk-{number:05d}.txt"


def metadata_key(key: str) -> str:
    """The sidecar of an object for Bedrock knowledge bases: ``<key>.metadata.json``, beside it."""
    return key + ".metadata.json"


def sidecar(user_id: str, document_id: str, file_name: str) -> Dict[str, Any]:
    """A chunk's metadata file, as Bedrock knowledge bases read it from S3.

    ``owner`` is the verified user id itself (not the key's digest): retrieval filters on it
    (``{"equals": {"key": "owner", "value": ...}}``) so that a user's questions reach only their
    own documents.
    """
    return {"metadataAttributes": {"owner": user_id, "documentId": document_id, "fileName": file_name}}


def _checked(document_id: str) -> str:
    if not is_document_id(document_id):
        raise ValueError(f"not a document id this server made: {str(document_id)[:200]!r}")
    return document_id
