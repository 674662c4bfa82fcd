"""Proves signing-key rotation with `gatehouse keys rotate` while the server runs: the server picks the
new key up from the database by itself (it reloads keys periodically), publishes both keys in the JWKS,
signs new tokens with the new kid, and tokens signed with the old key still verify."""

import time

import jwt
import pytest
import requests

RELOAD_TIMEOUT = 20  # the contract promises ~15 s


def test_keys_rotate_while_serving(gh, scopes):
    c = gh.create_client(scope=scopes[0], grant_types=["client_credentials"])

    def new_token() -> str:
        r = gh.token(c, grant_type="client_credentials", scope=scopes[0])
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    old_token = new_token()
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    before = {k["kid"]: k for k in gh.cli("keys", "list")}
    assert old_kid in before

    rotated = gh.cli("keys", "rotate")
    after = {k["kid"]: k for k in gh.cli("keys", "list")}
    assert before.keys() <= after.keys(), "rotation must keep the old key for verification"
    (new_kid,) = after.keys() - before.keys()
    if isinstance(rotated, dict) and "kid" in rotated:
        assert rotated["kid"] == new_kid
    assert after[new_kid]["algorithm"] == "ES256"  # the default

    deadline = time.monotonic() + RELOAD_TIMEOUT
    while True:
        jwks = {k["kid"]: k for k in requests.get(gh.jwks_uri, timeout=10).json()["keys"]}
        token = new_token()
        kid = jwt.get_unverified_header(token)["kid"]
        if new_kid in jwks and kid == new_kid:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"{RELOAD_TIMEOUT}s after rotation: JWKS has {sorted(jwks)}, new tokens signed with "
                        f"{kid}; expected {new_kid} published and signing")
        time.sleep(0.5)

    assert old_kid in jwks, "old key dropped from the JWKS right after rotation"
    assert jwks[new_kid]["alg"] == "ES256" and jwks[new_kid]["use"] == "sig"
    assert gh.decode(token)["client_id"] == c["client_id"]
    assert gh.decode(old_token)["client_id"] == c["client_id"]
