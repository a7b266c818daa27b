"""Conversation history for ConverseStream, kept on the server.

A model call is stateless: the client sends only its new prompt and the server replays the
conversation so far. One item per conversation (keyed by the server-derived session id, so users
are isolated by construction), with a TTL and a size bound: the oldest exchanges go first.
"""
from __future__ import annotations

import json
import time
from typing import Any, Dict, List

Message = Dict[str, Any]


def exchange(prompt: str, answer: str) -> List[Message]:
    return [
        {"role": "user", "content": [{"text": prompt}]},
        {"role": "assistant", "content": [{"text": answer}]},
    ]


def _size(message: Message) -> int:
    return sum(len(block.get("text", "")) for block in message.get("content", []))


def bound(messages: List[Message], max_turns: int, max_chars: int) -> List[Message]:
    """Keep the newest whole exchanges (user + assistant pairs) within both limits."""
    pairs = [messages[i : i + 2] for i in range(0, len(messages) - 1, 2)]
    kept: List[List[Message]] = []
    chars = 0
    for pair in reversed(pairs):
        size = sum(_size(m) for m in pair)
        if len(kept) >= max_turns or chars + size > max_chars:
            break
        kept.append(pair)
        chars += size
    return [message for pair in reversed(kept) for message in pair]


class History:
    def __init__(self, dynamodb: Any, table: str, ttl_s: int, max_turns: int, max_chars: int) -> None:
        self._db = dynamodb
        self._table = table
        self._ttl_s = ttl_s
        self._max_turns = max_turns
        self._max_chars = max_chars

    def load(self, conversation_key: str) -> List[Message]:
        item = self._db.get_item(
            TableName=self._table, Key={"conversationKey": {"S": conversation_key}}, ConsistentRead=True
        ).get("Item")
        return json.loads(item["messages"]["S"]) if item else []

    def append(self, conversation_key: str, prompt: str, answer: str) -> None:
        """Add one exchange, dropping the oldest ones beyond the bounds."""
        messages = bound(self.load(conversation_key) + exchange(prompt, answer), self._max_turns, self._max_chars)
        self._db.put_item(
            TableName=self._table,
            Item={
                "conversationKey": {"S": conversation_key},
                "messages": {"S": json.dumps(messages, separators=(",", ":"))},
                "expiresAt": {"N": str(int(time.time()) + self._ttl_s)},
            },
        )
