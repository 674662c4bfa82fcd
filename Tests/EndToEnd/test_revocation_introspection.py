"""Proves RFC 7662 introspection (accurate for live tokens; `{"active": false}` for revoked, garbage,
tampered and forged ones) and RFC 7009 revocation: Authlib's revoke_token works, revoking a refresh
token kills its family and the access tokens issued from it, and no client can revoke another's tokens."""

import base64
import json

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import basic_auth, login, oauth_error


@pytest.fixture(scope="module")
def client(gh, scopes):
    return gh.create_client(scope=" ".join(scopes), allow_password_grant=True,
                            grant_types=["refresh_token", "client_credentials"])


def revoke(gh, client, token, **extra):
    return requests.post(gh.revocation_endpoint, data={"token": token, **extra}, timeout=30,
                         headers={"Authorization": basic_auth(client["client_id"], client["client_secret"])})


def test_introspection_of_live_token(gh, client, user, scopes):
    token = login(gh, client, user, scopes[0])
    claims = gh.decode(token["access_token"])
    info = gh.introspect(token["access_token"], client)
    assert info["active"] is True
    assert info["client_id"] == client["client_id"]
    assert info["sub"] == user[0]["id"]
    assert info["scope"] == scopes[0]
    assert info["iss"] == gh.issuer
    assert info["aud"] in (gh.issuer, [gh.issuer])
    assert info["token_type"] == "Bearer"
    assert (info["exp"], info["iat"], info["jti"]) == (claims["exp"], claims["iat"], claims["jti"])


def test_revoke_refresh_token_with_authlib_revokes_family(gh, client, user, scopes):
    token = login(gh, client, user, scopes[0])
    assert gh.introspect(token["access_token"], client)["active"] is True
    session = AuthlibSession(client["client_id"], client["client_secret"],
                             token_endpoint_auth_method="client_secret_basic")
    r = session.revoke_token(gh.revocation_endpoint, token=token["refresh_token"], token_type_hint="refresh_token")
    assert r.status_code == 200, r.text
    assert gh.introspect(token["access_token"], client) == {"active": False}
    oauth_error(gh.token(client, grant_type="refresh_token", refresh_token=token["refresh_token"]),
                400, "invalid_grant")


def test_revoke_access_token(gh, client, scopes):
    access = gh.token(client, grant_type="client_credentials", scope=scopes[1]).json()["access_token"]
    assert gh.introspect(access, client)["active"] is True
    session = AuthlibSession(client["client_id"], client["client_secret"],
                             token_endpoint_auth_method="client_secret_post")
    assert session.revoke_token(gh.revocation_endpoint, token=access).status_code == 200
    assert gh.introspect(access, client) == {"active": False}


def test_revoking_unknown_token_is_200(gh, client):
    assert revoke(gh, client, "no-such-token").status_code == 200
    assert revoke(gh, client, "no-such-token", token_type_hint="refresh_token").status_code == 200


def test_revocation_requires_client_authentication(gh, client, scopes):
    access = gh.token(client, grant_type="client_credentials", scope=scopes[0]).json()["access_token"]
    oauth_error(requests.post(gh.revocation_endpoint, data={"token": access}, timeout=30), 401, "invalid_client")
    oauth_error(revoke(gh, {**client, "client_secret": "wrong"}, access), 401, "invalid_client")
    assert gh.introspect(access, client)["active"] is True


def test_other_client_cannot_revoke(gh, client, user, scopes):
    token = login(gh, client, user, scopes[0])
    other = gh.create_client(scope=scopes[0], grant_types=["client_credentials"])
    revoke(gh, other, token["access_token"])  # status is the server's choice; the effect is not
    revoke(gh, other, token["refresh_token"])
    assert gh.introspect(token["access_token"], client)["active"] is True
    r = gh.token(client, grant_type="refresh_token", refresh_token=token["refresh_token"])
    assert r.status_code == 200, r.text


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_introspection_of_garbage_tampered_and_forged_tokens(gh, client, scopes):
    real = gh.token(client, grant_type="client_credentials", scope=scopes[0]).json()["access_token"]
    header, claims = jwt.get_unverified_header(real), jwt.decode(real, options={"verify_signature": False})
    h, _, sig = real.split(".")
    widened = f"{h}.{b64({**claims, 'scope': ' '.join(scopes)})}.{sig}"
    unsigned = f"{b64({**header, 'alg': 'none'})}.{b64(claims)}."
    forged = jwt.encode({**claims, "jti": claims["jti"] + "x"}, ec.generate_private_key(ec.SECP256R1()),
                        algorithm="ES256", headers={"kid": header["kid"], "typ": "at+jwt"})
    for token in ("garbage", real + "x", widened, unsigned, forged):
        assert gh.introspect(token, client) == {"active": False}, token
    assert gh.introspect(real, client)["active"] is True


def test_introspection_requires_confidential_client(gh, client, scopes):
    access = gh.token(client, grant_type="client_credentials", scope=scopes[0]).json()["access_token"]
    r = requests.post(gh.introspection_endpoint, data={"token": access}, timeout=30)
    oauth_error(r, 401, "invalid_client")
    public = gh.create_client(scope=scopes[0], public=True)
    r = requests.post(gh.introspection_endpoint, data={"token": access, "client_id": public["client_id"]}, timeout=30)
    assert r.status_code in (400, 401), r.text
    assert "active" not in r.json()
