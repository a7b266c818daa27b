import pytest

from chalicelib.backends.agent_trace import compact_trace


@pytest.mark.parametrize(
    "part, compact",
    [
        (
            {"orchestrationTrace": {"rationale": {"traceId": "t", "text": "I should look it up."}}},
            {"kind": "rationale", "text": "I should look it up.", "stage": "orchestration"},
        ),
        (
            {
                "orchestrationTrace": {
                    "invocationInput": {
                        "invocationType": "ACTION_GROUP",
                        "actionGroupInvocationInput": {
                            "actionGroupName": "weather",
                            "function": "forecast",
                            "parameters": [{"name": "city", "type": "string", "value": "Oslo"}],
                        },
                    }
                }
            },
            {"kind": "action", "actionGroup": "weather", "function": "forecast", "parameters": {"city": "Oslo"}, "stage": "orchestration"},
        ),
        (
            {
                "orchestrationTrace": {
                    "invocationInput": {
                        "actionGroupInvocationInput": {"actionGroupName": "api", "apiPath": "/orders", "verb": "get"}
                    }
                }
            },
            {"kind": "action", "actionGroup": "api", "apiPath": "/orders", "verb": "get", "parameters": {}, "stage": "orchestration"},
        ),
        (
            {"orchestrationTrace": {"invocationInput": {"knowledgeBaseLookupInput": {"knowledgeBaseId": "KB1", "text": "refunds"}}}},
            {"kind": "knowledge_base", "knowledgeBaseId": "KB1", "query": "refunds", "stage": "orchestration"},
        ),
        (
            {
                "orchestrationTrace": {
                    "observation": {
                        "type": "KNOWLEDGE_BASE",
                        "knowledgeBaseLookupOutput": {
                            "retrievedReferences": [{"content": {"text": "Refunds take 5 days."}, "location": {"type": "S3"}}]
                        },
                    }
                }
            },
            {"kind": "knowledge_base", "references": [{"text": "Refunds take 5 days.", "location": {"type": "S3"}}], "stage": "orchestration"},
        ),
        (
            {"orchestrationTrace": {"observation": {"type": "FINISH", "finalResponse": {"text": "Done."}}}},
            {"kind": "observation", "type": "FINISH", "text": "Done.", "stage": "orchestration"},
        ),
        ({"guardrailTrace": {"action": "INTERVENED", "inputAssessments": [{}]}}, {"kind": "guardrail", "action": "INTERVENED"}),
        ({"orchestrationTrace": {"modelInvocationInput": {"text": "huge prompt"}}}, {"kind": "step", "type": "modelInvocationInput", "stage": "orchestration"}),
        ({"failureTrace": {"failureReason": "Lambda timed out"}}, {"kind": "failure", "text": "Lambda timed out"}),
        ({"customOrchestrationTrace": {"event": {}}}, {"kind": "step", "type": "customOrchestrationTrace"}),
    ],
)
def test_compact_trace(part, compact):
    assert compact_trace(part) == compact


def test_raw_model_prompts_are_not_forwarded():
    compact = compact_trace({"preProcessingTrace": {"modelInvocationInput": {"text": "SYSTEM PROMPT " * 1000}}})
    assert "SYSTEM PROMPT" not in str(compact)
