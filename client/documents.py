"""Documents (issue #12): upload a file for the knowledge base and follow it; list your documents.

The file never travels over the WebSocket. ``upload`` describes it (name, content type, exact
size); the server answers a presigned S3 POST (``url`` and ``fields``, whose signed policy pins that
size and type) or refuses it with an ``error``; the file then goes straight to storage as
multipart/form-data, every field first and the file last, in a field named ``file``. From there
``document`` events follow it: ``uploaded``, ``extracted``, ``ingesting``, ``indexed``, then
``analysed`` (with a summary and topics) or ``failed`` (a code and a message). They are not
replayed after a drop, so the connection is reopened and ``documents`` asked for: where the
document stands now. Standard library only (urllib): nothing to install for an upload.
"""
from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple
from urllib.parse import urlsplit
from xml.etree import ElementTree

from client.connection import Dropped
from client.exit_codes import DOCUMENT_FAILED, OK, STORAGE_REFUSED, TIMED_OUT, TURN_FAILED, UPLOAD_REFUSED
from client.render import StatusLine, describe_error
from client.turn import KEEPALIVE_S, RECV_POLL_S, Event, Follower, Link

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
# The type to send for each extension the server reads (docs/protocol.md, "Documents"): the first
# of those it accepts. Anything else goes as application/octet-stream, and the server says why not.
CONTENT_TYPES = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": DOCX,
}
UNKNOWN_TYPE = "application/octet-stream"

# The pipeline's statuses in order; ``failed`` and ``deleted`` end a document wherever it was.
PIPELINE = ("uploaded", "extracted", "ingesting", "indexed", "analysed")
MEANINGS = {
    "uploaded": "the file arrived",
    "extracted": "its text was read",
    "ingesting": "the knowledge base is indexing it",
    "indexed": "questions can find it",
    "analysed": "summary and topics below",
    "deleted": "the document was deleted",
}
ENDS = {"analysed": OK, "failed": DOCUMENT_FAILED, "deleted": DOCUMENT_FAILED}
RETRY_LATER = ("rate_limited", "throttled")  # refused for now: sent again when the server says
PROGRESS_LIVE_S = 1.0  # a "… waiting" note this often on a terminal (it replaces itself)
PROGRESS_LOGGED_S = 15.0  # and this often elsewhere, where each note is a line of its own
MAX_ERROR_BYTES = 64 * 1024  # of storage's error document


def content_type_for(file_name: str) -> str:
    """The content type to declare for a file, from its extension (any case)."""
    stem, dot, extension = file_name.rpartition(".")
    return CONTENT_TYPES.get("." + extension.lower(), UNKNOWN_TYPE) if dot and stem else UNKNOWN_TYPE


# ---- the POST to storage ---------------------------------------------------------------------

