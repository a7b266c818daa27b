"""AgentCore: what the runtime's stream says besides text."""


def test_usage_comes_from_the_runtimes_metadata_event_and_is_not_text():
    from chalicelib.backends.agentcore import usage_of

    assert usage_of('{"usage": {"inputTokens": 3, "outputTokens": 4}}') == {"inputTokens": 3, "outputTokens": 4}
    strands = '{"event": {"metadata": {"usage": {"inputTokens": 7, "outputTokens": 2, "totalTokens": 9}}}}'
    assert usage_of(strands) == {"inputTokens": 7, "outputTokens": 2}
    assert usage_of('"just text"') is None and usage_of('{"text": "hi"}') is None and usage_of("not json") is None


def test_the_runtime_is_told_who_asks_so_it_can_filter_its_retrievals():
    import json

    from chalicelib.backends import TurnRequest
    from chalicelib.backends.agentcore import AgentCoreBackend

    backend = AgentCoreBackend(None, "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/r-1")
    params = backend._params(TurnRequest("hi", "s-" + "1" * 40, user_id="alice"))
    assert json.loads(params["payload"]) == {"prompt": "hi", "userId": "alice"}
    assert json.loads(backend._params(TurnRequest("hi", "s-" + "1" * 40))["payload"]) == {"prompt": "hi"}
