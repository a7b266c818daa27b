from chalicelib.backends import End, Failure, TextDelta, TurnRequest
from chalicelib.backends.converse import ConverseBackend, ModelConfig
from tests.support.fakes import MemoryHistory


class FakeRuntime:
    """``converse_stream`` answering with the dicts botocore yields for its ``stream``."""

    def __init__(self, events):
        self.events = events
        self.calls = []

    def converse_stream(self, **params):
        self.calls.append(params)

        def stream():
            yield from self.events

        return {"stream": stream()}


def _stream(stop_reason, text="partial"):
    return [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": text}}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": stop_reason}},
        {"metadata": {"usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}, "metrics": {"latencyMs": 9}}},
    ]


def test_a_guardrail_intervention_is_its_own_error_and_is_not_remembered():
    history = MemoryHistory()
    backend = ConverseBackend(FakeRuntime(_stream("guardrail_intervened")), history, ModelConfig("m"))
    events = list(backend.stream(TurnRequest("hi", "s-1")))
    assert events[0] == TextDelta("partial")
    assert events[-1] == Failure("guardrail", events[-1].message, False)
    assert history.items == {}


def test_max_tokens_is_an_end_with_its_stop_reason_and_usage():
    backend = ConverseBackend(FakeRuntime(_stream("max_tokens")), MemoryHistory(), ModelConfig("m", max_tokens=1))
    end = list(backend.stream(TurnRequest("hi", "s-1")))[-1]
    assert end == End("s-1", "max_tokens", {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}, 9)
