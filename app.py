"""agentstream: Bedrock answers streamed over an API Gateway WebSocket API.

$connect verifies the token, $default queues the turn and answers at once, the SQS worker streams
the agent's answer back token by token; $disconnect forgets the connection. The REST API (/v1)
reaches the same turns without a socket. Uploaded documents go through a Step Functions pipeline into
the knowledge base (docs/documents.md). Everything else lives in chalicelib/, one concept per module.
"""
import os
from typing import Any

from chalice import AuthResponse, Chalice, Response
from chalice.app import AuthRequest, SNSEvent, SQSEvent, WebsocketEvent

from chalicelib.handlers import connections, messages, rest, worker
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


@app.authorizer(ttl_seconds=rest.AUTHORIZER_TTL_S)
def rest_authorizer(auth_request: AuthRequest) -> AuthResponse:
    """The REST API's bearer token, verified as at $connect: 401 refuses, the routes see its user."""
    return rest.authorize(get_runtime(), auth_request.token)


@app.route("/v1/turns", methods=["POST"], cors=rest.CORS, authorizer=rest_authorizer)
@rest.served
def create_turn() -> Response:
    """Ask without a socket: 202 with the turn's id; its answer is read with GET."""
    return rest.create_turn(get_runtime(), app.current_request)


@app.route("/v1/turns/{turn_id}", methods=["GET"], cors=rest.CORS, authorizer=rest_authorizer)
@rest.served
def get_turn(turn_id: str) -> Response:
    """The turn and its answer so far (404 unless it is the caller's)."""
    return rest.get_turn(get_runtime(), app.current_request, turn_id)


@app.route("/v1/turns/{turn_id}", methods=["DELETE"], cors=rest.CORS, authorizer=rest_authorizer)
@rest.served
def cancel_turn(turn_id: str) -> Response:
    """Cancel the turn: at once if queued, within a second if running."""
    return rest.cancel_turn(get_runtime(), app.current_request, turn_id)


@app.route("/v1/answers", methods=["GET"], cors=rest.CORS, authorizer=rest_authorizer)
@rest.served
def answer() -> Response:
    """A one-shot question (?q=): 200 with the answer (cached: no agent call), or 202 to poll."""
    return rest.answer(get_runtime(), app.current_request)


@app.route("/v1/conversations", methods=["GET"], cors=rest.CORS, authorizer=rest_authorizer)
@rest.served
def list_conversations() -> Response:
    """The caller's conversations, newest first (?limit=, ?cursor=)."""
    return rest.list_conversations(get_runtime(), app.current_request)


@app.route("/v1/conversations/{conversation_id}", methods=["GET"], cors=rest.CORS, authorizer=rest_authorizer)
@rest.served
def get_conversation(conversation_id: str) -> Response:
    """A conversation's turns in order: prompt, answer, status (?limit=, ?cursor=)."""
    return rest.get_conversation(get_runtime(), app.current_request, conversation_id)


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


# Documents (docs/documents.md): S3's notice of an upload starts the Step Functions pipeline, whose
# Lambda steps are the two functions below; its topic's subscriber tells the owner how it goes.
@app.on_sqs_message(
    queue_arn=os.environ.get("UPLOADS_QUEUE_ARN", "arn:aws:sqs:us-east-1:000000000000:agentstream-uploads"),
    batch_size=10,
)
def document_uploads(event: SQSEvent) -> dict:
    """An upload arrived: start the document pipeline, once per object version."""
    from chalicelib.documents import pipeline  # only this function's cold start pays for it

    return pipeline.handle_batch(get_runtime(), event.to_dict()["Records"])


@app.on_sns_message(topic=os.environ.get("DOCUMENTS_TOPIC", "agentstream-documents"))
def document_notices(event: SNSEvent) -> None:
    """A document moved on: record its status and push it to its owner's open connections."""
    from chalicelib.documents import notices

    notices.handle(get_runtime(), event.to_dict()["Records"])


@app.lambda_function(name="document_extract")
def document_extract(event: dict, context: Any) -> dict:
    """The pipeline's Extract step: the upload's text, chunked into the knowledge base's prefix."""
    from chalicelib.documents import tasks

    return tasks.extract(get_runtime(), event)


@app.lambda_function(name="document_analyse")
def document_analyse(event: dict, context: Any) -> dict:
    """The pipeline's Analyse step: a summary and key topics, from the agent."""
    from chalicelib.documents import tasks

    return tasks.analyse(get_runtime(), event)
