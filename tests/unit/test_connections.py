"""$connect and $disconnect through the Chalice test client, against moto's DynamoDB."""
import time

import boto3
import pytest

from chalicelib.settings import CONNECTION_TTL_S
from tests.support.events import ws_event
from tests.support.tokens import make_token


def _items(table):
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


def test_valid_token_in_query_stores_the_connection(client, settings):
    response = client.lambda_.invoke("websocket_connect", ws_event("$connect", "c1", query={"token": make_token("alice")}))
    assert response.payload["statusCode"] == 200
    (item,) = _items(settings.connections_table)
    assert item["connectionId"] == {"S": "c1"}
    assert item["userId"] == {"S": "alice"}
    expires = int(item["expiresAt"]["N"])
    assert abs(expires - (time.time() + CONNECTION_TTL_S)) < 10
    assert CONNECTION_TTL_S > 2 * 3600


def test_bearer_header_works_too(client, settings):
    event = ws_event("$connect", "c2", headers={"Authorization": f"Bearer {make_token('bob')}"})
    assert client.lambda_.invoke("websocket_connect", event).payload["statusCode"] == 200
    assert _items(settings.connections_table)[0]["userId"] == {"S": "bob"}


@pytest.mark.parametrize(
    "query",
    [
        None,
        {"token": ""},
        {"token": "garbage"},
        {"token": make_token(ttl=-120)},
        {"token": make_token(secret="some-other-secret-0123456789abcdef")},
    ],
    ids=["missing", "empty", "malformed", "expired", "wrong-key"],
)
def test_refused_connects_return_401_and_write_nothing(client, settings, query):
    response = client.lambda_.invoke("websocket_connect", ws_event("$connect", "c3", query=query))
    assert response.payload["statusCode"] == 401
    assert _items(settings.connections_table) == []


def test_disconnect_deletes_the_record(client, settings):
    client.lambda_.invoke("websocket_connect", ws_event("$connect", "c1", query={"token": make_token()}))
    response = client.lambda_.invoke("websocket_disconnect", ws_event("$disconnect", "c1"))
    assert response.payload == {"statusCode": 200}
    assert _items(settings.connections_table) == []


def test_disconnect_of_an_unknown_connection_is_fine(client):
    assert client.lambda_.invoke("websocket_disconnect", ws_event("$disconnect", "nope")).payload == {"statusCode": 200}


def test_the_token_is_never_logged(client, caplog):
    token = make_token("alice")
    with caplog.at_level("DEBUG"):
        client.lambda_.invoke("websocket_connect", ws_event("$connect", "c1", query={"token": token}))
        client.lambda_.invoke("websocket_connect", ws_event("$connect", "c2", query={"token": token + "x"}))
    messages = [record.getMessage() for record in caplog.records]
    assert "connected" in messages and "connect refused" in messages
    everything = " ".join(str(record.__dict__) for record in caplog.records)
    assert token.split(".")[1] not in everything and token.split(".")[2] not in everything


@pytest.mark.parametrize(
    "claims, why",
    [
        ({"sub": "€" * 1000}, "longer than a DynamoDB key may be"),
        ({"sub": "a\ud800b"}, "not UTF-8: an unpaired surrogate"),
        ({"exp": str(int(time.time()) + 300)}, "a numeric string is not a NumericDate"),
        ({"iat": "0"}, "the same for iat"),
    ],
    ids=["long-sub", "surrogate-sub", "string-exp", "string-iat"],
)
def test_identities_that_cannot_be_stored_or_are_malformed_are_refused_with_401(client, settings, claims, why):
    token = make_token(**{"sub": "alice", **claims})
    response = client.lambda_.invoke("websocket_connect", ws_event("$connect", "c1", query={"token": token}))
    assert response.payload["statusCode"] == 401, why
    assert _items(settings.connections_table) == []


def test_a_sub_with_a_nul_is_its_own_user(client, settings):
    token = make_token("alice\0bob")
    response = client.lambda_.invoke("websocket_connect", ws_event("$connect", "c1", query={"token": token}))
    assert response.payload["statusCode"] == 200
    assert _items(settings.connections_table)[0]["userId"] == {"S": "alice\0bob"}
