"""The command-line client against a real local stack: what a script sees (output and exit code)."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest

from chalicelib import protocol
from client import cli
from tests.client.support import drop, dynamodb, unique_user

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
    assert with_trace.stderr.count("[trace]") == 2
    assert "[trace]" not in without.stderr


def test_conversation_names_one_agent_session_across_runs(local_stack):
    user = unique_user("conv")
    for prompt in ("first", "second"):
        assert run_client(local_stack, "--conversation", "trip", "ask", prompt, user=user).returncode == 0
    assert run_client(local_stack, "ask", "third", user=user).returncode == 0
    db = dynamodb(local_stack)
    (table,) = [name for name in db.list_tables()["TableNames"] if "turn" in name.lower()]
    items = db.scan(TableName=table, FilterExpression="userId = :u", ExpressionAttributeValues={":u": {"S": user}})["Items"]
    sessions = {item["prompt"]["S"]: item["sessionId"]["S"] for item in items}
    assert sessions["first"] == sessions["second"] != sessions["third"]


def test_an_error_event_exits_1_and_names_the_code(local_stack):
    result = run_client(local_stack, "ask", "!stream-error")
    assert result.returncode == cli.TURN_FAILED
    assert "error [agent_error" in result.stderr


def test_a_refused_token_exits_3(local_stack):
    result = run_client(local_stack, "ask", "hello", token="not-a-token")
    assert result.returncode == cli.REFUSED
    assert "refused" in result.stderr and "token" in result.stderr


def test_bad_usage_exits_2(local_stack):
    no_token = subprocess.run(
        [sys.executable, "-m", "client", "ask", "hi"], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
        env={key: value for key, value in os.environ.items() if key != "AGENTSTREAM_TOKEN"},
    )
    assert no_token.returncode == cli.USAGE and "token" in no_token.stderr
    assert run_client(local_stack, "ask", "   ").returncode == cli.USAGE


def test_no_server_exits_4(local_stack):
    from devserver.stack import free_port

    result = subprocess.run(
        [sys.executable, "-m", "client", "--url", f"ws://127.0.0.1:{free_port()}", "--token", "t", "ask", "hi"],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert result.returncode == cli.LOST and "connection lost" in result.stderr


def test_a_dropped_connection_is_resumed_and_the_answer_printed_once(local_stack):
    user = unique_user("dropped")
    prompt = "!slow 3 " + " ".join(f"w{i}" for i in range(30))
    client = Streaming(local_stack, user, "ask", prompt)
    client.wait_for_output("w2 ")
    drop(local_stack, user)
    assert client.finish() == cli.OK, client.stderr
    assert client.stdout == f"You said: {prompt}\n"
    assert "[reconnected]" in client.stderr


def test_without_retries_a_drop_exits_4(local_stack):
    user = unique_user("dropped")
    client = Streaming(local_stack, user, "--retries", "0", "ask", "!slow 3 " + "word " * 20)
    client.wait_for_output("word")
    drop(local_stack, user)
    assert client.finish() == cli.LOST
    assert "connection lost" in client.stderr


def test_ctrl_c_cancels_the_turn(local_stack):
    user = unique_user("impatient")
    client = Streaming(local_stack, user, "ask", "!slow 5 " + "word " * 30)
    client.wait_for_output("word")
    client.process.send_signal(signal.SIGINT)
    assert client.finish() == cli.TURN_FAILED
    assert "error [cancelled" in client.stderr


def test_chat_answers_each_line_and_takes_commands(local_stack):
    result = run_client(local_stack, stdin="hello\n/trace\n!trace again\n/new\nbye\n")
    assert result.returncode == 0, result.stderr
    for answer in ("You said: hello\n", "You said: !trace again\n", "You said: bye\n"):
        assert answer in result.stdout
    assert "[traces on]" in result.stderr and result.stderr.count("[trace]") == 2
    assert "[new conversation" in result.stderr


def test_tools_the_cli_cannot_run_cancel_the_turn_instead_of_hanging(local_stack):
    result = run_client(local_stack, "ask", "!return-control")  # no terminal to ask at
    assert result.returncode == cli.TURN_FAILED
    assert "[return_control] the agent asks the client to run: EmulatorActions.lookup(" in result.stderr
    assert "error [cancelled" in result.stderr


def test_files_are_listed(local_stack):
    result = run_client(local_stack, "ask", "!files")
    assert result.returncode == 0 and "[file] weather.csv (text/csv, 24 bytes)" in result.stderr


def test_the_printer_prints_a_replayed_answer_once():
    out, err = io.StringIO(), io.StringIO()
    printer = cli.TurnPrinter(out, err)
    for text in ("You ", "said: ", "hel"):
        printer.handle({"type": "chunk", "text": text})
    printer.restart()  # resumed: the events come again from seq 1
    for text in ("You said: he", "llo", " there"):
        printer.handle({"type": "chunk", "text": text})
    printer.handle({"type": "done", "stats": {"characters": 21, "chunks": 3, "firstTokenMs": 5, "durationMs": 900}})
    assert out.getvalue() == "You said: hello there\n"
    assert printer.result == cli.OK


def test_tool_results_follow_bedrock_s_shapes():
    event = {
        "inputs": [
            {"functionInvocationInput": {
                "actionGroup": "g", "function": "lookup", "parameters": [{"name": "q", "value": "x"}],
            }},
            {"apiInvocationInput": {"actionGroup": "g", "apiPath": "/p", "httpMethod": "GET"}},
        ]
    }
    assert cli.describe_inputs(event) == "g.lookup(q='x'); g.GET /p()"
    results = cli.tool_results(event, ["1", "2"])
    protocol.validator("ClientMessage")({"action": "return_control", "turnId": "t", "invocationId": "i", "results": results})
    assert results == [
        {"functionResult": {"actionGroup": "g", "function": "lookup", "responseBody": {"TEXT": {"body": "1"}}}},
        {"apiResult": {"actionGroup": "g", "apiPath": "/p", "httpMethod": "GET", "httpStatusCode": 200,
                       "responseBody": {"application/json": {"body": "2"}}}},
    ]
