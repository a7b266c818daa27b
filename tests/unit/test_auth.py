import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chalicelib.auth import AuthError, TokenVerifier, token_from_request
from chalicelib.settings import Settings
from tests.support.tokens import SECRET, make_token

ISSUER = "https://issuer.example/pool"


def test_token_from_query_or_bearer_header():
    assert token_from_request({"token": "q"}, {"Authorization": "Bearer h"}) == "q"
    assert token_from_request(None, {"authorization": "Bearer  h "}) == "h"
    assert token_from_request({}, {"Authorization": "Basic abc"}) is None
    assert token_from_request(None, None) is None


def test_hs256_token_gives_the_subject():
    identity = TokenVerifier(Settings(jwt_secret=SECRET)).verify(make_token("alice"))
    assert identity.user_id == "alice"


@pytest.mark.parametrize(
    "token, reason",
    [
        (lambda: make_token(ttl=-120), "expired"),
        (lambda: make_token(secret="another-secret-0123456789abcdef0123"), "Signature"),
        (lambda: make_token(sub=None), "sub"),
        (lambda: make_token(exp=None, ttl=0), "exp"),
        (lambda: make_token(nbf=int(time.time()) + 600), "not yet valid"),
        (lambda: "not-a-jwt", "malformed"),
    ],
)
def test_bad_hs256_tokens_are_refused(token, reason):
    # Made when the test runs, not when it is collected: a token made minutes earlier has expired.
    with pytest.raises(AuthError, match=reason):
        TokenVerifier(Settings(jwt_secret=SECRET)).verify(token())


def test_tampered_payload_is_refused():
    header, payload, signature = make_token("alice").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(AuthError):
        TokenVerifier(Settings(jwt_secret=SECRET)).verify(f"{header}.{forged}.{signature}")


def test_alg_none_is_refused():
    unsigned = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(AuthError, match="not accepted"):
        TokenVerifier(Settings(jwt_secret=SECRET)).verify(unsigned)


def test_issuer_and_audience_are_checked_when_configured():
    verifier = TokenVerifier(Settings(jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=("app",)))
    assert verifier.verify(make_token(iss=ISSUER, aud="app")).user_id == "alice"
    with pytest.raises(AuthError, match="issuer"):
        verifier.verify(make_token(iss="https://evil.example", aud="app"))
    with pytest.raises(AuthError, match="(?i)audience"):
        verifier.verify(make_token(iss=ISSUER, aud="other"))


def test_secret_can_come_from_a_loader_once():
    calls = []

    def load() -> str:
        calls.append(1)
        return SECRET

    verifier = TokenVerifier(Settings(jwt_secret_parameter="/agentstream/jwt"), secret_loader=load)
    verifier.verify(make_token())
    verifier.verify(make_token())
    assert calls == [1]


def test_a_deployed_stage_refuses_the_development_secret_from_ssm_too():
    from chalicelib.settings import DEV_JWT_SECRET_MARKER, SettingsError

    for stage, refused in (("dev", True), ("local", False)):
        settings = Settings(stage=stage, jwt_secret_parameter="/agentstream/jwt")
        verifier = TokenVerifier(settings, secret_loader=lambda: DEV_JWT_SECRET_MARKER + "what make run generates")
        if refused:
            with pytest.raises(SettingsError, match="development secret"):
                verifier.verify(make_token())
        else:
            with pytest.raises(AuthError, match="Signature"):  # the test token is signed with another secret
                verifier.verify(make_token())


def test_hs256_refused_when_no_secret_is_configured():
    with pytest.raises(AuthError, match="no secret"):
        TokenVerifier(Settings(jwks_url="http://127.0.0.1:1/jwks", jwt_issuer=ISSUER)).verify(make_token())


# ---- RS256 / ES256 against a JWKS served on loopback ---------------------------------------

@pytest.fixture(scope="module")
def keys():
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
    }


@pytest.fixture(scope="module")
def jwks_server(keys):
    jwks = {
        "keys": [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys["rsa"].public_key())), "kid": "rsa1", "alg": "RS256"},
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(keys["ec"].public_key())), "kid": "ec1", "alg": "ES256"},
        ]
    }
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            hits.append(self.path)
            body = json.dumps(jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json", hits
    server.shutdown()
    server.server_close()


def _asymmetric(key, alg, kid, **claims):
    now = int(time.time())
    payload = {"sub": "carol", "iss": ISSUER, "aud": "app", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def _jwks_verifier(url):
    return TokenVerifier(Settings(jwks_url=url, jwt_issuer=ISSUER, jwt_audience=("app",)))


def test_rs256_and_es256_against_jwks_with_cached_keys(keys, jwks_server):
    url, hits = jwks_server
    verifier = _jwks_verifier(url)
    assert verifier.verify(_asymmetric(keys["rsa"], "RS256", "rsa1")).user_id == "carol"
    assert verifier.verify(_asymmetric(keys["ec"], "ES256", "ec1")).user_id == "carol"
    before = len(hits)
    verifier.verify(_asymmetric(keys["rsa"], "RS256", "rsa1"))
    assert len(hits) == before  # the key set is cached


def test_jwks_tokens_from_another_issuer_or_key_are_refused(keys, jwks_server):
    url, _ = jwks_server
    verifier = _jwks_verifier(url)
    with pytest.raises(AuthError, match="issuer"):
        verifier.verify(_asymmetric(keys["rsa"], "RS256", "rsa1", iss="https://evil.example"))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError):
        verifier.verify(_asymmetric(stranger, "RS256", "rsa1"))


def test_algorithm_confusion_is_refused(keys, jwks_server):
    """An HS256 token 'signed' with the public RSA key must not pass as the issuer's."""
    url, _ = jwks_server
    public_pem = keys["rsa"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "rsa1"}).encode()).rstrip(b"=")
    now = int(time.time())
    payload = base64.urlsafe_b64encode(
        json.dumps({"sub": "mallory", "iss": ISSUER, "aud": "app", "exp": now + 60}).encode()
    ).rstrip(b"=")
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()).rstrip(b"=")
    forged = b".".join([header, payload, signature]).decode()
    with pytest.raises(AuthError):
        _jwks_verifier(url).verify(forged)


