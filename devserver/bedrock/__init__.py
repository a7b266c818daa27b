"""Local Bedrock emulator for the dev stack (never deployed).

Serves the streaming operations the app uses, with botocore's real request shapes and
response framing, so the app runs against boto3's real parsers offline. One module per
emulated API, plus what they share:

* ``agents``     InvokeAgent ``POST /agents/{agentId}/agentAliases/{aliasId}/sessions/{sessionId}/text``
* ``converse``   ConverseStream ``POST /model/{modelId}/converse-stream``
* ``agentcore``  AgentCore InvokeAgentRuntime ``POST /runtimes/{agentRuntimeArn}/invocations``
  (Server-Sent Events)
* ``ingestion``  bedrock-agent's ingestion jobs (Start, Get, List, Stop) of the knowledge base
* ``retrieve``   Retrieve ``POST /knowledgebases/{knowledgeBaseId}/retrieve``
* ``knowledge``  the knowledge base: its index, its background syncs, the word-match search
* ``datasource`` what a sync reads from the S3 data source (objects and metadata sidecars)
* ``filters``    Bedrock's RetrievalFilter, evaluated against a chunk's metadata
* ``scenarios``  the prompt commands (``!slow N``, ``!big N``, ``!throttle``, ...), how answers
  are cut into pieces and paced: pure, the table of behaviours is there
* ``eventstream`` the binary ``application/vnd.amazon.eventstream`` encoder
* ``server``     the HTTP server, its request handler and ``BedrockEmulator``

Run standalone with ``python -m devserver.bedrock --port 8766`` (add ``--s3-endpoint URL`` of a
moto server for the knowledge base; ``--ingestion-delay`` and ``--kb-bucket`` tune it).
"""

from __future__ import annotations

from devserver.bedrock.agents import MAX_INPUT_CHARS
from devserver.bedrock.knowledge import KnowledgeBaseConfig
from devserver.bedrock.scenarios import big_answer, split_words
from devserver.bedrock.server import BedrockEmulator, RecordedRequest, main

__all__ = ["BedrockEmulator", "KnowledgeBaseConfig", "RecordedRequest", "MAX_INPUT_CHARS", "main", "big_answer",
           "split_words"]
