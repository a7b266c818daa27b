"""The entry points app.py routes to: $connect/$disconnect, $default, and the SQS turn worker."""
