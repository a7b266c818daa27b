"""The owner filter every retrieval passes, and passages as ConverseStream context (pure)."""
from __future__ import annotations

from chalicelib.documents.retrieval import knowledge_base_configurations, owner_filter, passages, with_context


def test_a_users_retrievals_admit_only_their_chunks():
    assert owner_filter("alice") == {"equals": {"key": "owner", "value": "alice"}}
    assert owner_filter("alice", "d1") == {"andAll": [{"equals": {"key": "owner", "value": "alice"}},
                                                      {"equals": {"key": "documentId", "value": "d1"}}]}
    (config,) = knowledge_base_configurations("KB1", "bob")
    assert config["knowledgeBaseId"] == "KB1"
    assert config["retrievalConfiguration"]["vectorSearchConfiguration"]["filter"] == owner_filter("bob")


def test_passages_go_before_the_question_as_reference_material_within_a_budget():
    texts = passages({"retrievalResults": [{"content": {"text": "one"}}, {"content": {}}, {"content": {"text": "two"}}]})
    assert texts == ["one", "two"]
    prompt = with_context("why?", texts)
    assert prompt.index("one") < prompt.index("two") < prompt.index("Question: why?")
    assert with_context("why?", []) == "why?"
    assert "two" not in with_context("why?", ["one", "two"], max_chars=4)


def test_the_runtime_retrieves_through_the_askers_owner_filter(runtime, agent):
    """What the converse backend's passages come from: Retrieve on the stage's knowledge base."""
    calls = []

    def retrieve(**params):
        calls.append(params)
        return {"retrievalResults": [{"content": {"text": "Glaciers retreat."}}]}

    agent.retrieve = retrieve  # the fake bedrock-agent-runtime client
    assert runtime.retrieve("why do glaciers retreat?", "alice") == ["Glaciers retreat."]
    (call,) = calls
    assert call["knowledgeBaseId"] == runtime.settings.knowledge_base_id == "KB1"
    assert call["retrievalQuery"] == {"text": "why do glaciers retreat?"}
    assert call["retrievalConfiguration"]["vectorSearchConfiguration"]["filter"] == owner_filter("alice")
