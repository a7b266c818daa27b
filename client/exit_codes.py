"""The exit codes of ``python -m client``: scripts rely on them, so a turn's outcome is one of them."""

OK, TURN_FAILED, USAGE, REFUSED, LOST = 0, 1, 2, 3, 4
# `upload` (0: the document was analysed): the server refused the upload (an error event, before
# anything was stored), storage refused the file (the presigned POST), the pipeline failed it (or
# it was deleted meanwhile), or it was not analysed before --timeout.
UPLOAD_REFUSED, STORAGE_REFUSED, DOCUMENT_FAILED, TIMED_OUT = 5, 6, 7, 8
INTERRUPTED_TWICE = 130  # the shell's convention for Ctrl-C
