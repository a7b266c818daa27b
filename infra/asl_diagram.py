"""The document pipeline's picture: ``infra/documents.asl.json`` drawn as a Mermaid flowchart.

``python -m infra.asl_diagram`` (``make diagram``) writes it into ``docs/documents.md`` between
``<!-- asl:begin -->`` and ``<!-- asl:end -->``; ``--check`` says whether what is there is current
(a test runs it, so the picture cannot drift from the state machine).

What is drawn, from the Amazon States Language alone:

* each state, shaped by its type: a Task a rectangle (with what it calls: ``lambda:invoke``,
  ``sns:publish``, ``bedrockagent:startIngestionJob`` ...), a Choice a rhombus, a Pass a
  parallelogram, a Wait a hexagon (with its seconds), a Succeed or Fail a stadium (a Fail with its
  error);
* ``Next`` and ``End`` as solid arrows, to the next state or to the end;
* a Choice's rules as solid arrows labelled with their condition (``$.action == "delete"``,
  ``and``/``or``/``not`` spelt out), its ``Default`` labelled ``otherwise``;
* each ``Catch`` as a dashed arrow labelled with the errors it catches;
* each ``Retry`` as lines of the state's own label: the attempts, the first interval, the backoff
  rate (and the longest interval, and the jitter, when set), then the errors it retries.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from infra import stack

DOCUMENT = stack.ROOT / "docs" / "documents.md"
BEGIN, END = "<!-- asl:begin -->", "<!-- asl:end -->"
NOTE = "<!-- Generated from infra/documents.asl.json by infra/asl_diagram.py (make diagram): edit those, not this. -->"

# A Choice rule's comparison operators, as the label says them ("...Path": against another path's value).
OPERATORS = {
    "Equals": "==", "LessThan": "<", "GreaterThan": ">", "LessThanEquals": "<=", "GreaterThanEquals": ">=", "Matches": "matches",
}
TYPES = ("String", "Numeric", "Boolean", "Timestamp")
WIDTH = 64  # characters of a label's line, about: a Retry's errors wrap


def _escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label (its own entities for what would end or open one)."""
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _label(lines: Sequence[str]) -> str:
    return '"' + "<br/>".join(_escape(line) for line in lines) + '"'


def node_id(name: str, taken: Dict[str, str]) -> str:
    """A Mermaid id for a state: its name's letters, digits and underscores, made unique."""
    if name in taken:
        return taken[name]
    base = re.sub(r"\W", "_", name) or "state"
    candidate, number = base, 2
    while candidate in taken.values() or candidate in ("start", "end", "graph", "subgraph"):
        candidate, number = f"{base}_{number}", number + 1
    taken[name] = candidate
    return candidate


def condition(rule: Mapping[str, Any]) -> str:
    """A Choice rule's condition in words: ``$.ingestion.status == "COMPLETE"``, ``(a and b)``, ``not a``."""
    if "And" in rule:
        return "(" + " and ".join(condition(r) for r in rule["And"]) + ")"
    if "Or" in rule:
        return "(" + " or ".join(condition(r) for r in rule["Or"]) + ")"
    if "Not" in rule:
        return "not " + condition(rule["Not"])
    if "Condition" in rule:  # JSONata
        return str(rule["Condition"])
    variable = rule.get("Variable", "?")
    for key, value in rule.items():
        if key.startswith("Is"):  # IsPresent, IsNull, IsString, IsNumeric, IsBoolean, IsTimestamp
            test = re.sub(r"(?<!^)(?=[A-Z])", " ", key[2:]).lower()
            return f"{variable} is {'' if value else 'not '}{test}"
        for kind in TYPES:
            if key.startswith(kind):
                operator, path = key[len(kind):], False
                if operator.endswith("Path"):
                    operator, path = operator[: -len("Path")], True
                if operator in OPERATORS:
                    shown = str(value) if path else json.dumps(value)
                    return f"{variable} {OPERATORS[operator]} {shown}"
    raise ValueError(f"a Choice rule infra/asl_diagram.py cannot read: {json.dumps(rule)}")


def resource(state: Mapping[str, Any]) -> str:
    """What a Task calls, short: ``arn:aws:states:::sns:publish`` -> ``sns:publish``."""
    arn = str(state.get("Resource", ""))
    if arn.startswith("arn:aws:states:::aws-sdk:"):
        return arn[len("arn:aws:states:::aws-sdk:"):]
    if arn.startswith("arn:aws:states:::"):
        return arn[len("arn:aws:states:::"):]
    return arn


def seconds(value: float) -> str:
    return f"{value:g} s"


def wrapped(words: Sequence[str], width: int = WIDTH) -> List[str]:
    """``words`` joined by commas, in lines of about ``width`` characters."""
    lines: List[str] = []
    for word in words:
        if lines and len(lines[-1]) + 2 + len(word) <= width:
            lines[-1] += f", {word}"
        else:
            lines.append(word)
    return lines


