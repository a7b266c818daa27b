"""Local Bedrock emulator for the dev stack (never deployed).

Serves the streaming operations the app uses, with botocore's real request shapes and
response framing, so the app runs against boto3's real parsers offline. One module per
emulated API, plus what they share:

* ``agents``     InvokeAgent ``POST /agents/{agentId}/agentAliases/{aliasId}/sessions/{sessionId}/text``
* ``converse``   ConverseStream ``POST /model/{modelId}/converse-stream``
* ``agentcore``  AgentCore InvokeAgentRuntime ``POST /runtimes/{agentRuntimeArn}/invocations``
  (Server-Sent Events)
* ``scenarios``  the prompt commands (``!slow N``, ``!big N``, ``!throttle``, ...), how answers
  are cut into pieces and paced: pure, the table of behaviours is there
* ``eventstream`` the binary ``application/vnd.amazon.eventstream`` encoder
* ``server``     the HTTP server, its request handler and ``BedrockEmulator``

Run standalone with ``python -m devserver.bedrock --port 8766``.
"""

from __future__ import annotations

from devserver.bedrock.agents import MAX_INPUT_CHARS
from devserver.bedrock.scenarios import big_answer, split_words
from devserver.bedrock.server import BedrockEmulator, RecordedRequest, main

__all__ = ["BedrockEmulator", "RecordedRequest", "MAX_INPUT_CHARS", "main", "big_answer", "split_words"]
