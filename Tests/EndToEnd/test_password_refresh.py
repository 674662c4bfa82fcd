"""Proves the password grant (only for clients explicitly allowed, for a user created with the CLI) and
refresh-token rotation: each refresh returns a new refresh token, replaying a used one is refused and
revokes the whole family, refresh tokens are bound to their client and may only narrow scope."""

import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from oauthlib.oauth2 import InvalidGrantError, LegacyApplicationClient
from requests_oauthlib import OAuth2Session

from conftest import login, oauth_error, unique


@pytest.fixture(scope="module")
def client(gh, scopes):
    return gh.create_client(scope=" ".join(scopes), allow_password_grant=True)


def test_password_grant_with_requests_oauthlib(gh, client, user, scopes):
    session = OAuth2Session(client=LegacyApplicationClient(client_id=client["client_id"]), scope=[scopes[0]])
    token = session.fetch_token(token_url=gh.token_endpoint, username=user[0]["username"], password=user[1],
                                client_id=client["client_id"], client_secret=client["client_secret"],
                                scope=[scopes[0]])
    assert token["refresh_token"]
    claims = gh.decode(token["access_token"])
    assert claims["sub"] == user[0]["id"]
    assert claims["client_id"] == client["client_id"]
    assert claims["scope"] == scopes[0]
    assert claims["exp"] - claims["iat"] == token["expires_in"]


def test_wrong_password_is_invalid_grant(gh, client, user):
    session = OAuth2Session(client=LegacyApplicationClient(client_id=client["client_id"]))
    with pytest.raises(InvalidGrantError):
        session.fetch_token(token_url=gh.token_endpoint, username=user[0]["username"], password="wrong" + user[1],
                            client_id=client["client_id"], client_secret=client["client_secret"])
    r = gh.token(client, grant_type="password", username=user[0]["username"], password="wrong")
    oauth_error(r, 400, "invalid_grant")
    r = gh.token(client, grant_type="password", username=unique("ghost"), password=user[1])
    oauth_error(r, 400, "invalid_grant")


def test_password_grant_needs_explicit_permission(gh, user, scopes):
    other = gh.create_client(scope=scopes[0])
    assert "password" not in other["grant_types"]
    r = gh.token(other, grant_type="password", username=user[0]["username"], password=user[1])
    oauth_error(r, 400, "unauthorized_client")


def test_refresh_rotation_and_replay_revokes_family(gh, client, user, scopes):
    session = AuthlibSession(client["client_id"], client["client_secret"],
                             token_endpoint_auth_method="client_secret_basic")
    first = dict(session.fetch_token(gh.token_endpoint, username=user[0]["username"], password=user[1],
                                     scope=" ".join(scopes)))
    old = first["refresh_token"]
    second = dict(session.refresh_token(gh.token_endpoint, refresh_token=old))
    new = second["refresh_token"]
    assert new != old, "refresh token was not rotated"
    assert second["access_token"] != first["access_token"]
    claims = gh.decode(second["access_token"])
    assert claims["sub"] == user[0]["id"]
    assert set(claims["scope"].split()) == set(scopes)

    with pytest.raises(OAuthError) as replay:
        session.refresh_token(gh.token_endpoint, refresh_token=old)
    assert replay.value.error == "invalid_grant"
    # The replay revoked the family: the token issued by the first use is dead too.
    oauth_error(gh.token(client, grant_type="refresh_token", refresh_token=new), 400, "invalid_grant")


def test_refresh_token_is_bound_to_its_client(gh, client, user, scopes):
    first = login(gh, client, user, scopes[0])
    r = gh.token(client, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert r.status_code == 200, r.text
    other = gh.create_client(scope=" ".join(scopes), allow_password_grant=True)
    r = gh.token(other, grant_type="refresh_token", refresh_token=r.json()["refresh_token"])
    oauth_error(r, 400, "invalid_grant")


def test_refresh_may_narrow_but_not_widen_scope(gh, client, user, scopes):
    both = login(gh, client, user, " ".join(scopes))
    r = gh.token(client, grant_type="refresh_token", refresh_token=both["refresh_token"], scope=scopes[0])
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == scopes[0]
    assert gh.decode(r.json()["access_token"])["scope"] == scopes[0]

    narrow = login(gh, client, user, scopes[0])
    r = gh.token(client, grant_type="refresh_token", refresh_token=narrow["refresh_token"], scope=" ".join(scopes))
    oauth_error(r, 400, "invalid_scope")


def test_garbage_refresh_token_is_invalid_grant(gh, client):
    oauth_error(gh.token(client, grant_type="refresh_token", refresh_token="garbage"), 400, "invalid_grant")
