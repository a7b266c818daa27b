"""The command-line client against a real local stack: what a script sees (output and exit code)."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

import pytest

from chalicelib import protocol
from chalicelib.turns.record import parse_resumer
from client import exit_codes
from client.connection import Connection, Dropped, Lost
from client.render import StatusLine, TurnPrinter, describe_error, describe_inputs
from client.tools import tool_results
from client.turn import Turn, ask_message
from tests.support.faults import drop, dynamodb, table_named, unique_user
from tests.support.stack import FAST, Stack, answer_of, receive_turn, start_stack, stop_stack
from tests.support.timing import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 30


def run_client(stack: Any, *args: str, user: str = "", token: str = "", stdin: str = "") -> subprocess.CompletedProcess:
    token = token or stack.token(user or unique_user("cli"))
    return subprocess.run(
        [sys.executable, "-m", "client", "--url", stack.url, "--token", token, *args],
        cwd=ROOT,
        env={**os.environ, "AGENTSTREAM_HISTORY": ""},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


class Streaming:
    """A client process whose standard output is read as it comes (to act mid-answer)."""

    def __init__(self, stack: Any, user: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "client", "--url", stack.url, "--token", stack.token(user), *args],
            cwd=ROOT,
            env={**os.environ, "AGENTSTREAM_HISTORY": ""},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._out: List[bytes] = []
        self._err: List[bytes] = []
        self._readers = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(stream: Any, into: List[bytes]) -> None:
        for byte in iter(lambda: stream.read(1), b""):
            into.append(byte)

    @property
    def stdout(self) -> str:
        return b"".join(self._out).decode()

    @property
    def stderr(self) -> str:
        return b"".join(self._err).decode()

    def wait_for_output(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stdout:
            assert time.monotonic() < deadline, f"no {text!r} in {self.stdout!r} / {self.stderr!r}"
            assert self.process.poll() is None, f"exited {self.process.returncode}: {self.stderr}"
            time.sleep(0.02)

    def finish(self) -> int:
        code = self.process.wait(timeout=TIMEOUT_S)
        for reader in self._readers:
            reader.join(timeout=5)
        return code


@pytest.fixture(scope="module")
def progress_stack() -> Iterator[Stack]:
    """A stack whose running turns send ``progress`` after half a second of silence (not 10 s)."""
    stack = start_stack(**{**FAST, "PROGRESS_INTERVAL_S": "0.5"})
    yield stack
    stop_stack(stack)


def turn_of(stack: Any, user: str) -> Dict[str, Any]:
    """The user's only turn, as the turns table holds it (each test has a user of its own)."""
    db = dynamodb(stack)

    def found() -> Optional[Dict[str, Any]]:
        items = db.scan(
            TableName=table_named(db, "turns"), FilterExpression="userId = :u",
            ExpressionAttributeValues={":u": {"S": user}}, ConsistentRead=True,
        )["Items"]
        return items[0] if len(items) == 1 else None

    item = wait_until(found, 10, f"{user} has no single turn")
    assert item is not None
    return item


def test_ask_prints_the_answer_and_exits_0(local_stack):
    result = run_client(local_stack, "ask", "What is **SQS**?")
    assert (result.returncode, result.stdout) == (0, "You said: What is **SQS**?\n")
    assert "[done]" in result.stderr


def test_ask_reads_the_question_from_standard_input(local_stack):
    result = run_client(local_stack, "ask", "-", stdin="from a pipe")
    assert (result.returncode, result.stdout) == (0, "You said: from a pipe\n")


def test_trace_prints_the_agent_s_trace_events_on_stderr(local_stack):
    with_trace = run_client(local_stack, "ask", "!trace why", "--trace")  # options go before or after ask
    without = run_client(local_stack, "ask", "!trace why")
    assert with_trace.returncode == without.returncode == 0
    assert with_trace.stdout == without.stdout == "You said: !trace why\n"
    assert with_trace.stderr.count("[trace]") == 3  # two steps, then the model's tokens
    assert '"kind": "model"' in with_trace.stderr
    assert "[trace]" not in without.stderr


