"""agentstream's code, as app.py uses it.

- ``handlers``: the entry points (WebSocket routes, the SQS worker);
- ``turns``: a turn's lifecycle, outcomes, relay and queue; ``store``: one store per table;
- ``backends``: one module per Bedrock API, all yielding the same neutral events;
- ``documents``: uploaded documents' pure rules (upload checks and S3 keys, text extraction, chunking);
- ``protocol`` (+ ``protocol.schema.json``): the wire contract; ``auth``: token verification;
- plumbing: ``settings``, ``aws`` (lazy clients), ``runtime`` (what handlers are given),
  ``gateway`` (posting to @connections), ``logs``, ``ratelimit`` (token-bucket maths).
"""
