import pytest

from chalicelib.backends import End, Failure, Files, ReturnControl, TextDelta, Trace, TurnRequest, classify_error, guarded
from chalicelib.retry import backoff_s
from chalicelib.backends.agent import AgentBackend
from tests.support.fakes import FakeAgentRuntime, agent_stream, client_error, stream_error

REQUEST = TurnRequest(prompt="hi", session_id="s-123", memory_id=None, trace=False)


def _run(script, request=REQUEST):
    runtime = FakeAgentRuntime()
    runtime.script = script
    return list(AgentBackend(runtime, "AGENT", "ALIAS").stream(request)), runtime.calls


def test_stream_maps_to_neutral_events_and_asks_for_streaming():
    events, calls = _run(agent_stream("Hel", "lo", traces=[{"orchestrationTrace": {"rationale": {"text": "hm"}}}]))
    rationale = {"kind": "rationale", "text": "hm", "stage": "orchestration"}
    assert events == [Trace(rationale, "planning the answer"), TextDelta("Hel"), TextDelta("lo"), End("s-123")]
    (call,) = calls
    assert call["streamingConfigurations"] == {"streamFinalResponse": True}
    assert call["enableTrace"] is True  # always: progress events name the agent's phase from it
    assert call["sessionId"] == "s-123"
    assert call["agentId"] == "AGENT" and call["agentAliasId"] == "ALIAS"
    assert "memoryId" not in call


def test_memory_and_trace_are_passed_when_asked():
    _, calls = _run(agent_stream("x"), TurnRequest("hi", "s-1", memory_id="m-1", trace=True))
    assert calls[0]["memoryId"] == "m-1" and calls[0]["enableTrace"] is True


def test_a_character_split_across_chunks_is_decoded_whole():
    data = "héllo".encode()
    script = [{"chunk": {"bytes": data[:2]}}, {"chunk": {"bytes": data[2:]}}]
    events, _ = _run(script)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "héllo"


def test_return_control_is_surfaced():
    script = [{"returnControl": {"invocationId": "inv-1", "invocationInputs": [{"functionInvocationInput": {}}]}}]
    events, _ = _run(script)
    assert events[0] == ReturnControl("inv-1", [{"functionInvocationInput": {}}])


def test_tool_results_continue_the_session_instead_of_a_prompt():
    results = [{"functionResult": {"actionGroup": "g", "function": "f", "responseBody": {"TEXT": {"body": "42"}}}}]
    request = TurnRequest("", "s-1", invocation_id="inv-1", control_results=results)
    _, calls = _run(agent_stream("ok"), request)
    assert "inputText" not in calls[0]
    assert calls[0]["sessionState"] == {"invocationId": "inv-1", "returnControlInvocationResults": results}


def test_files_are_surfaced():
    files = [{"name": "a.csv", "type": "text/csv", "bytes": b"x,y"}]
    events, _ = _run([{"files": {"files": files}}, {"chunk": {"bytes": b"see file"}}])
    assert events[0] == Files(files)


def test_a_throttle_inside_the_stream_is_retried_while_nothing_was_said():
    runtime = FakeAgentRuntime()
    scripts = iter([[stream_error("throttlingException")], agent_stream("after", " retry")])

    def invoke_agent(**params):
        runtime.script = next(scripts)
        return FakeAgentRuntime.invoke_agent(runtime, **params)

    runtime.invoke_agent = invoke_agent
    backend = AgentBackend(runtime, "A", "B")
    waits = []
    events = list(guarded(lambda: runtime.invoke_agent(**backend._params(REQUEST)), lambda r: backend._read(r, REQUEST), sleep=waits.append))
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("after"), TextDelta(" retry")]
    assert len(runtime.calls) == 2 and len(waits) == 1


def test_in_stream_throttling_is_given_up_after_the_retries():
    waits = []
    runtime = FakeAgentRuntime()
    runtime.script = [stream_error("throttlingException")]
    backend = AgentBackend(runtime, "A", "B")
    events = list(guarded(lambda: runtime.invoke_agent(**backend._params(REQUEST)), lambda r: backend._read(r, REQUEST), sleep=waits.append))
    assert events[-1].code == "throttled" and len(runtime.calls) == 3 and len(waits) == 2


