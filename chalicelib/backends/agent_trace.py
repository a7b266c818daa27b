"""Agent traces in a compact, documented form instead of raw dumps.

InvokeAgent's trace parts are deep unions (orchestration, pre/post-processing, guardrails, ...),
mostly model-invocation plumbing. Clients want the story: what the agent thought, which action it
called, what a knowledge base returned, what a guardrail did. Pure, so every mapping is tested.

Each compact trace is ``{"kind": ..., ...}`` with kind one of: ``rationale`` (text),
``action`` (actionGroup, function or apiPath, parameters), ``knowledge_base`` (knowledgeBaseId,
query, references), ``observation`` (type, text), ``model`` (the tokens one model invocation
used), ``guardrail`` (action), ``step`` (the raw part's name, for anything else).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

_STAGES = ("orchestrationTrace", "preProcessingTrace", "postProcessingTrace", "routingClassifierTrace")


def compact_trace(trace: Dict[str, Any]) -> Dict[str, Any]:
    """One InvokeAgent trace part (the ``trace`` member of a trace event), compacted."""
    if "guardrailTrace" in trace:
        guardrail = trace["guardrailTrace"] or {}
        return {"kind": "guardrail", "action": guardrail.get("action", "NONE")}
    for stage in _STAGES:
        if stage in trace:
            compact = _stage(trace[stage] or {})
            if compact is not None:
                return {**compact, "stage": stage[: -len("Trace")]}
    if "failureTrace" in trace:
        return {"kind": "failure", "text": (trace["failureTrace"] or {}).get("failureReason", "")}
    name = next(iter(trace), "unknown")
    return {"kind": "step", "type": name}


def _stage(part: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    if "rationale" in part:
        return {"kind": "rationale", "text": (part["rationale"] or {}).get("text", "")}
    if "invocationInput" in part:
        return _invocation(part["invocationInput"] or {})
    if "observation" in part:
        return _observation(part["observation"] or {})
    if "modelInvocationOutput" in part:  # the model's raw output is plumbing; the tokens are not
        usage = ((part["modelInvocationOutput"] or {}).get("metadata") or {}).get("usage") or {}
        return {"kind": "model", "usage": {k: int(usage.get(k) or 0) for k in ("inputTokens", "outputTokens")}}
    if part:
        return {"kind": "step", "type": next(iter(part))}
    return None


def _parameters(raw: Any) -> Dict[str, Any]:
    return {str(p.get("name")): p.get("value") for p in raw or [] if isinstance(p, dict)}


def _invocation(invocation: Dict[str, Any]) -> Dict[str, Any]:
    if "actionGroupInvocationInput" in invocation:
        action = invocation["actionGroupInvocationInput"] or {}
        compact: Dict[str, Any] = {"kind": "action", "actionGroup": action.get("actionGroupName")}
        if action.get("function"):
            compact["function"] = action["function"]
        if action.get("apiPath"):
            compact["apiPath"] = action["apiPath"]
            compact["verb"] = action.get("verb")
        compact["parameters"] = _parameters(action.get("parameters"))
        return compact
    if "knowledgeBaseLookupInput" in invocation:
        lookup = invocation["knowledgeBaseLookupInput"] or {}
        return {"kind": "knowledge_base", "knowledgeBaseId": lookup.get("knowledgeBaseId"), "query": lookup.get("text")}
    return {"kind": "step", "type": invocation.get("invocationType", "invocation")}


def _observation(observation: Dict[str, Any]) -> Dict[str, Any]:
    kind = observation.get("type", "")
    if "knowledgeBaseLookupOutput" in observation:
        references: List[Dict[str, Any]] = []
        for ref in (observation["knowledgeBaseLookupOutput"] or {}).get("retrievedReferences", []) or []:
            location = ref.get("location") or {}
            references.append({"text": ((ref.get("content") or {}).get("text") or "")[:300], "location": location})
        return {"kind": "knowledge_base", "references": references}
    if "actionGroupInvocationOutput" in observation:
        return {"kind": "observation", "type": kind, "text": (observation["actionGroupInvocationOutput"] or {}).get("text", "")}
    if "finalResponse" in observation:
        return {"kind": "observation", "type": kind or "FINISH", "text": (observation["finalResponse"] or {}).get("text", "")}
    return {"kind": "observation", "type": kind}


_PHASES = {
    "rationale": "planning the answer",
    "action": "calling an action group",
    "knowledge_base": "searching the knowledge base",
    "guardrail": "checking the guardrails",
}


def phase_of(compact: Dict[str, Any]) -> Optional[str]:
    """What the agent is doing, in a few words and without the trace's content (for ``progress``)."""
    if compact.get("kind") == "observation" and compact.get("type") == "FINISH":
        return "writing the answer"
    return _PHASES.get(str(compact.get("kind")))


def usage_of(trace: Dict[str, Any]) -> Optional[Dict[str, int]]:
    """The tokens one model invocation of the agent used, from its ``modelInvocationOutput``.

    An agent calls its model several times per turn (pre-processing, each orchestration step,
    post-processing); each call's trace carries ``metadata.usage``. Read even when the client did
    not ask for traces, since metering needs it.
    """
    for stage in _STAGES:
        output = ((trace.get(stage) or {}).get("modelInvocationOutput") or {})
        usage = (output.get("metadata") or {}).get("usage") or {}
        if usage:
            return {"inputTokens": int(usage.get("inputTokens") or 0), "outputTokens": int(usage.get("outputTokens") or 0)}
    return None

