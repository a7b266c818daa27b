"""The two relays users pick today, written the way their sources write them.

Both use the same boto3 clients agentstream uses (one ``bedrock-agent-runtime`` client, one
``apigatewaymanagementapi`` client, from ``chalicelib.aws.AwsClients``) and ask the agent to stream
(``streamFinalResponse``), so all three relays read the very same stream; they differ only in what
they do with it. Each posts the protocol's ``chunk`` events so one client reads all three; neither
posts a terminal event (their sources do not), which spares them a message per turn.

- ``post_once``: the original blog's handler: collect the whole answer, post it once at the end.
  The first word reaches the client when the last one does.
- ``post_per_delta``: the AWS streaming samples: post every delta as its own message, in the loop
  that reads the stream. One billed message per token, and when a post is slower than the gap
  between tokens the loop falls behind the agent.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Request:
    agent_id: str
    agent_alias_id: str
    session_id: str
    prompt: str
    connection_id: str
    turn_id: str


def _invoke(agent: Any, request: Request) -> Any:
    response = agent.invoke_agent(
        agentId=request.agent_id,
        agentAliasId=request.agent_alias_id,
        sessionId=request.session_id,
        inputText=request.prompt,
        streamingConfigurations={"streamFinalResponse": True},
    )
    return response["completion"]


def _chunk(request: Request, seq: int, text: str) -> bytes:
    event = {"type": "chunk", "turnId": request.turn_id, "seq": seq, "text": text}
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def post_once(agent: Any, management: Any, request: Request) -> int:
    """Post the whole answer as one message once the agent is done; returns the posts made."""
    parts = [event["chunk"]["bytes"].decode("utf-8") for event in _invoke(agent, request) if "chunk" in event]
    management.post_to_connection(ConnectionId=request.connection_id, Data=_chunk(request, 1, "".join(parts)))
    return 1


def post_per_delta(agent: Any, management: Any, request: Request) -> int:
    """Post each delta as its own message as soon as it is read; returns the posts made."""
    posts = 0
    for event in _invoke(agent, request):
        if "chunk" in event:
            posts += 1
            text = event["chunk"]["bytes"].decode("utf-8")
            management.post_to_connection(ConnectionId=request.connection_id, Data=_chunk(request, posts, text))
    return posts


RELAYS = {"post_once": post_once, "post_per_delta": post_per_delta}