def test_conversation_names_one_agent_session_across_runs(local_stack):
    user = unique_user("conv")
    for prompt in ("first", "second"):
        assert run_client(local_stack, "--conversation", "trip", "ask", prompt, user=user).returncode == 0
    assert run_client(local_stack, "ask", "third", user=user).returncode == 0
    db = dynamodb(local_stack)
    (table,) = [name for name in db.list_tables()["TableNames"] if "turn" in name.lower()]
    items = db.scan(
        TableName=table, FilterExpression="userId = :u", ExpressionAttributeValues={":u": {"S": user}}
    )["Items"]
    sessions = {item["prompt"]["S"]: item["sessionId"]["S"] for item in items}
    assert sessions["first"] == sessions["second"] != sessions["third"]


def test_an_error_event_exits_1_and_names_the_code(local_stack):
    result = run_client(local_stack, "ask", "!stream-error")
    assert result.returncode == exit_codes.TURN_FAILED
    assert "error [agent_error" in result.stderr


def test_a_refused_token_exits_3(local_stack):
    result = run_client(local_stack, "ask", "hello", token="not-a-token")
    assert result.returncode == exit_codes.REFUSED
    assert "refused" in result.stderr and "token" in result.stderr


def test_bad_usage_exits_2(local_stack):
    no_token = subprocess.run(
        [sys.executable, "-m", "client", "ask", "hi"], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
        env={key: value for key, value in os.environ.items() if key != "AGENTSTREAM_TOKEN"},
    )
    assert no_token.returncode == exit_codes.USAGE and "token" in no_token.stderr
    assert run_client(local_stack, "ask", "   ").returncode == exit_codes.USAGE
    invisible = run_client(local_stack, "ask", "\u200b \u2060\ufeff")  # the server would refuse it
    assert invisible.returncode == exit_codes.USAGE and "invisible" in invisible.stderr


