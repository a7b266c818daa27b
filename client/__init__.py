"""agentstream clients: a CLI (``python -m client``) and a web chat page (``client/web``)."""
