"""Each backend's mapping to neutral events, on the Bedrock emulator through boto3's real parsers."""
from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from chalicelib.backends import End, Failure, Files, ReturnControl, TextDelta, Trace, TurnRequest
from chalicelib.backends.agent import AgentBackend
from chalicelib.backends.agentcore import AgentCoreBackend
from chalicelib.backends.converse import ConverseBackend, ModelConfig
from devserver.bedrock import BedrockEmulator
from tests.support.fakes import MemoryHistory

RUNTIME_ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/local_agent-abc123"


@pytest.fixture(scope="module")
def emulator():
    with BedrockEmulator(chunk_delay=0.001) as emu:
        yield emu


def client(emulator, service):
    return boto3.client(
        service,
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )


def run(backend, prompt, **request):
    return list(backend.stream(TurnRequest(prompt, "s-" + "a" * 40, **request)))


def text(events):
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# ---- InvokeAgent

def test_agent_streams_chunks_then_end(emulator):
    events = run(AgentBackend(client(emulator, "bedrock-agent-runtime"), "AGENT", "ALIAS"), "hello there")
    assert text(events) == "You said: hello there"
    assert sum(isinstance(e, TextDelta) for e in events) > 1
    assert isinstance(events[-1], End)


def test_agent_traces_arrive_compact(emulator):
    events = run(AgentBackend(client(emulator, "bedrock-agent-runtime"), "AGENT", "ALIAS"), "!trace x", trace=True)
    traces = [e.trace for e in events if isinstance(e, Trace)]
    assert [t["kind"] for t in traces] == ["rationale", "observation", "model"]
    assert traces[0]["text"].startswith("The user wrote")
    assert traces[-1]["usage"] == {"inputTokens": 2, "outputTokens": 4} == {k: events[-1].usage[k] for k in traces[-1]["usage"]}


def test_every_backend_reports_the_tokens_it_used(emulator):
    """InvokeAgent from its model invocations' traces (enabled even when the client did not ask
    for them), ConverseStream from its metadata, AgentCore from the runtime's own metadata event."""
    backends = [
        AgentBackend(client(emulator, "bedrock-agent-runtime"), "AGENT", "ALIAS"),
        ConverseBackend(client(emulator, "bedrock-runtime"), MemoryHistory(), ModelConfig("local.echo-model")),
        AgentCoreBackend(client(emulator, "bedrock-agentcore"), RUNTIME_ARN),
    ]
    for backend in backends:
        end = run(backend, "count my tokens")[-1]
        assert isinstance(end, End) and end.usage is not None, type(backend).__name__
        assert end.usage["inputTokens"] > 0 and end.usage["outputTokens"] > 0


def test_agent_return_control_and_the_results_round_trip(emulator):
    backend = AgentBackend(client(emulator, "bedrock-agent-runtime"), "AGENT", "ALIAS")
    (control,) = [e for e in run(backend, "!return-control weather in Oslo") if isinstance(e, ReturnControl)]
    assert control.inputs[0]["functionInvocationInput"]["function"] == "lookup"
    results = [{"functionResult": {"actionGroup": "EmulatorActions", "function": "lookup", "responseBody": {"TEXT": {"body": "3 degrees"}}}}]
    events = run(backend, "", invocation_id=control.invocation_id, control_results=results)
    assert text(events) == "You said: 3 degrees"


def test_agent_files(emulator):
    events = run(AgentBackend(client(emulator, "bedrock-agent-runtime"), "AGENT", "ALIAS"), "!files please")
    (files,) = [e for e in events if isinstance(e, Files)]
    assert files.files[0]["name"] == "weather.csv" and files.files[0]["bytes"].startswith(b"city,")


@pytest.mark.parametrize("backend_name", ["agent", "converse", "agentcore"])
def test_every_backend_reports_throttling_the_same_way(emulator, backend_name):
    backends = {
        "agent": lambda: AgentBackend(client(emulator, "bedrock-agent-runtime"), "AGENT", "ALIAS"),
        "converse": lambda: ConverseBackend(client(emulator, "bedrock-runtime"), MemoryHistory(), ModelConfig("local.model")),
        "agentcore": lambda: AgentCoreBackend(client(emulator, "bedrock-agentcore"), RUNTIME_ARN),
    }
    events = run(backends[backend_name](), "!throttle")
    assert events == [Failure("throttled", events[0].message, True)]


# ---- ConverseStream

def test_converse_streams_with_usage_and_keeps_history(emulator):
    history = MemoryHistory()
    backend = ConverseBackend(client(emulator, "bedrock-runtime"), history, ModelConfig("local.model", system_prompt="Be brief.", max_tokens=200, latency="optimized"))
    first = run(backend, "hi")
    assert text(first) == "You said: hi (turn 1)"
    end = first[-1]
    assert isinstance(end, End) and end.stop_reason == "end_turn" and end.usage["outputTokens"] > 0
    second = run(backend, "again")
    assert text(second) == "You said: again (turn 2)"  # the model saw the first exchange
    (sent,) = [r.body for r in emulator.requests if r.operation == "ConverseStream"][-1:]
    assert sent["system"] == [{"text": "Be brief."}]
    assert sent["inferenceConfig"] == {"maxTokens": 200}
    assert sent["performanceConfig"] == {"latency": "optimized"}
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]


def test_converse_stream_error_is_an_agent_error_and_saves_no_history(emulator):
    history = MemoryHistory()
    events = run(ConverseBackend(client(emulator, "bedrock-runtime"), history, ModelConfig("m")), "!stream-error")
    assert isinstance(events[-1], Failure) and events[-1].code == "agent_error"
    assert history.items == {}


# ---- AgentCore

def test_agentcore_streams_server_sent_events(emulator):
    backend = AgentCoreBackend(client(emulator, "bedrock-agentcore"), RUNTIME_ARN, qualifier="DEFAULT")
    events = run(backend, "hello runtime")
    assert text(events) == "You said: hello runtime"
    assert sum(isinstance(e, TextDelta) for e in events) > 1
    request = [r for r in emulator.requests if r.operation == "InvokeAgentRuntime"][-1]
    assert request.body == {"prompt": "hello runtime"}
    assert request.path == f"/runtimes/{RUNTIME_ARN}/invocations"  # percent-encoded on the wire
