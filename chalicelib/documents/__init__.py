"""Documents a user uploads for the knowledge base (issue #12): the pure rules, no AWS.

- ``upload``: which files are accepted, the upload's S3 key, the knowledge-base chunk keys and
  their metadata sidecars, document ids;
- ``extract``: a file's bytes as plain text (txt, md, html, pdf, docx), bounded against bombs;
- ``chunking``: plain text cut into overlapping chunks at paragraph, sentence or word boundaries.

The Step Functions pipeline and the WebSocket actions call these; everything here is unit-tested
without mocks.
"""
