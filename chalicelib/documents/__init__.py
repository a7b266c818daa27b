"""Documents a user uploads for the knowledge base (docs/documents.md).

Pure rules, unit-tested without mocks:

- ``upload``: which files are accepted, the upload's S3 key, the knowledge-base chunk keys and
  their metadata sidecars, document ids;
- ``extract``: a file's bytes as plain text (txt, md, html, pdf, docx), bounded against bombs;
- ``chunking``: plain text cut into overlapping chunks at paragraph, sentence or word boundaries;
- ``notifications``: S3's event notifications, and the one execution name per object version;
- ``retrieval``: the owner filter every retrieval for a user passes;
- ``analysis``: what the analysis step makes of the agent's answer.

And their I/O: ``actions`` (the WebSocket's upload, documents and delete), ``pipeline`` (an
upload arrived: start the Step Functions pipeline, once), ``tasks`` (the pipeline's Lambda steps:
extract, analyse), ``notices`` (the topic's subscriber: statuses pushed to the owner).
"""
