"""The Bedrock emulator, driven through boto3's real serializers and parsers."""

import http.client
import json
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EventStreamError

from devserver.bedrock import BedrockEmulator, big_answer, split_words

AGENT = {"agentId": "AGENT12345", "agentAliasId": "TSTALIASID"}
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def make_client(service: str, url: str):
    # NB: retries={"max_attempts": 1} means ONE RETRY (two attempts) in
    # botocore; total_max_attempts=1 is what really disables retries.
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def emu():
    with BedrockEmulator(chunk_delay=0.002) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def agent(emu):
    return make_client("bedrock-agent-runtime", emu.url)


@pytest.fixture(scope="module")
def runtime(emu):
    return make_client("bedrock-runtime", emu.url)


def new_session() -> str:
    return f"sess-{uuid.uuid4()}"


def invoke(agent, text, *, stream=True, **kwargs):
    kwargs.setdefault("sessionId", new_session())
    if stream:
        kwargs["streamingConfigurations"] = {"streamFinalResponse": True}
    return agent.invoke_agent(**AGENT, inputText=text, **kwargs)


def chunks(response) -> list[str]:
    return [e["chunk"]["bytes"].decode() for e in response["completion"] if "chunk" in e]


def test_split_words_keeps_every_character():
    assert split_words("You said: hello world") == ["You ", "said: ", "hello ", "world"]
    text = "  a\tb\n\nc  "
    assert "".join(split_words(text)) == text
    assert len(big_answer(12345)) == 12345 and big_answer(50).startswith("You said: ")


def test_default_answer_streams_word_chunks(emu, agent):
    session = new_session()
    response = invoke(agent, "hello world", sessionId=session, memoryId="user-1", enableTrace=False)

    parts = chunks(response)

    assert "".join(parts) == "You said: hello world"
    assert len(parts) >= 3
    assert response["sessionId"] == session
    assert response["memoryId"] == "user-1"
    assert response["contentType"] == "application/json"
    seen = [r for r in emu.requests if r.uri_params().get("sessionId") == session]
    assert len(seen) == 1
    operation, path, body = seen[0]
    assert operation == "InvokeAgent"
    assert path == f"/agents/AGENT12345/agentAliases/TSTALIASID/sessions/{session}/text"
    assert body["memoryId"] == "user-1"
    assert body["enableTrace"] is False
    assert body["streamingConfigurations"] == {"streamFinalResponse": True}


def test_without_stream_final_response_one_chunk(agent):
    assert chunks(invoke(agent, "hello world", stream=False)) == ["You said: hello world"]


def test_big_answer_exact_size(agent):
    parts = chunks(invoke(agent, "!big 100000"))
    answer = "".join(parts)
    assert len(answer) == 100000 and answer.isascii()
    assert answer.startswith("You said: ")
    assert len(parts) >= 100 and max(map(len, parts)) <= 1000


def test_throttle_every_time(agent):
    session = new_session()
    for _ in range(2):
        with pytest.raises(agent.exceptions.ThrottlingException) as info:
            invoke(agent, "!throttle", sessionId=session)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_throttle_once_per_session(agent):
    session = new_session()
    with pytest.raises(agent.exceptions.ThrottlingException):
        invoke(agent, "!throttle-once", sessionId=session)
    assert "".join(chunks(invoke(agent, "!throttle-once", sessionId=session))) == "You said: !throttle-once"
    with pytest.raises(agent.exceptions.ThrottlingException):  # another session: throttled once too
        invoke(agent, "!throttle-once")


def test_stream_error_after_one_chunk(agent):
    stream = invoke(agent, "!stream-error")["completion"]
    events = iter(stream)
    assert "chunk" in next(events)
    with pytest.raises(EventStreamError) as info:
        next(events)
    stream.close()  # an abandoned stream keeps its connection open
    assert info.value.response["Error"]["Code"] == "internalServerException"


def test_stream_throttle_without_chunk(agent):
    stream = invoke(agent, "!stream-throttle")["completion"]
    with pytest.raises(EventStreamError) as info:
        list(stream)
    stream.close()
    assert info.value.response["Error"]["Code"] == "throttlingException"