def retry(retrier: Mapping[str, Any]) -> List[str]:
    """A Retry entry: how often and how far apart (the ASL's defaults where it says nothing), then its errors."""
    timing = [f"retry {retrier.get('MaxAttempts', 3)}× from {seconds(retrier.get('IntervalSeconds', 1))}",
              f"backoff ×{retrier.get('BackoffRate', 2.0):g}"]
    if "MaxDelaySeconds" in retrier:
        timing.append(f"at most {seconds(retrier['MaxDelaySeconds'])}")
    if retrier.get("JitterStrategy", "NONE") != "NONE":
        timing.append(f"{str(retrier['JitterStrategy']).lower()} jitter")
    return [", ".join(timing) + " on:"] + wrapped(retrier["ErrorEquals"])


def shape(name: str, state: Mapping[str, Any]) -> str:
    """A state's node: its shape and label (the Mermaid text after its id)."""
    kind = state["Type"]
    lines = [name]
    if kind == "Task":
        lines.append(resource(state))
    elif kind == "Wait":
        for key in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath"):
            if key in state:
                lines.append(f"wait {seconds(state[key]) if key == 'Seconds' else state[key]}")
    elif kind == "Fail":
        lines.append(f"fail: {state.get('Error', state.get('ErrorPath', ''))}")
    elif kind in ("Map", "Parallel"):
        lines.append(f"{kind} (its branches are not drawn)")
    for retrier in state.get("Retry", []):
        lines += retry(retrier)
    label = _label(lines)
    if kind == "Choice":
        return "{" + label + "}"
    if kind == "Pass":
        return "[/" + label + "/]"
    if kind == "Wait":
        return "{{" + label + "}}"
    if kind in ("Succeed", "Fail"):
        return "([" + label + "])"
    return "[" + label + "]"


def _arrow(source: str, target: str, label: Optional[str] = None, dashed: bool = False) -> str:
    """An edge: solid (a transition), dashed (a Catch), labelled when it has a condition or errors."""
    link = "-.->" if dashed else "-->"
    text = f"|{_label([label])}|" if label else ""
    return f"  {source} {link}{text} {target}"


def render_flowchart(definition: Mapping[str, Any]) -> str:
    """The Mermaid flowchart of a state machine definition (Amazon States Language)."""
    states: Dict[str, Any] = definition["States"]
    ids: Dict[str, str] = {}
    lines = ["flowchart TD", "  start((start))", "  end_((end))"]
    for name, state in states.items():
        lines.append(f"  {node_id(name, ids)}{shape(name, state)}")
    lines.append(f"  start --> {node_id(definition['StartAt'], ids)}")
    failures: List[str] = []
    for name, state in states.items():
        here = node_id(name, ids)
        for rule in state.get("Choices", []):
            lines.append(_arrow(here, node_id(rule["Next"], ids), condition(rule)))
        if "Default" in state:
            lines.append(_arrow(here, node_id(state["Default"], ids), "otherwise"))
        if "Next" in state:
            lines.append(_arrow(here, node_id(state["Next"], ids)))
        if state.get("End") or state["Type"] == "Succeed":
            lines.append(_arrow(here, "end_"))
        for catcher in state.get("Catch", []):
            lines.append(_arrow(here, node_id(catcher["Next"], ids), "catch " + ", ".join(catcher["ErrorEquals"]), dashed=True))
        if state["Type"] == "Fail":
            failures.append(here)
    if failures:
        lines.append("  classDef failed stroke:#c00,stroke-width:2px")
        lines.append(f"  class {','.join(failures)} failed")
    return "\n".join(lines) + "\n"


def render(definition: Optional[Mapping[str, Any]] = None) -> str:
    """What goes between the markers: a note, then the flowchart as a ``mermaid`` code block."""
    definition = stack.load_json(stack.PIPELINE_DEFINITION) if definition is None else definition
    return f"{NOTE}\n```mermaid\n{render_flowchart(definition)}```\n"


def embed(document: str, rendered: str) -> str:
    """``document`` with ``rendered`` between its markers (which must be there, once each, in order)."""
    if document.count(BEGIN) != 1 or document.count(END) != 1 or document.index(BEGIN) > document.index(END):
        raise ValueError(f"{DOCUMENT.name} needs one {BEGIN} line, then one {END} line, where the picture goes")
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{rendered}{END}{tail}"


def main(argv: Optional[Sequence[str]] = None, path: Path = DOCUMENT) -> int:
    """``python -m infra.asl_diagram``: draw the pipeline into docs/documents.md (``--check``: is it current?)."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    current = path.read_text()
    wanted = embed(current, render())
    if check:
        if current != wanted:
            print(f"{path}: the state machine's picture is not what infra/asl_diagram.py draws from "
                  "infra/documents.asl.json: run make diagram", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        path.write_text(wanted)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
