"""What the analysis step asks the agent, and what it makes of the answer (pure).

The agent is asked for JSON (a summary and key topics). An agent that answers in prose still
gives a summary: its answer, cut at a word; the topics then come from the document's own words.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Dict, List

MAX_SUMMARY_CHARS = 600
MAX_TOPICS = 5
MAX_TOPIC_CHARS = 60
_WORD = re.compile(r"[^\W\d_][\w'-]{3,}", re.UNICODE)
# Words too common to be a topic (English; a document in another language gets its own frequent words).
STOPWORDS = frozenset("""
about above after again against also among because been before being below between both cannot could does doing
down during each every from further have having here hers herself himself into itself just more most much must
myself only other ought ours ourselves over same shall should some such than that their theirs them themselves then
there these they this those through under until upon very want were what when where which while whom whose will
with within without would your yours yourself yourselves said says like make made many well even into onto
""".split())


def analysis_prompt(file_name: str) -> str:
    # The format in words, not as a JSON example: an answer that echoes the prompt must not parse.
    return (f"Analyse the document {json.dumps(file_name)} from my knowledge base. Answer with one JSON object only, "
            'with two keys: "summary", two or three sentences, and "topics", a list of up to five key topics.')


def keywords(text: str, limit: int = MAX_TOPICS) -> List[str]:
    """The text's most frequent words (not stopwords), ties in order of first appearance."""
    words = [word.lower().strip("'-") for word in _WORD.findall(text)]
    counts = Counter(word for word in words if word not in STOPWORDS and len(word) > 3)
    first = {word: index for index, word in reversed(list(enumerate(words)))}
    return sorted(counts, key=lambda word: (-counts[word], first[word]))[:limit]


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return (cut or text[:limit]).rstrip(",;:") + "…"


def _json_in(answer: str) -> Dict[str, Any]:
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end <= start:
        return {}
    try:
        found = json.loads(answer[start:end + 1])
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def parse_analysis(answer: str, document_text: str) -> Dict[str, Any]:
    """``{"summary", "topics"}`` from the agent's answer, with the document's words to fall back on."""
    found = _json_in(answer)
    summary = found.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        summary = answer
    topics = found.get("topics")
    if isinstance(topics, list) and all(isinstance(topic, str) for topic in topics) and any(t.strip() for t in topics):
        chosen = [_short(topic, MAX_TOPIC_CHARS) for topic in topics if topic.strip()][:MAX_TOPICS]
    else:
        chosen = keywords(document_text)
    return {"summary": _short(summary, MAX_SUMMARY_CHARS), "topics": chosen}