def test_trace_events_only_when_enabled(agent):
    events = list(invoke(agent, "!trace please", enableTrace=True)["completion"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[:2] == ["trace", "trace"] and set(kinds[2:-1]) == {"chunk"} and kinds[-1] == "trace"
    part = events[0]["trace"]
    assert part["agentId"] == "AGENT12345" and part["agentAliasId"] == "TSTALIASID"
    assert part["trace"]["orchestrationTrace"]["rationale"]["text"]
    # Last, the orchestration model's invocation output: the tokens it used, as Bedrock reports them.
    output = events[-1]["trace"]["trace"]["orchestrationTrace"]["modelInvocationOutput"]
    assert output["metadata"]["usage"] == {"inputTokens": 2, "outputTokens": len(output["rawResponse"]["content"].split())}

    quiet = list(invoke(agent, "!trace please", enableTrace=False)["completion"])
    assert all("chunk" in e for e in quiet)


@pytest.mark.parametrize("session", ["bad id!", "x" * 101, "a/b"])
def test_bad_session_id(agent, session):
    with pytest.raises(agent.exceptions.ValidationException) as info:
        invoke(agent, "hi", sessionId=session)
    assert "sessionId" in info.value.response["Error"]["Message"]


def test_bad_memory_id(agent):
    with pytest.raises(agent.exceptions.ValidationException):
        invoke(agent, "hi", memoryId="not valid")


def test_input_text_limit(agent):
    assert len("".join(chunks(invoke(agent, "x" * 25_000, stream=False)))) == 25_010
    with pytest.raises(agent.exceptions.ValidationException):
        invoke(agent, "x" * 25_001)


def test_missing_input_text(agent):
    with pytest.raises(agent.exceptions.ValidationException):
        agent.invoke_agent(**AGENT, sessionId=new_session())


def test_return_control_round_trip(emu, agent):
    session = new_session()
    events = list(invoke(agent, "!return-control weather?", sessionId=session)["completion"])
    assert len(events) == 1
    payload = events[0]["returnControl"]
    uuid.UUID(payload["invocationId"])
    (function_input,) = payload["invocationInputs"]
    call = function_input["functionInvocationInput"]
    assert call["actionGroup"] and call["function"]
    assert call["parameters"] == [{"name": "query", "type": "string", "value": "!return-control weather?"}]

    result = {
        "functionResult": {
            "actionGroup": call["actionGroup"],
            "function": call["function"],
            "responseBody": {"TEXT": {"body": "sunny, 21C"}},
        }
    }
    response = agent.invoke_agent(
        **AGENT,
        sessionId=session,
        sessionState={"invocationId": payload["invocationId"], "returnControlInvocationResults": [result]},
        streamingConfigurations={"streamFinalResponse": True},
    )
    assert "".join(chunks(response)) == "You said: sunny, 21C"
    assert emu.requests[-1].body["sessionState"]["invocationId"] == payload["invocationId"]


def test_slow_spreads_chunks(agent):
    started = time.monotonic()
    arrivals = []
    for _event in invoke(agent, "!slow 1")["completion"]:
        arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 3
    assert 0.8 < arrivals[-1] < 3
    assert arrivals[0] < arrivals[-1] - 0.5


def test_slow_without_streaming_is_one_late_chunk(agent):
    started = time.monotonic()
    parts = chunks(invoke(agent, "!slow 0.3", stream=False))
    assert parts == ["You said: !slow 0.3"]
    assert time.monotonic() - started >= 0.25


def test_converse_stream_with_history(emu, runtime):
    messages = [
        {"role": "user", "content": [{"text": "first"}]},
        {"role": "assistant", "content": [{"text": "You said: first (turn 1)"}]},
        {"role": "user", "content": [{"text": "hello world"}]},
    ]
    response = runtime.converse_stream(
        modelId=MODEL,
        messages=messages,
        system=[{"text": "be brief"}],
        inferenceConfig={"maxTokens": 100},
        performanceConfig={"latency": "optimized"},
    )
    events = list(response["stream"])
    kinds = [next(iter(e)) for e in events]
    deltas = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]

    assert "".join(deltas) == "You said: hello world (turn 2)"
    assert len(deltas) >= 3
    assert kinds[0] == "messageStart" and events[0]["messageStart"]["role"] == "assistant"
    assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    usage = events[-1]["metadata"]["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] > 0
    assert events[-1]["metadata"]["metrics"]["latencyMs"] >= 0
    recorded = emu.requests[-1]
    assert recorded.operation == "ConverseStream" and recorded.uri_params() == {"modelId": MODEL}
    assert recorded.body["performanceConfig"] == {"latency": "optimized"}


def test_converse_stream_errors(runtime):
    user = [{"role": "user", "content": [{"text": "!throttle"}]}]
    with pytest.raises(runtime.exceptions.ThrottlingException):
        runtime.converse_stream(modelId=MODEL, messages=user)
    user = [{"role": "user", "content": [{"text": "!stream-error"}]}]
    stream = runtime.converse_stream(modelId=MODEL, messages=user)["stream"]
    events = iter(stream)
    assert "messageStart" in next(events) and "contentBlockDelta" in next(events)
    with pytest.raises(EventStreamError) as info:
        next(events)
    stream.close()
    assert info.value.response["Error"]["Code"] == "internalServerException"


def test_concurrent_requests():
    with BedrockEmulator(chunk_delay=0.05) as emulator:
        agent = make_client("bedrock-agent-runtime", emulator.url)
        results: dict[int, str] = {}

        def ask(i: int) -> None:
            results[i] = "".join(chunks(invoke(agent, f"number {i} here")))

        started = time.monotonic()
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        elapsed = time.monotonic() - started

        assert results == {i: f"You said: number {i} here" for i in range(8)}
        assert len(emulator.requests) == 8
        assert elapsed < 8 * 4 * 0.05  # overlapped, not one after another


def test_stop_cuts_a_stream_in_flight():
    emulator = BedrockEmulator().start()
    agent = make_client("bedrock-agent-runtime", emulator.url)
    stream = invoke(agent, "!slow 30")["completion"]
    started = time.monotonic()
    stopper = threading.Timer(0.2, emulator.stop)
    stopper.start()
    with pytest.raises(Exception):  # noqa: B017 - a cut stream fails in botocore or urllib3, by timing
        list(stream)
    stream.close()
    stopper.join()
    assert time.monotonic() - started < 5


def test_unsigned_request_and_ping():
    with BedrockEmulator() as emulator:
        conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
        conn.request("POST", "/agents/A/agentAliases/B/sessions/s1/text", body=json.dumps({"inputText": "hi"}))
        response = conn.getresponse()
        assert response.status == 403 and json.loads(response.read())["message"]
        conn.request("GET", "/ping")
        assert conn.getresponse().status == 200
        conn.close()


def test_loopback_only():
    with pytest.raises(ValueError):
        BedrockEmulator(host="0.0.0.0")


def test_agentcore_runtime_rejects_a_long_session_id_and_streams_sse():
    with BedrockEmulator(chunk_delay=0.001) as emu:
        agentcore = boto3.client(
            "bedrock-agentcore",
            endpoint_url=emu.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"total_max_attempts": 1}),
        )
        arn = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/echo-1"
        with pytest.raises(agentcore.exceptions.ValidationException):
            # botocore checks only the minimum length (33): 257 characters is the server's to refuse
            agentcore.invoke_agent_runtime(agentRuntimeArn=arn, runtimeSessionId="x" * 257, payload=b'{"prompt": "hi"}')
        response = agentcore.invoke_agent_runtime(
            agentRuntimeArn=arn, runtimeSessionId="s" * 40, payload=b'{"prompt": "hi there"}'
        )
        assert response["contentType"] == "text/event-stream"
        body = response["response"].read().decode()
        assert body == (
                'data: "You "\n\ndata: "said: "\n\ndata: "hi "\n\ndata: "there"\n\n'
                # then the tokens, as a Strands agent's metadata event reports them
                'data: {"event": {"metadata": {"usage": {"inputTokens": 2, "outputTokens": 4, "totalTokens": 6}}}}\n\n'
            )
