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


# ---- the system prompt, read from SSM on AWS (too large for a function's environment)


def _ssm_error(code):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "arn:aws:ssm:...:parameter/agentstream/dev/system-prompt"}},
                       "GetParameter")


def test_each_turn_sends_the_system_prompt_its_reader_gives():
    bedrock, prompts = FakeRuntime(_stream("end_turn")), iter(["Be brief.", "Be briefer."])
    backend = ConverseBackend(bedrock, MemoryHistory(), ModelConfig("m", system_prompt="unused"), lambda: next(prompts))
    for _ in range(2):
        list(backend.stream(TurnRequest("hi", "s-1")))
    assert [call["system"] for call in bedrock.calls] == [[{"text": "Be brief."}], [{"text": "Be briefer."}]]


def test_a_system_prompt_that_cannot_be_read_ends_the_turn_with_an_error_event():
    from botocore.exceptions import EndpointConnectionError

    def unreadable(error):
        def read():
            raise error
        return read

    cases = [(_ssm_error("AccessDeniedException"), False), (_ssm_error("ParameterNotFound"), False),
             (_ssm_error("ThrottlingException"), True), (EndpointConnectionError(endpoint_url="https://ssm"), True)]
    for error, retryable in cases:
        bedrock = FakeRuntime(_stream("end_turn"))
        backend = ConverseBackend(bedrock, MemoryHistory(), ModelConfig("m"), unreadable(error))
        (event,) = list(backend.stream(TurnRequest("hi", "s-1")))
        assert (event.code, event.retryable) == ("internal", retryable)
        assert event.message.startswith("The model's system prompt could not be read from SSM (")
        assert "arn:" not in event.message  # the client learns the cause, not the stage's resource names
        assert bedrock.calls == []  # no answer without the prompt the stage was deployed with


def test_a_stage_reads_its_system_prompt_once_from_the_parameter_its_environment_names(resources):
    import boto3

    from chalicelib.runtime import Runtime
    from chalicelib.settings import Settings

    name = "/agentstream/dev/system-prompt"
    prompt = "Tu réponds en français, brièvement. " * 100  # 3,600 characters: more than an environment could hold
    boto3.client("ssm").put_parameter(Name=name, Value=prompt, Type="String", Tier="Intelligent-Tiering")
    runtime = Runtime(Settings.from_env({"BACKEND": "converse", "MODEL_ID": "m", "SYSTEM_PROMPT_PARAMETER": name,
                                         "HISTORY_TABLE": resources.history_table}))
    reads = []
    runtime.clients.ssm.meta.events.register("provide-client-params.ssm.GetParameter", lambda params, **_: reads.append(params))
    bedrock = runtime.clients.__dict__["bedrock_runtime"] = FakeRuntime(_stream("end_turn"))
    for _ in range(3):
        assert list(runtime.backend.stream(TurnRequest("hi", "s-1")))[-1].session_id == "s-1"
    assert [call["system"] for call in bedrock.calls] == [[{"text": prompt}]] * 3
    assert [params["Name"] for params in reads] == [name]  # once for the container, not per turn


def test_the_local_stack_passes_the_prompt_itself_and_never_reads_ssm(resources):
    from chalicelib.runtime import Runtime
    from chalicelib.settings import Settings

    runtime = Runtime(Settings.from_env({"BACKEND": "converse", "MODEL_ID": "m", "SYSTEM_PROMPT": "Be brief.",
                                         "HISTORY_TABLE": resources.history_table}))
    assert runtime.system_prompt is None
    bedrock = runtime.clients.__dict__["bedrock_runtime"] = FakeRuntime(_stream("end_turn"))
    list(runtime.backend.stream(TurnRequest("hi", "s-1")))
    assert bedrock.calls[0]["system"] == [{"text": "Be brief."}]
    assert "ssm" not in runtime.clients.__dict__  # no SSM client was even created


def test_with_a_knowledge_base_the_askers_passages_go_before_the_prompt_but_not_into_the_history():
    from botocore.exceptions import ClientError

    searched = []

    def retrieve(query, user_id):
        searched.append((query, user_id))
        return ["Glaciers retreat in summer."]

    bedrock, history = FakeRuntime(_stream("end_turn", "ok")), MemoryHistory()
    backend = ConverseBackend(bedrock, history, ModelConfig("m"), retrieve=retrieve)
    list(backend.stream(TurnRequest("why?", "s-1", user_id="alice")))
    assert searched == [("why?", "alice")]
    sent = bedrock.calls[0]["messages"][-1]["content"][0]["text"]
    assert "Glaciers retreat in summer." in sent and sent.endswith("Question: why?")
    assert history.load("s-1")[0]["content"][0]["text"] == "why?"

    def broken(query, user_id):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Retrieve")

    events = list(ConverseBackend(FakeRuntime(_stream("end_turn")), MemoryHistory(), ModelConfig("m"),
                                  retrieve=broken).stream(TurnRequest("why?", "s-2", user_id="alice")))
    (failure,) = events
    assert isinstance(failure, Failure) and failure.retryable and "documents" in failure.message
