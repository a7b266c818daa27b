"""A user's conversations: one item per (user, conversation), newest first through ``ByUpdate``.

Turns carry their conversation; this table is its index, so the REST API can list a user's
conversations (``GET /v1/conversations``) without scanning turns. An item lives as long as its
newest turn (the turns' TTL).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from chalicelib.store.items import Item, Table, from_item, now_ms

BY_UPDATE = "ByUpdate"  # the local index: a user's conversations by their last turn
TITLE_CHARS = 120  # a conversation's title: the start of its first prompt


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    title: str
    created_at: int  # epoch ms: its first turn
    updated_at: int  # epoch ms: its newest turn
    turns: int

    def view(self) -> Dict[str, Any]:
        return {"conversationId": self.conversation_id, "title": self.title, "createdAt": self.created_at,
                "updatedAt": self.updated_at, "turns": self.turns}


def _conversation(item: Item) -> Conversation:
    values = from_item(item)
    return Conversation(values["conversationId"], values.get("title", ""), int(values.get("createdAt", 0)),
                        int(values.get("updatedAt", 0)), int(values.get("turns", 0)))


class ConversationStore:
    def __init__(self, dynamodb: Any, table: str, ttl_s: int) -> None:
        self._table = Table(dynamodb, table)
        self._ttl_s = ttl_s

    @staticmethod
    def _key(user_id: str, conversation_id: str) -> Item:
        return {"userId": {"S": user_id}, "conversationId": {"S": conversation_id}}

    def touch(self, user_id: str, conversation_id: str, prompt: str) -> None:
        """A turn was asked in the conversation: it is the newest, and one turn longer; its first
        prompt is its title."""
        at = now_ms()
        self._table.update(
            self._key(user_id, conversation_id),
            "",
            {},
            values={":at": {"N": str(at)}, ":expires": {"N": str(at // 1000 + self._ttl_s)},
                    ":title": {"S": prompt[:TITLE_CHARS]}, ":one": {"N": "1"}},
            update="SET #updatedAt = :at, #expiresAt = :expires, #createdAt = if_not_exists(#createdAt, :at), "
                   "#title = if_not_exists(#title, :title) ADD #turns :one",
        )

    def newest(self, user_id: str, limit: int, after: Optional[Dict[str, Any]] = None
               ) -> Tuple[List[Conversation], Optional[Dict[str, Any]]]:
        """A page of the user's conversations, newest first; ``after`` (and the page's end) is
        where a page ends, without the user (a client cannot page through another user's)."""
        start = None
        if after is not None:
            start = {**self._key(user_id, str(after["conversationId"])), "updatedAt": {"N": str(int(after["updatedAt"]))}}
        items, last = self._table.query("#userId = :user", {":user": {"S": user_id}}, limit, start, BY_UPDATE, forward=False)
        end = None if last is None else {"conversationId": last["conversationId"]["S"], "updatedAt": int(last["updatedAt"]["N"])}
        return [_conversation(item) for item in items], end