# ---- Amazon Cognito: token_use, app client, group --------------------------------------------

CLIENT = "localclient0123456789abcdef"


def _cognito(key, token_use="access", client=CLIENT, **claims):
    """A token shaped as Cognito issues it: access tokens name the client in client_id, ID tokens in aud."""
    now = int(time.time())
    claim = "client_id" if token_use == "access" else "aud"
    payload = {"sub": "carol", "iss": ISSUER, "iat": now, "exp": now + 300, claim: client, "token_use": token_use, **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "rsa1"})


def _cognito_verifier(url, **settings):
    return TokenVerifier(Settings(jwks_url=url, jwt_issuer=ISSUER, **settings))


def test_a_cognito_access_token_of_the_app_client_in_the_group_is_accepted(keys, jwks_server):
    url, _ = jwks_server
    verifier = _cognito_verifier(url, jwt_token_use="access", jwt_client_id=("other", CLIENT), jwt_required_group="chat")
    identity = verifier.verify(_cognito(keys["rsa"], **{"cognito:groups": ["staff", "chat"]}))
    assert identity.user_id == "carol" and identity.claims["token_use"] == "access"


@pytest.mark.parametrize("required, presented", [("access", "id"), ("id", "access")])
def test_a_token_of_the_other_kind_is_refused(keys, jwks_server, required, presented):
    url, _ = jwks_server
    verifier = _cognito_verifier(url, jwt_token_use=required, jwt_client_id=(CLIENT,))
    assert verifier.verify(_cognito(keys["rsa"], token_use=required)).user_id == "carol"
    with pytest.raises(AuthError, match=f"'token_use' is not '{required}'"):
        verifier.verify(_cognito(keys["rsa"], token_use=presented))
    with pytest.raises(AuthError, match="token_use"):
        verifier.verify(_cognito(keys["rsa"], token_use=None))


@pytest.mark.parametrize("token_use, claim", [("access", "client_id"), ("id", "aud")])
def test_a_token_of_another_app_client_is_refused(keys, jwks_server, token_use, claim):
    url, _ = jwks_server
    verifier = _cognito_verifier(url, jwt_token_use=token_use, jwt_client_id=(CLIENT,))
    with pytest.raises(AuthError, match=f"'{claim}' claim names no accepted app client"):
        verifier.verify(_cognito(keys["rsa"], token_use=token_use, client="anotherclient"))
    with pytest.raises(AuthError, match="no accepted app client"):
        verifier.verify(_cognito(keys["rsa"], token_use=token_use, client=None))


def test_the_client_claim_follows_the_tokens_kind(keys, jwks_server):
    """An access token's client is its client_id, never an aud it also carries; an ID token's is its aud."""
    url, _ = jwks_server
    verifier = _cognito_verifier(url, jwt_client_id=(CLIENT,))  # token_use itself not required
    with pytest.raises(AuthError, match="'client_id'"):
        verifier.verify(_cognito(keys["rsa"], token_use="access", client="anotherclient", aud=CLIENT))
    with pytest.raises(AuthError, match="'aud'"):
        verifier.verify(_cognito(keys["rsa"], token_use="id", client="anotherclient", client_id=CLIENT))
    # Without token_use (another issuer's token), the audience is the client; a list may name it.
    assert verifier.verify(_asymmetric(keys["rsa"], "RS256", "rsa1", aud=["x", CLIENT])).user_id == "carol"
    with pytest.raises(AuthError, match="'aud'"):
        verifier.verify(_asymmetric(keys["rsa"], "RS256", "rsa1", aud="app", client_id=CLIENT))


@pytest.mark.parametrize("groups", [None, [], ["staff"], "chat", ["chatters"]])
def test_a_token_without_the_required_group_is_refused(keys, jwks_server, groups):
    url, _ = jwks_server
    verifier = _cognito_verifier(url, jwt_token_use="access", jwt_client_id=(CLIENT,), jwt_required_group="chat")
    with pytest.raises(AuthError, match="not in the required group"):
        verifier.verify(_cognito(keys["rsa"], **{"cognito:groups": groups}))


def test_cognito_checks_are_off_unless_configured(keys, jwks_server):
    url, _ = jwks_server
    verifier = _cognito_verifier(url)
    for token_use in ("access", "id", None):
        assert verifier.verify(_cognito(keys["rsa"], token_use=token_use, client="anyclient")).user_id == "carol"


def test_cognito_checks_apply_to_hs256_tokens_too():
    verifier = TokenVerifier(Settings(jwt_secret=SECRET, jwt_token_use="access", jwt_client_id=(CLIENT,)))
    assert verifier.verify(make_token(token_use="access", client_id=CLIENT)).user_id == "alice"
    with pytest.raises(AuthError, match="token_use"):
        verifier.verify(make_token())