def test_backoff_grows_with_jitter_and_a_cap():
    for attempt in range(8):
        ceiling = min(4.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= backoff_s(attempt) <= ceiling


def test_throttling_before_the_stream():
    events, _ = _run(client_error("ThrottlingException", "Rate exceeded", 429))
    assert events == [Failure("throttled", events[0].message, True)]


def test_throttling_inside_the_stream_after_a_chunk():
    events, _ = _run([{"chunk": {"bytes": b"partial"}}, stream_error("throttlingException")])
    assert events[0] == TextDelta("partial")
    assert events[1].code == "throttled" and events[1].retryable is True
    assert len(events) == 2


def test_other_failures_are_agent_errors_with_the_reason():
    events, _ = _run(client_error("ResourceNotFoundException", "no such agent", 404))
    assert events[0].code == "agent_error"
    assert "ResourceNotFoundException" in events[0].message and "no such agent" in events[0].message
    assert events[0].retryable is False
    events, _ = _run([stream_error("internalServerException", "oops")])
    assert events[0].code == "agent_error" and events[0].retryable is True


@pytest.mark.parametrize(
    "code, expected, retryable",
    [
        ("ThrottlingException", "throttled", True),
        ("throttlingException", "throttled", True),
        ("serviceQuotaExceededException", "throttled", True),
        ("validationException", "agent_error", False),
        ("AccessDeniedException", "agent_error", False),
        ("badGatewayException", "agent_error", True),
        ("dependencyFailedException", "agent_error", True),
    ],
)
def test_classify_error(code, expected, retryable):
    failure = classify_error(code, "m")
    assert (failure.code, failure.retryable) == (expected, retryable)


def test_return_control_without_an_invocation_id_is_an_agent_error():
    events, _ = _run([{"returnControl": {"invocationInputs": []}}])
    assert events == [Failure("agent_error", events[0].message, False)]


def test_bedrock_messages_are_not_punctuated_twice():
    assert classify_error("internalServerException", "Something broke.").message.endswith("(internalServerException: Something broke).")


def test_usage_is_the_sum_of_the_agents_model_invocations_even_without_client_traces():
    def invocation(stage, tokens_in, tokens_out):
        output = {"metadata": {"usage": {"inputTokens": tokens_in, "outputTokens": tokens_out}}, "rawResponse": {"content": "x"}}
        return {"trace": {"trace": {stage: {"modelInvocationOutput": output}}}}

    from chalicelib.backends import End, Trace, TurnRequest
    from chalicelib.backends.agent import AgentBackend
    from tests.support.fakes import FakeAgentRuntime, agent_stream

    agent = FakeAgentRuntime()
    agent.script = [invocation("preProcessingTrace", 100, 5), invocation("orchestrationTrace", 300, 40)] + agent_stream("Hi")
    events = list(AgentBackend(agent, "A", "B").stream(TurnRequest("q", "s-1", trace=False)))
    assert events[-1] == End("s-1", usage={"inputTokens": 400, "outputTokens": 45, "totalTokens": 445})
    assert [e.trace for e in events if isinstance(e, Trace)][-1] == {
        "kind": "model", "usage": {"inputTokens": 300, "outputTokens": 40}, "stage": "orchestration"
    }


def test_with_a_knowledge_base_the_agent_searches_only_the_askers_documents():
    runtime = FakeAgentRuntime()
    runtime.script = agent_stream("ok")
    list(AgentBackend(runtime, "A", "B", "KB1").stream(TurnRequest("what did I upload?", "s-1", user_id="alice")))
    (configuration,) = runtime.calls[0]["sessionState"]["knowledgeBaseConfigurations"]
    assert configuration["knowledgeBaseId"] == "KB1"
    assert configuration["retrievalConfiguration"]["vectorSearchConfiguration"]["filter"] == {
        "equals": {"key": "owner", "value": "alice"}}
    runtime.script = agent_stream("ok")
    list(AgentBackend(runtime, "A", "B").stream(TurnRequest("hi", "s-1", user_id="alice")))  # no knowledge base
    assert "sessionState" not in runtime.calls[1]
