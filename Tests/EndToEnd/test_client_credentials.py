"""Proves the client_credentials grant works with stock client libraries (requests-oauthlib with HTTP
Basic, Authlib with client_secret_post, a plain JSON body), that the access token is an RFC 9068 JWT a
resource server can verify from the JWKS, and that bad requests get the RFC 6749 §5.2 errors."""

import time

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session

from conftest import oauth_error, unique


@pytest.fixture(scope="module")
def client(gh, scopes):
    return gh.create_client(scope=" ".join(scopes), grant_types=["client_credentials"])


def check_token(gh, client, token: dict, scope: str, audience: str | None = None) -> dict:
    assert token["token_type"].lower() == "bearer"
    granted = token["scope"]  # requests-oauthlib hands it back as a list
    assert set(granted.split() if isinstance(granted, str) else granted) == set(scope.split())
    assert "refresh_token" not in token  # RFC 6749 §4.4.3
    claims = gh.decode(token["access_token"], audience=audience)
    assert claims["client_id"] == client["client_id"]
    assert claims["sub"] == client["client_id"]  # no resource owner: the client is the subject
    assert set(claims["scope"].split()) == set(scope.split())
    assert claims["exp"] - claims["iat"] == token["expires_in"]
    assert abs(claims["iat"] - time.time()) < 60
    return claims


def test_requests_oauthlib_basic_auth(gh, client, scopes):
    session = OAuth2Session(client=BackendApplicationClient(client_id=client["client_id"]), scope=[scopes[0]])
    token = session.fetch_token(token_url=gh.token_endpoint, client_id=client["client_id"],
                                client_secret=client["client_secret"], scope=[scopes[0]])
    claims = check_token(gh, client, token, scopes[0])
    assert claims["aud"] in (gh.issuer, [gh.issuer])


def test_authlib_client_secret_post(gh, client, scopes):
    session = AuthlibSession(client["client_id"], client["client_secret"],
                             token_endpoint_auth_method="client_secret_post", scope=" ".join(scopes))
    token = session.fetch_token(gh.token_endpoint, grant_type="client_credentials")
    check_token(gh, client, token, " ".join(scopes))


def test_json_body_and_no_store(gh, client, scopes):
    r = requests.post(gh.token_endpoint, timeout=30, json={
        "grant_type": "client_credentials", "client_id": client["client_id"],
        "client_secret": client["client_secret"], "scope": scopes[1]})
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers.get("Cache-Control", "")
    check_token(gh, client, r.json(), scopes[1])


def test_tokens_are_unique(gh, client, scopes):
    a = gh.token(client, grant_type="client_credentials", scope=scopes[0]).json()
    b = gh.token(client, grant_type="client_credentials", scope=scopes[0]).json()
    assert a["access_token"] != b["access_token"]
    assert gh.decode(a["access_token"])["jti"] != gh.decode(b["access_token"])["jti"]


def test_default_algorithm_is_es256(gh, client, scopes):
    token = gh.token(client, grant_type="client_credentials", scope=scopes[0]).json()["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "ES256"


def test_wrong_secret_is_invalid_client(gh, client):
    r = gh.token(client, secret="not-the-secret", grant_type="client_credentials")
    oauth_error(r, 401, "invalid_client")
    assert r.headers.get("WWW-Authenticate", "").lower().startswith("basic")


def test_unknown_client_is_invalid_client(gh):
    r = gh.token({"client_id": unique("nobody"), "client_secret": "x"}, grant_type="client_credentials")
    oauth_error(r, 401, "invalid_client")


def test_unsupported_grant_type(gh, client):
    oauth_error(gh.token(client, grant_type="urn:example:nope"), 400, "unsupported_grant_type")


def test_grant_type_not_registered_is_unauthorized_client(gh, scopes):
    other = gh.create_client(scope=scopes[0])  # default grants: authorization_code refresh_token
    oauth_error(gh.token(other, grant_type="client_credentials"), 400, "unauthorized_client")


def test_scope_outside_registration_is_invalid_scope(gh, client, scopes):
    oauth_error(gh.token(client, grant_type="client_credentials", scope=f"{scopes[0]} admin"),
                400, "invalid_scope")
    other = gh.create_client(scope=scopes[0], grant_types=["client_credentials"])
    oauth_error(gh.token(other, grant_type="client_credentials", scope=scopes[1]), 400, "invalid_scope")


def test_duplicated_parameter_is_invalid_request(gh, client, scopes):
    r = requests.post(gh.token_endpoint, timeout=30,
                      data=[("grant_type", "client_credentials"), ("scope", scopes[0]), ("scope", scopes[1])],
                      auth=(client["client_id"], client["client_secret"]))
    oauth_error(r, 400, "invalid_request")


def test_resource_indicator_sets_audience(gh, scopes):
    api = "https://api.example.com/"
    c = gh.create_client(scope=scopes[0], grant_types=["client_credentials"], resources=[api])
    r = gh.token(c, grant_type="client_credentials", scope=scopes[0], resource=api)
    assert r.status_code == 200, r.text
    claims = check_token(gh, c, r.json(), scopes[0], audience=api)
    assert claims["aud"] in (api, [api])
    r = gh.token(c, grant_type="client_credentials", scope=scopes[0], resource="https://other.example.com/")
    oauth_error(r, 400, "invalid_target")
