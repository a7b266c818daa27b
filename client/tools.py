"""Return of control: the agent asks the client to run its tools and send back what they returned.

The CLI can only ask the person at the terminal; without one the turn is cancelled (see
client.turn.no_tools) rather than left waiting for results that will never come.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, Iterable, List, Optional, TextIO

from client.render import describe_inputs


def tool_results(event: Dict[str, Any], answers: Iterable[Any]) -> List[Dict[str, Any]]:
    """The ``results`` of a return_control message: one answer per input, in Bedrock's shape."""
    results: List[Dict[str, Any]] = []
    for item, answer in zip(event.get("inputs") or [], answers, strict=False):
        api = item.get("apiInvocationInput")
        if api is not None:
            results.append({"apiResult": {
                "actionGroup": api.get("actionGroup"), "apiPath": api.get("apiPath"),
                "httpMethod": api.get("httpMethod"), "httpStatusCode": 200,
                "responseBody": {"application/json": {"body": answer}},
            }})
        else:
            call = item.get("functionInvocationInput") or {}
            result = {"actionGroup": call.get("actionGroup"), "responseBody": {"TEXT": {"body": answer}}}
            if call.get("function"):
                result["function"] = call["function"]
            results.append({"functionResult": result})
    return results


def ask_tools_on_terminal(event: Dict[str, Any], err: Optional[TextIO] = None) -> Optional[List[Dict[str, Any]]]:
    """Ask the person at the terminal what each tool returned; None when nobody is there.

    A RunTools (client.turn) as it stands; the questions go to ``err`` (standard error by default).
    """
    if not sys.stdin.isatty():
        return None
    err = err if err is not None else sys.stderr
    answers = []
    for item in event.get("inputs") or []:
        err.write(f"  result of {describe_inputs({'inputs': [item]})}? ")
        err.flush()
        try:
            answers.append(input())
        except EOFError:
            return None
    return tool_results(event, answers)
