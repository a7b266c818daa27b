"""AgentCore: what the runtime's stream says besides text."""


def test_usage_comes_from_the_runtimes_metadata_event_and_is_not_text():
    from chalicelib.backends.agentcore import usage_of

    assert usage_of('{"usage": {"inputTokens": 3, "outputTokens": 4}}') == {"inputTokens": 3, "outputTokens": 4}
    strands = '{"event": {"metadata": {"usage": {"inputTokens": 7, "outputTokens": 2, "totalTokens": 9}}}}'
    assert usage_of(strands) == {"inputTokens": 7, "outputTokens": 2}
    assert usage_of('"just text"') is None and usage_of('{"text": "hi"}') is None and usage_of("not json") is None