def _quoted(text: str) -> str:
    """A name or file name inside a multipart header's quotes, escaped as browsers do (WHATWG)."""
    return text.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def multipart_form(
    fields: Dict[str, Any], file_name: str, content_type: str, data: bytes, boundary: Optional[str] = None
) -> Tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578): every field in order, then the file, last, in a field
    named ``file`` (S3 ignores whatever follows it). Returns the body and its Content-Type header."""
    values = [(str(name), str(value).encode("utf-8")) for name, value in fields.items()]
    while boundary is None or any(boundary.encode() in chunk for chunk in [data] + [v for _, v in values]):
        boundary = "agentstream-" + uuid.uuid4().hex
    parts: List[bytes] = []
    for name, value in values:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'.encode() + value + b"\r\n")
    header = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{_quoted(file_name)}"\r\n'
              f"Content-Type: {content_type}\r\n\r\n")
    parts.append(header.encode("utf-8") + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class StorageRefused(Exception):
    """Storage did not take the file: its HTTP status (None: not reached) and S3's error code and message."""

    def __init__(self, status: Optional[int], code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def storage_error(status: int, body: bytes) -> Tuple[str, str]:
    """S3's ``<Error><Code>..</Code><Message>..</Message></Error>`` as (code, message)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        text = body.decode("utf-8", "replace").strip()
        return f"HTTP {status}", text[:300] or "(no error document)"
    code = root.findtext("Code") or f"HTTP {status}"
    message = root.findtext("Message") or ""
    return code.strip(), message.strip()


def post_to_storage(
    url: str, fields: Dict[str, Any], file_name: str, content_type: str, data: bytes, timeout: float
) -> int:
    """POST the file to a presigned S3 POST URL; returns the HTTP status (2xx: 204, or 201/200 as
    the fields ask). Raises StorageRefused when storage answers otherwise or cannot be reached,
    TimeoutError when it does not answer within ``timeout`` seconds."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise StorageRefused(None, "bad_url", f"the server gave {url[:80]!r}, not an http(s) URL")
    body, form_type = multipart_form(fields, file_name, content_type, data)
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": form_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        with exc:
            raise StorageRefused(exc.code, *storage_error(exc.code, exc.read(MAX_ERROR_BYTES))) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise TimeoutError(str(exc.reason)) from None
        raise StorageRefused(None, "unreachable", str(exc.reason)) from None
    except (TimeoutError, socket.timeout):
        raise TimeoutError("no answer from storage") from None
    except OSError as exc:  # the connection reset mid-answer
        raise StorageRefused(None, "unreachable", str(exc) or type(exc).__name__) from None


# ---- the terminal's text ---------------------------------------------------------------------

def describe_status(entry: Dict[str, Any]) -> List[str]:
    """A document's status as the lines ``upload`` prints on standard output."""
    status = str(entry.get("status"))
    if status == "failed":
        return [f"failed [{entry.get('code', 'unknown')}]: {entry.get('message', '')}"]
    lines = [f"{status}: {MEANINGS[status]}" if status in MEANINGS else status]
    analysis = entry.get("analysis")
    if status == "analysed" and isinstance(analysis, dict):
        lines.append(f"  summary: {analysis.get('summary', '')}")
        topics = analysis.get("topics")
        if isinstance(topics, list):
            lines.append(f"  topics: {', '.join(str(topic) for topic in topics) or '(none)'}")
    return lines


def describe_entry(entry: Dict[str, Any]) -> str:
    """One line of ``documents``: id, status, when it got there, file name (and why it failed)."""
    updated = entry.get("updatedAt")
    when = datetime.fromtimestamp(updated / 1000).strftime("%Y-%m-%d %H:%M") if isinstance(updated, (int, float)) else "?"
    line = f"{entry.get('documentId')}  {str(entry.get('status')):<9}  {when}  {entry.get('fileName')}"
    if entry.get("status") == "failed":
        line += f"  [{entry.get('code', 'unknown')}] {entry.get('message', '')}"
    return line


class UploadPrinter:
    """The document's statuses on ``out`` (a line each); what happens around them on ``err``."""

    def __init__(self, out: TextIO, err: TextIO, status: Optional[StatusLine] = None) -> None:
        self.out = out
        self.status = status if status is not None else StatusLine(err)

    def info(self, text: str) -> None:
        self.status.write(f"[upload] {text}\n")

    def line(self, text: str) -> None:
        self.status.clear()
        self.out.write(text + "\n")
        self.out.flush()

    def waiting(self, text: str) -> None:
        self.status.note(text)


# ---- one upload, followed to its end ---------------------------------------------------------

Post = Callable[[str, Dict[str, Any], str, str, bytes, float], int]


class Upload(Follower):
    """Describe the file, POST it to storage, follow its ``document`` events to ``analysed`` or
    ``failed``, across reconnects; ``run`` returns the exit code (Lost and Refused raise)."""

    def __init__(
        self,
        conn: Link,
        printer: UploadPrinter,
        file_name: str,
        content_type: str,
        data: bytes,
        timeout_s: float,
        post: Post = post_to_storage,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.printer = printer
        self.file_name = file_name
        self.content_type = content_type
        self.data = data
        self.timeout_s = timeout_s
        self.post = post
        self.clock = clock
        self.request: Event = {"action": "upload", "fileName": file_name, "contentType": content_type, "size": len(data)}
        self.document_id: Optional[str] = None
        self.stored = False
        self.shown: Optional[str] = None  # the last status printed
        self.listing = False  # a `documents` is on its way (after a reconnect)
        self.again_at: Optional[float] = None  # a request refused for now goes again then
        self.reauthenticated = False
        self.result: Optional[int] = None

    def run(self) -> int:
        start = self.clock()
        deadline = start + self.timeout_s
        last_ping = last_note = start
        self.printer.info(f"{self.file_name}: {len(self.data):,} bytes, {self.content_type}")
        self._send_or_reconnect(self.request)
        while self.result is None:
            now = self.clock()
            if now >= deadline:
                return self._timed_out()
            if now - last_ping > KEEPALIVE_S:  # API Gateway closes a connection silent for 10 minutes
                self._send_quietly({"action": "ping"})
                last_ping = now
            if now - last_note >= (PROGRESS_LIVE_S if self.printer.status.live else PROGRESS_LOGGED_S):
                self.printer.waiting(f"… {self._stage()} ({now - start:.0f} s)")
                last_note = now
            if self.again_at is not None and now >= self.again_at:
                self.again_at = None
                self._ask_again()
            wait = min(RECV_POLL_S, deadline - now, RECV_POLL_S if self.again_at is None else self.again_at - now)
            try:
                event = self.conn.recv(max(0.01, wait))
            except Dropped:
                self._reconnect()
                continue
            if event is not None:
                self._handle(event, deadline)
        self.printer.status.clear()
        return self.result

    def _stage(self) -> str:
        if self.document_id is None:
            return "asking the server where to upload"
        if not self.stored:
            return "sending the file to storage"
        return f"{self.shown or 'stored'}; waiting for the next step"

    def _timed_out(self) -> int:
        self.printer.status.clear()
        where = f"document {self.document_id} is {self.shown or 'not reported yet'}" if self.document_id else "no upload URL came"
        self.printer.info(f"timed out after {self.timeout_s:g} s: {where}"
                          + ("; the pipeline goes on (python -m client documents)" if self.stored else ""))
        return TIMED_OUT

    def _handle(self, event: Event, deadline: float) -> None:
        kind = event.get("type")
        if kind == "upload" and self.document_id is None and self.result is None:
            self._store(event, deadline)
        elif kind == "document" and self.document_id is not None and event.get("documentId") == self.document_id:
            self._apply(event)
        elif kind == "documents" and self.document_id is not None:
            self.listing = False
            for entry in event.get("documents") or []:
                if isinstance(entry, dict) and entry.get("documentId") == self.document_id:
                    self._apply(entry)
        elif kind == "error" and "turnId" not in event:
            self._error(event)

    def _store(self, event: Event, deadline: float) -> None:
        url, fields, document_id = event.get("url"), event.get("fields"), event.get("documentId")
        if not (isinstance(url, str) and isinstance(fields, dict) and isinstance(document_id, str)):
            self.printer.info(f"the server's answer to the upload lacks its url, fields or documentId: {event}")
            self.result = UPLOAD_REFUSED
            return
        self.document_id = document_id
        self.printer.line(f"document {self.document_id} {self.file_name}")
        self.printer.info("sending the file to storage")
        try:
            self.post(url, fields, self.file_name, self.content_type, self.data,
                      max(1.0, deadline - self.clock()))
        except StorageRefused as exc:
            status = f"HTTP {exc.status}" if exc.status else "not reached"
            self.printer.info(f"storage refused the file ({status}): {exc.code}: {exc.message}")
            self.result = STORAGE_REFUSED
            return
        except TimeoutError:
            self.printer.info("storage did not answer in time")
            self.result = TIMED_OUT
            return
        self.stored = True
        self.printer.info("stored; the pipeline takes over")

    def _apply(self, entry: Dict[str, Any]) -> None:
        status = entry.get("status")
        if not isinstance(status, str) or status == self.shown:
            return
        if status in PIPELINE and self.shown in PIPELINE and PIPELINE.index(status) < PIPELINE.index(str(self.shown)):
            return  # a late event: the document is already further on
        self.shown = status
        for line in describe_status(entry):
            self.printer.line(line)
        self.result = ENDS.get(status)

    def _error(self, event: Event) -> None:
        code = event.get("code")
        if code == "unauthorized" and not self.reauthenticated:
            self.reauthenticated = True  # the connection's sign-in expired: once more, signed in
            self.printer.info("signed out by the server; reconnecting")
            self.conn.close()
            self._reconnect()
            return
        waiting_for_url = self.document_id is None
        if code in RETRY_LATER and event.get("retryable") and (waiting_for_url or self.listing):
            retry_after_ms = event.get("retryAfterMs")
            delay_s = retry_after_ms / 1000 if isinstance(retry_after_ms, int) else 1.0
            self.again_at = self.clock() + delay_s
            self.printer.info(f"{describe_error(event)}; asking again in {delay_s:.1f} s")
            return
        self.printer.info(describe_error(event))
        if waiting_for_url:
            self.result = UPLOAD_REFUSED  # refused before anything was stored

    def _ask_again(self) -> None:
        self._send_or_reconnect(self.request if self.document_id is None else {"action": "documents"})

    def _reconnect(self) -> None:
        self.conn.reopen()  # raises Lost or Refused when it cannot
        if self.document_id is None:
            # The answer, if there was one, went to the old connection: describe the file again
            # (an upload URL nobody uses expires; nothing was stored).
            self._send_or_reconnect(self.request)
        else:
            # Document events are not replayed: where does it stand now?
            self.listing = True
            self._send_or_reconnect({"action": "documents"})



def list_documents(conn: Link, out: TextIO, err: TextIO, timeout_s: float) -> int:
    """``documents``: the user's documents, a line each on ``out``; OK, TURN_FAILED (an error
    event) or TIMED_OUT. A drop is reconnected and the question asked again."""
    deadline = time.monotonic() + timeout_s
    message = {"action": "documents"}
    sent = False
    while time.monotonic() < deadline:
        try:
            if not sent:
                conn.send(message)
                sent = True
            event = conn.recv(min(RECV_POLL_S, max(0.01, deadline - time.monotonic())))
        except Dropped:
            conn.reopen()
            sent = False
            continue
        if event is None:
            continue
        if event.get("type") == "documents":
            entries = [entry for entry in event.get("documents") or [] if isinstance(entry, dict)]
            for entry in entries:
                out.write(describe_entry(entry) + "\n")
            if not entries:
                err.write("no documents yet (python -m client upload FILE)\n")
            out.flush()
            return OK
        if event.get("type") == "error" and "turnId" not in event:
            err.write(describe_error(event) + "\n")
            return TURN_FAILED
    err.write(f"timed out after {timeout_s:g} s: no answer to documents\n")
    return TIMED_OUT
