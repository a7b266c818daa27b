"""Stand-ins on 127.0.0.1 for the documents side of the server (issue #12) and S3's presigned POST,
so the clients' uploads are tested before the server serves them, and without the local stack.

``FakeStorage`` plays S3's POST object: it checks the form as a signed policy would (every field
it issued, unchanged; the file last, in ``file``, of exactly the declared size) and answers 204,
or S3's XML error; it answers CORS for a page on another origin. ``FakeDocumentsServer`` speaks
docs/protocol.md's documents messages over a WebSocket: ``upload`` (refusing what the rules
refuse), ``documents``, ``delete``, ``ping``; a stored file goes through the pipeline as the test
plans it (``plan``), its ``document`` events going to every connection. ``serve_directory`` serves
the web page's files. Everything each side received is kept for the test to look at.
"""
from __future__ import annotations

import base64
import http.server
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

# docs/protocol.md, "Documents": extension -> the content types it may be sent with.
KINDS = {
    ".txt": ("text/plain",),
    ".md": ("text/markdown", "text/x-markdown", "text/plain"),
    ".html": ("text/html",),
    ".htm": ("text/html",),
    ".pdf": ("application/pdf",),
    ".docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",),
}
MAX_BYTES = 10 * 1024 * 1024
PIPELINE = ["uploaded", "extracted", "ingesting", "indexed", "analysed"]
ANALYSIS = {"summary": "A short note about the fake pipeline.", "topics": ["testing", "documents"]}


# ---- multipart/form-data, as storage reads it ------------------------------------------------

@dataclass
class Part:
    name: str
    filename: Optional[str]
    headers: Dict[str, str]
    value: bytes