def test_no_server_exits_4(local_stack):
    from devserver.stack import free_port

    result = subprocess.run(
        [sys.executable, "-m", "client", "--url", f"ws://127.0.0.1:{free_port()}", "--token", "t", "ask", "hi"],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert result.returncode == exit_codes.LOST and "connection lost" in result.stderr


def slow_ask(stack: Any, who: str, seconds: int, under_way: str) -> Tuple[str, str, Streaming]:
    """A new user's `ask` of a thirty-word answer spread over ``seconds``, read until ``under_way``
    was printed: a point in the turn a fault can strike at. Returns (user, prompt, client)."""
    user = unique_user(who)
    prompt = f"!slow {seconds} " + " ".join(f"w{i}" for i in range(30))
    client = Streaming(stack, user, "ask", prompt)
    client.wait_for_output(under_way)
    return user, prompt, client


def test_a_dropped_connection_is_resumed_and_the_answer_printed_once(local_stack):
    user, prompt, client = slow_ask(local_stack, "dropped", 3, "w2 ")
    drop(local_stack, user)
    assert client.finish() == exit_codes.OK, client.stderr
    assert client.stdout == f"You said: {prompt}\n"
    assert "[reconnected]" in client.stderr


def test_a_drop_resumes_after_the_last_seq_printed_and_prints_the_answer_once(local_stack):
    user, prompt, client = slow_ask(local_stack, "from-seq", 6, "w2 ")
    drop(local_stack, user)
    assert client.finish() == exit_codes.OK, client.stderr
    assert client.stdout == f"You said: {prompt}\n"  # whole, once: the resume appended to what was printed
    resumes = [parse_resumer(entry["S"]) for entry in turn_of(local_stack, user)["resumers"]["L"]]
    # The resume named the last seq the client had: at least the three chunks up to "w2 ".
    assert len(resumes) == 1 and resumes[0][1] >= 3, resumes


def test_progress_goes_to_stderr_while_the_answer_alone_goes_to_stdout(progress_stack):
    result = run_client(progress_stack, "ask", "!slow 4 x")  # 0.8 s between chunks: progress in each gap
    assert (result.returncode, result.stdout) == (0, "You said: !slow 4 x\n"), result.stderr
    assert "… still working (" in result.stderr


def test_a_turn_resumed_in_another_client_ends_here_with_exit_1(local_stack):
    user, prompt, client = slow_ask(local_stack, "superseded", 6, "w1 ")
    turn_id = turn_of(local_stack, user)["turnId"]["S"]
    with local_stack.connect(user) as other:  # the same user, in another window
        other.send(json.dumps({"action": "resume", "turnId": turn_id}))
        elsewhere = receive_turn(other, timeout=TIMEOUT_S)
    assert client.finish() == exit_codes.TURN_FAILED
    assert "error [superseded, not retryable]: continued in another window" in client.stderr
    assert "[reconnecting" not in client.stderr  # not taken back
    assert answer_of(elsewhere) == f"You said: {prompt}"


def test_without_retries_a_drop_exits_4(local_stack):
    user = unique_user("dropped")
    client = Streaming(local_stack, user, "--retries", "0", "ask", "!slow 3 " + "word " * 20)
    client.wait_for_output("word")
    drop(local_stack, user)
    assert client.finish() == exit_codes.LOST
    assert "connection lost" in client.stderr


def test_ctrl_c_cancels_the_turn(local_stack):
    user = unique_user("impatient")
    client = Streaming(local_stack, user, "ask", "!slow 5 " + "word " * 30)
    client.wait_for_output("word")
    client.process.send_signal(signal.SIGINT)
    assert client.finish() == exit_codes.TURN_FAILED
    assert "error [cancelled" in client.stderr


def test_chat_answers_each_line_and_takes_commands(local_stack):
    result = run_client(local_stack, stdin="hello\n/trace\n!trace again\n/new\nbye\n")
    assert result.returncode == 0, result.stderr
    for answer in ("You said: hello\n", "You said: !trace again\n", "You said: bye\n"):
        assert answer in result.stdout
    # Traces on from the second question: its two steps and tokens, then the third's tokens.
    assert "[traces on]" in result.stderr and result.stderr.count("[trace]") == 4
    assert "[new conversation" in result.stderr


def test_tools_the_cli_cannot_run_cancel_the_turn_instead_of_hanging(local_stack):
    result = run_client(local_stack, "ask", "!return-control")  # no terminal to ask at
    assert result.returncode == exit_codes.TURN_FAILED
    assert "[return_control] the agent asks the client to run: EmulatorActions.lookup(" in result.stderr
    assert "error [cancelled" in result.stderr


def test_files_are_listed(local_stack):
    result = run_client(local_stack, "ask", "!files")
    assert result.returncode == 0 and "[file] weather.csv (text/csv, 24 bytes)" in result.stderr


def test_the_printer_prints_a_replayed_answer_once():
    out, err = io.StringIO(), io.StringIO()
    printer = TurnPrinter(out, err)
    for text in ("You ", "said: ", "hel"):
        printer.handle({"type": "chunk", "text": text})
    printer.restart()  # resumed: the events come again from seq 1
    for text in ("You said: he", "llo", " there"):
        printer.handle({"type": "chunk", "text": text})
    printer.handle({"type": "done", "stats": {"characters": 21, "chunks": 3, "firstTokenMs": 5, "durationMs": 900}})
    assert out.getvalue() == "You said: hello there\n"
    assert printer.result == exit_codes.OK


def test_the_printer_shows_progress_on_stderr_and_never_in_the_answer():
    out, err = io.StringIO(), io.StringIO()
    printer = TurnPrinter(out, err)
    printer.handle({"type": "progress", "turnId": "t", "elapsedMs": 12_300, "phase": "calling an action group"})
    printer.handle({"type": "chunk", "text": "You "})
    printer.handle({"type": "progress", "turnId": "t", "elapsedMs": 600})
    printer.handle({"type": "chunk", "text": "said"})
    printer.handle({"type": "done"})
    assert out.getvalue() == "You said\n"
    assert err.getvalue() == "… still working (12 s, calling an action group)\n… still working (0.6 s)\n"

    # On a terminal: dim, after the cursor, which goes back before it; erased before the next text.
    out, err = io.StringIO(), io.StringIO()
    printer = TurnPrinter(out, err, status=StatusLine(err, live=True))
    printer.handle({"type": "progress", "turnId": "t", "elapsedMs": 1500, "phase": "planning the answer"})
    note = "… still working (1.5 s, planning the answer)"
    assert err.getvalue() == f"\x1b[2m{note}\x1b[0m\x1b[{len(note)}D"
    printer.handle({"type": "chunk", "text": "Hi"})
    assert err.getvalue().endswith("\x1b[K") and out.getvalue() == "Hi"


def test_an_error_says_when_to_try_again_in_words_a_person_reads():
    limited = {"code": "rate_limited", "retryable": True, "message": "Too fast.", "retryAfterMs": 1500}
    assert describe_error(limited).endswith("(try again in 1.5 s)")
    spent = {"code": "quota_exceeded", "retryable": True, "message": "Spent.", "retryAfterMs": 19_800_000}
    assert describe_error(spent) == (
        "error [quota_exceeded, retryable]: your token budget is used up for now: Spent. (try again in 5 h 30 min)"
    )
    assert describe_error({**spent, "retryAfterMs": 28 * 86_400_000 + 19_800_000}).endswith("(try again in 28 d 5 h)")
    for code in protocol.ErrorCode:
        assert "error [" in describe_error({"code": code.value}) and ": error:" not in describe_error({"code": code.value}), code


def test_the_web_page_says_every_error_code_plainly():
    page = (Path(__file__).resolve().parents[2] / "client" / "web" / "app.js").read_text(encoding="utf-8")
    titles = page[page.index("var ERRORS = {"):]
    titles = titles[: titles.index("};")]
    assert sorted(code.value for code in protocol.ErrorCode if f"\n    {code.value}: " not in titles) == []


def test_tool_results_follow_bedrock_s_shapes():
    event = {
        "inputs": [
            {"functionInvocationInput": {
                "actionGroup": "g", "function": "lookup", "parameters": [{"name": "q", "value": "x"}],
            }},
            {"apiInvocationInput": {"actionGroup": "g", "apiPath": "/p", "httpMethod": "GET"}},
        ]
    }
    assert describe_inputs(event) == "g.lookup(q='x'); g.GET /p()"
    results = tool_results(event, ["1", "2"])
    message = {"action": "return_control", "turnId": "t", "invocationId": "i", "results": results}
    protocol.validator("ClientMessage")(message)
    assert results == [
        {"functionResult": {"actionGroup": "g", "function": "lookup", "responseBody": {"TEXT": {"body": "1"}}}},
        {"apiResult": {"actionGroup": "g", "apiPath": "/p", "httpMethod": "GET", "httpStatusCode": 200,
                       "responseBody": {"application/json": {"body": "2"}}}},
    ]


class ScriptedLink:
    """Stands in for client.connection.Connection: each message sent queues the frames scripted
    for its action (a Dropped in the script is raised by recv, as a cut connection would)."""

    IDLE_S = 5.0  # a turn still waiting this long after the script ran out is stuck: fail, not hang

    def __init__(self, **script: List[List[Any]]) -> None:
        self.script = script
        self.sent: List[Dict[str, Any]] = []
        self.frames: Deque[Any] = deque()
        self.reopened = 0
        self.idle_since: Optional[float] = None

    def send(self, message: Dict[str, Any]) -> None:
        self.sent.append(message)
        self.frames.extend(self.script[message["action"]].pop(0))

    def recv(self, timeout: float) -> Optional[Dict[str, Any]]:
        if not self.frames:
            self.idle_since = self.idle_since or time.monotonic()
            assert time.monotonic() - self.idle_since < self.IDLE_S, f"the turn is stuck; it sent {self.sent}"
            return None
        self.idle_since = None
        frame = self.frames.popleft()
        if frame is Dropped:
            raise Dropped()
        return frame

    def reopen(self) -> None:
        self.reopened += 1
        self.frames.clear()

    def close(self) -> None:
        pass


def test_a_turn_resumes_after_a_drop_without_a_terminal_or_a_server():
    def chunk(seq: int, text: str) -> Dict[str, Any]:
        return {"type": "chunk", "turnId": "t1", "seq": seq, "text": text}

    message = ask_message("hi", None, False)
    accepted = {"type": "accepted", "turnId": "t1"}
    link = ScriptedLink(
        ask=[[{**accepted, "requestId": message["requestId"]}, chunk(1, "You "), chunk(2, "said"), Dropped]],
        resume=[[accepted, chunk(1, "You "), chunk(2, "said"), chunk(3, ": hi"),
                 {"type": "done", "turnId": "t1", "seq": 4}]],
    )
    out, err = io.StringIO(), io.StringIO()
    assert Turn(link, TurnPrinter(out, err), message).run() == exit_codes.OK
    assert out.getvalue() == "You said: hi\n"
    assert [m["action"] for m in link.sent] == ["ask", "resume"] and link.reopened == 1


def chunk(seq: int, text: str) -> Dict[str, Any]:
    return {"type": "chunk", "turnId": "t1", "seq": seq, "text": text}


ACCEPTED = {"type": "accepted", "turnId": "t1"}


def test_a_resume_asks_for_what_came_after_the_last_seq_and_appends_it():
    message = ask_message("hi", None, False)
    link = ScriptedLink(
        ask=[[{**ACCEPTED, "requestId": message["requestId"]}, chunk(1, "You "), chunk(2, "said"), Dropped]],
        resume=[[ACCEPTED, chunk(3, ": hi"), {"type": "done", "turnId": "t1", "seq": 4}]],  # only what came after
    )
    out, err = io.StringIO(), io.StringIO()
    assert Turn(link, TurnPrinter(out, err), message).run() == exit_codes.OK
    assert out.getvalue() == "You said: hi\n"
    assert link.sent[1] == {"action": "resume", "turnId": "t1", "fromSeq": 2}


def test_after_tool_results_a_resume_asks_again_from_before_the_request_for_tools():
    message = ask_message("hi", None, False)
    tools = {"type": "return_control", "turnId": "t1", "seq": 2, "invocationId": "i", "inputs": []}
    link = ScriptedLink(
        ask=[[{**ACCEPTED, "requestId": message["requestId"]}, chunk(1, "You "), tools]],
        return_control=[[Dropped]],  # the results are sent; the connection drops before `accepted`
        # The turn went on: its next events are numbered from the request's seq on.
        resume=[[ACCEPTED, chunk(2, "said"), {"type": "done", "turnId": "t1", "seq": 3}]],
    )
    out, err = io.StringIO(), io.StringIO()
    assert Turn(link, TurnPrinter(out, err), message, run_tools=lambda event: ["42"]).run() == exit_codes.OK
    assert out.getvalue() == "You said\n"
    assert [m["action"] for m in link.sent] == ["ask", "return_control", "resume"]
    assert link.sent[2]["fromSeq"] == 1


def test_a_resume_in_another_client_ends_the_turn_here_even_while_resuming():
    message = ask_message("hi", None, False)
    superseded = {"type": "error", "turnId": "t1", "code": "superseded", "message": "Resumed elsewhere.", "retryable": False}
    link = ScriptedLink(
        ask=[[{**ACCEPTED, "requestId": message["requestId"]}, chunk(1, "You "), Dropped]],
        resume=[[superseded]],  # another window's resume won before this one's `accepted`
    )
    out, err = io.StringIO(), io.StringIO()
    assert Turn(link, TurnPrinter(out, err), message).run() == exit_codes.TURN_FAILED
    assert [m["action"] for m in link.sent] == ["ask", "resume"] and link.reopened == 1
    assert "error [superseded" in err.getvalue() and "continued in another window" in err.getvalue()


def test_a_resume_refused_for_too_many_messages_is_sent_once_more_when_the_server_says():
    message = ask_message("hi", None, False)
    refused = {"type": "error", "code": "rate_limited", "message": "Too many.", "retryable": True, "retryAfterMs": 50}
    link = ScriptedLink(
        ask=[[{**ACCEPTED, "requestId": message["requestId"]}, chunk(1, "You "), Dropped]],
        resume=[[refused], [ACCEPTED, chunk(2, "said"), {"type": "done", "turnId": "t1", "seq": 3}]],
    )
    out, err = io.StringIO(), io.StringIO()
    assert Turn(link, TurnPrinter(out, err), message).run() == exit_codes.OK
    assert out.getvalue() == "You said\n"
    assert [(m["action"], m.get("fromSeq")) for m in link.sent] == [("ask", None), ("resume", 1), ("resume", 1)]
    assert "resuming again in" in err.getvalue()


def test_reconnecting_backs_off_then_gives_up():
    from devserver.stack import free_port

    slept: List[float] = []
    conn = Connection(f"ws://127.0.0.1:{free_port()}", "t", attempts=3, sleep=slept.append)
    with pytest.raises(Lost, match="after 3 attempts"):
        conn.reopen()
    ceilings = [0.5, 1.0, 2.0]  # base 0.5 s, doubling; each delay between half the ceiling and all of it
    assert len(slept) == 3 and all(ceiling / 2 <= s <= ceiling for s, ceiling in zip(slept, ceilings, strict=True))
