"""agentstream: Bedrock answers streamed over an API Gateway WebSocket API.

$connect verifies the token, $default queues the turn and answers at once, the SQS worker streams
the agent's answer back token by token; $disconnect forgets the connection. Everything else lives
in chalicelib/, one concept per module.
"""
import os

from chalice import Chalice
from chalice.app import SQSEvent, WebsocketEvent

from chalicelib.handlers import connections, messages, worker
from chalicelib.runtime import get_runtime

app = Chalice(app_name="agentstream")
app.experimental_feature_flags.update(["WEBSOCKETS"])


@app.on_ws_connect()
def websocket_connect(event: WebsocketEvent) -> dict:
    """Verify the token; 401 refuses the handshake."""
    return connections.connect(get_runtime(), event.to_dict())


@app.on_ws_message()
def websocket_message(event: WebsocketEvent) -> None:
    """Validate, record and queue the turn; reply `accepted` (or one `error`) in milliseconds."""
    messages.message(get_runtime(), event.to_dict())


@app.on_ws_disconnect()
def websocket_disconnect(event: WebsocketEvent) -> None:
    """Forget the connection (best effort: the record's TTL covers the rest)."""
    connections.disconnect(get_runtime(), event.to_dict())


# Chalice loads app.py with the stage's environment (.chalice/config.json) when it deploys; the
# packaged template replaces the placeholder queue with the stack's own.
@app.on_sqs_message(
    queue_arn=os.environ.get("TURN_QUEUE_ARN", "arn:aws:sqs:us-east-1:000000000000:agentstream-turns"),
    batch_size=int(os.environ.get("TURN_WORKER_BATCH_SIZE", "10")),
    maximum_concurrency=int(os.environ.get("TURN_WORKER_MAX_CONCURRENCY", "0")) or None,
)
def turn_worker(event: SQSEvent) -> dict:
    """Stream the batch's answers (and more from the queue) at once; report records to retry."""
    return worker.handle_batch(get_runtime(), event.to_dict()["Records"], event.context)