def parse_form(content_type: str, body: bytes) -> List[Part]:
    """The parts of a multipart/form-data body, in the order they were sent (strictly: CRLFs)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    assert match, f"no boundary in {content_type!r}"
    delimiter = b"--" + match.group(1).encode()
    pieces = body.split(delimiter)
    assert pieces[0] == b"", f"bytes before the first boundary: {pieces[0][:80]!r}"
    assert pieces[-1] in (b"--\r\n", b"--"), f"the body does not end with the closing boundary: {pieces[-1][:80]!r}"
    parts = []
    for piece in pieces[1:-1]:
        assert piece.startswith(b"\r\n") and piece.endswith(b"\r\n"), piece[:80]
        head, separator, value = piece[2:-2].partition(b"\r\n\r\n")
        assert separator, f"a part without a blank line after its headers: {piece[:80]!r}"
        headers = {}
        for line in head.decode("utf-8").split("\r\n"):
            key, _, text = line.partition(":")
            headers[key.strip().lower()] = text.strip()
        disposition = headers.get("content-disposition", "")
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        assert disposition.startswith("form-data") and name, disposition
        parts.append(Part(name.group(1), filename.group(1) if filename else None, headers, value))
    return parts


@dataclass
class Issued:
    """A presigned POST the server handed out: what its policy pins."""

    fields: Dict[str, str]
    size: int
    on_stored: Callable[[bytes], None]


@dataclass
class Post:
    """One POST storage received: its headers, body, parts, and what it answered."""

    headers: Dict[str, str]
    body: bytes
    parts: List[Part] = field(default_factory=list)
    status: int = 0


class FakeStorage:
    """S3's POST object on 127.0.0.1; ``refuse = (status, code, message)`` refuses the next POSTs."""

    def __init__(self) -> None:
        self.issued: Dict[str, Issued] = {}
        self.posts: List[Post] = []
        self.refuse: Optional[Tuple[int, str, str]] = None
        storage = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _cors(self) -> None:
                origin = self.headers.get("Origin")
                if origin:  # the bucket's CORS rule: the page's origin may POST and read the answer
                    self.send_header("Access-Control-Allow-Origin", origin)
                    self.send_header("Vary", "Origin")

            def do_OPTIONS(self) -> None:
                self.send_response(200)
                self._cors()
                self.send_header("Access-Control-Allow-Methods", "POST")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                post = Post(dict(self.headers.items()), self.rfile.read(length))
                status, xml, stored = storage._receive(post)
                post.status = status
                storage.posts.append(post)
                body = xml.encode() if xml else b""
                self.send_response(status)
                self._cors()
                if body:
                    self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                if stored is not None:  # the pipeline starts once S3 has answered
                    stored()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def issue(self, key: str, fields: Dict[str, str], size: int, on_stored: Callable[[bytes], None]) -> None:
        self.issued[key] = Issued(fields, size, on_stored)

    def _receive(self, post: Post) -> Tuple[int, str, Optional[Callable[[], None]]]:
        if self.refuse is not None:
            return self.refuse[0], error_xml(self.refuse[1], self.refuse[2]), None
        try:
            post.parts = parse_form(post.headers.get("Content-Type", ""), post.body)
        except AssertionError as exc:
            malformed = f"The body of your POST request is not well-formed multipart/form-data: {exc}"
            return 400, error_xml("MalformedPOSTRequest", malformed), None
        form = {part.name: part.value.decode("utf-8", "replace") for part in post.parts if part.name != "file"}
        issued = self.issued.get(form.get("key", ""))
        if issued is None:
            return 403, error_xml("AccessDenied", "Invalid according to Policy: no such key was signed"), None
        if not post.parts or post.parts[-1].name != "file":
            return 400, error_xml("InvalidArgument", "POST requires exactly one file upload per request."), None
        for name, value in issued.fields.items():
            if form.get(name) != value:
                condition = f'Invalid according to Policy: Policy Condition failed: ["eq", "${name}", "{value}"]'
                return 403, error_xml("AccessDenied", condition), None
        data = post.parts[-1].value
        if len(data) > issued.size:
            return 400, error_xml("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"), None
        if len(data) < issued.size:
            return 400, error_xml("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size"), None
        return 204, "", partial(issued.on_stored, data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def error_xml(code: str, message: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>FAKE{uuid.uuid4().hex[:12].upper()}</RequestId></Error>")


# ---- the server's documents side -------------------------------------------------------------

Plan = Callable[[str, bytes], List[Dict[str, Any]]]


def analysed(file_name: str, data: bytes) -> List[Dict[str, Any]]:
    """The default plan: the whole pipeline, then the analysis; a file holding ``!fail`` is empty."""
    if b"!fail" in data:
        return [{"status": "uploaded"}, {"status": "failed", "code": "empty", "message": "There is no text in it."}]
    return [{"status": status} for status in PIPELINE[:-1]] + [{"status": "analysed", "analysis": ANALYSIS}]


class FakeDocumentsServer:
    """The documents messages over a WebSocket on 127.0.0.1 (one user: whoever has ``token``).

    ``plan(file name, bytes)`` is the document's steps once stored (``document`` event fields);
    a step with ``"drop": True`` is recorded without an event, and every connection is then closed
    (1001, as API Gateway does), so only a ``documents`` after the reconnect can tell it.
    """

    def __init__(self, storage: FakeStorage, token: str = "fake-token", plan: Plan = analysed) -> None:
        from websockets.sync.server import serve

        self.storage = storage
        self.token = token
        self.plan = plan
        self.documents: Dict[str, Dict[str, Any]] = {}  # documentId -> its entry (no status: not stored yet)
        self.received: List[Dict[str, Any]] = []
        self.connections: List[Any] = []
        self.opened = 0
        self._lock = threading.Lock()
        self.server = serve(self._serve, "127.0.0.1", 0, process_request=self._check_token)
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _check_token(self, connection: Any, request: Any) -> Any:
        token = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        if token != self.token:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        return None

    def _serve(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        sending = threading.Lock()
        with self._lock:
            self.connections.append((ws, sending))
            self.opened += 1
        try:
            for raw in ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    message = {"unparsed": raw}
                with self._lock:
                    self.received.append(message)
                for event in self._answer(message if isinstance(message, dict) else {}):
                    with sending:
                        ws.send(json.dumps(event))
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self.connections = [pair for pair in self.connections if pair[0] is not ws]

    def _answer(self, message: Dict[str, Any]) -> List[Dict[str, Any]]:
        action = message.get("action", "ask")
        if action == "ping":
            return [{"type": "pong"}]
        if action == "upload":
            return [self._upload(message)]
        if action == "documents":
            with self._lock:
                entries = [dict(entry) for entry in self.documents.values() if "status" in entry]
            return [{"type": "documents", "documents": entries}]
        if action == "delete":
            with self._lock:
                entry = self.documents.get(message.get("documentId", ""))
            if entry is None or entry.get("status") in (None, "deleted"):
                return [refusal("You have no document with that id.", "not_found")]
            self._step(entry["documentId"], {"status": "deleted"})
            return []
        return [refusal(f"This fake does not serve the {action} action.")]

    def _upload(self, message: Dict[str, Any]) -> Dict[str, Any]:
        name, content_type, size = message.get("fileName"), message.get("contentType"), message.get("size")
        if not isinstance(name, str) or not isinstance(content_type, str) or not isinstance(size, int):
            return refusal("\"fileName\", \"contentType\" and \"size\" are needed.")
        stem, dot, extension = name.rpartition(".")
        types = KINDS.get("." + extension.lower()) if dot and stem else None
        if types is None:
            return refusal(f"\"{name}\" cannot be read: upload a .txt, .md, .html, .htm, .pdf or .docx file.")
        if content_type.split(";")[0].strip().lower() not in types:
            return refusal(f"\"{name}\" is a .{extension} file, but its content type is \"{content_type}\"; "
                           f"send it as {types[0]}.")
        if not 1 <= size <= MAX_BYTES:
            return refusal(f"\"{name}\" is {size:,} bytes; the limit is 10 MB.")
        document_id = uuid.uuid4().hex
        key = f"uploads/fakeowner/{document_id}/{name}"
        policy = {"expiration": "2099-01-01T00:00:00Z", "conditions": [
            {"bucket": "fake-documents"}, {"key": key}, {"Content-Type": content_type}, ["content-length-range", size, size]]}
        fields = {
            "Content-Type": content_type,
            "key": key,
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-credential": "FAKEKEY/20260101/us-east-1/s3/aws4_request",
            "x-amz-date": "20260101T000000Z",
            "policy": base64.b64encode(json.dumps(policy).encode()).decode(),
            "x-amz-signature": uuid.uuid4().hex * 2,
        }
        with self._lock:
            self.documents[document_id] = {"documentId": document_id, "fileName": name}
        self.storage.issue(key, fields, size, partial(self._stored, document_id))
        expires_at = int(time.time() * 1000) + 15 * 60 * 1000
        return {"type": "upload", "documentId": document_id, "url": self.storage.url, "fields": fields, "expiresAt": expires_at}

    def _stored(self, document_id: str, data: bytes) -> None:
        with self._lock:
            name = self.documents[document_id]["fileName"]
        drop = False
        for step in self.plan(name, data):
            if step.get("drop"):
                drop = True
            self._step(document_id, {key: value for key, value in step.items() if key != "drop"}, tell=not drop)
        if drop:
            self.drop()

    def _step(self, document_id: str, fields: Dict[str, Any], tell: bool = True) -> None:
        with self._lock:
            entry = self.documents[document_id]
            for key in ("code", "message", "analysis"):
                entry.pop(key, None)
            entry.update(fields, updatedAt=int(time.time() * 1000))
            event = {"type": "document", **{k: v for k, v in entry.items() if k != "updatedAt"}}
            targets = list(self.connections) if tell else []
        for ws, sending in targets:
            try:
                with sending:
                    ws.send(json.dumps(event))
            except Exception:  # noqa: BLE001 - a connection closing meanwhile misses it, as with API Gateway
                pass

    def add(self, file_name: str, status: str, **fields: Any) -> str:
        """A document the user already has (for the list on connect)."""
        document_id = uuid.uuid4().hex
        with self._lock:
            self.documents[document_id] = {"documentId": document_id, "fileName": file_name, "status": status,
                                           "updatedAt": int(time.time() * 1000), **fields}
        return document_id

    def actions(self) -> List[str]:
        with self._lock:
            return [str(message.get("action", "ask")) for message in self.received]

    def drop(self) -> None:
        """Close every connection, as API Gateway may (1001 going away)."""
        with self._lock:
            targets = list(self.connections)
        for ws, _ in targets:
            ws.close(1001, "Going away")

    def close(self) -> None:
        self.drop()
        self.server.shutdown()


def refusal(message: str, code: str = "invalid_request") -> Dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "retryable": False}


def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory``'s files on 127.0.0.1 (a generator: yields the base URL, stops after)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
