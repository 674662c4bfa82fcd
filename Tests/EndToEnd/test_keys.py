"""Proves signing-key rotation while the server runs (it reloads keys from the database by itself):
- `gatehouse keys rotate` publishes before it signs: the new key is `pending`, in the JWKS at the server's
  next reload, and signs only from `activates_at` = now + key_reload_interval + 60 s, so every resource
  server has fetched it before the first token it signs; until then the old key keeps signing.
- `gatehouse keys rotate --now` (emergencies) makes the new key sign at the next reload; both keys stay
  published and tokens signed with the old one still verify."""

import time

import jwt
import requests

from conftest import wait_until

RELOAD_TIMEOUT = 20  # the session server's key reload interval is the default 10 s
KEY_RELOAD_INTERVAL = 10
ACTIVATION_DELAY = KEY_RELOAD_INTERVAL + 60  # spec D: activates_at = now + key_reload_interval + 60 s


def token_of(gh, client, scope) -> str:
    r = gh.token(client, grant_type="client_credentials", scope=scope)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def published(gh) -> dict:
    return {k["kid"]: k for k in requests.get(gh.jwks_uri, timeout=10).json()["keys"]}


def test_keys_rotate_now_while_serving(gh, scopes):
    c = gh.create_client(scope=scopes[0], grant_types=["client_credentials"])
    old_token = token_of(gh, c, scopes[0])
    old_kid = kid_of(old_token)
    before = {k["kid"]: k for k in gh.cli("keys", "list")}
    assert old_kid in before

    rotated = gh.cli("keys", "rotate", "--now")
    after = {k["kid"]: k for k in gh.cli("keys", "list")}
    assert before.keys() <= after.keys(), "rotation must keep the old key for verification"
    (new_kid,) = after.keys() - before.keys()
    if isinstance(rotated, dict) and "kid" in rotated:
        assert rotated["kid"] == new_kid
    assert after[new_kid]["algorithm"] == "ES256"  # the default
    assert after[new_kid]["status"] == "signing", after[new_kid]

    seen = {}

    def switched():
        seen["jwks"], seen["token"] = published(gh), token_of(gh, c, scopes[0])
        return new_kid in seen["jwks"] and kid_of(seen["token"]) == new_kid

    wait_until(switched, lambda: f"{new_kid} published and signing after `keys rotate --now`; JWKS has "
                                 f"{sorted(seen['jwks'])}, new tokens signed with {kid_of(seen['token'])}",
               timeout=RELOAD_TIMEOUT, interval=0.5)
    jwks, token = seen["jwks"], seen["token"]

    assert old_kid in jwks, "old key dropped from the JWKS right after rotation"
    assert jwks[new_kid]["alg"] == "ES256" and jwks[new_kid]["use"] == "sig"
    assert gh.decode(token)["client_id"] == c["client_id"]
    assert gh.decode(old_token)["client_id"] == c["client_id"]


def test_keys_rotate_publishes_before_signing(gh, scopes):
    c = gh.create_client(scope=scopes[0], grant_types=["client_credentials"])
    signing = kid_of(token_of(gh, c, scopes[0]))
    before = {k["kid"]: k for k in gh.cli("keys", "list")}
    assert before[signing]["status"] == "signing", before[signing]

    started = time.time()
    rotated = gh.cli("keys", "rotate")
    after = {k["kid"]: k for k in gh.cli("keys", "list")}
    (new_kid,) = after.keys() - before.keys()
    if isinstance(rotated, dict) and "kid" in rotated:
        assert rotated["kid"] == new_kid
    new = after[new_kid]
    assert new["status"] == "pending", new
    assert started + ACTIVATION_DELAY - 3 <= new["activates_at"] <= time.time() + ACTIVATION_DELAY + 3, \
        (new, started)
    assert after[signing]["status"] == "signing", after[signing]

    # Published at the server's next reload, while the old key keeps signing.
    seen = {}

    def in_jwks():
        seen["jwks"], seen["token"] = published(gh), token_of(gh, c, scopes[0])
        assert kid_of(seen["token"]) == signing, f"the pending key {new_kid} signs before its activates_at"
        return new_kid in seen["jwks"]

    wait_until(in_jwks, lambda: f"{new_kid} in the JWKS after `keys rotate`; it has {sorted(seen['jwks'])}",
               timeout=RELOAD_TIMEOUT, interval=0.5)
    jwks, token = seen["jwks"], seen["token"]
    assert signing in jwks and jwks[new_kid]["use"] == "sig"
    assert gh.decode(token)["client_id"] == c["client_id"]
    # Still pending (activation is a minute away) and still not signing after the reload that published it.
    assert {k["kid"]: k for k in gh.cli("keys", "list")}[new_kid]["status"] == "pending"
    assert kid_of(token_of(gh, c, scopes[0])) == signing
