"""Proves the metadata documents (OpenID Discovery, RFC 8414) and the JWKS describe the running
server consistently: same issuer, endpoints under it that answer, and signing keys a client can use."""

import pytest
import requests


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration",
                                  "/.well-known/oauth-authorization-server"])
def test_metadata_matches_issuer(gh, path):
    r = requests.get(gh.issuer + path, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    meta = r.json()
    assert meta["issuer"] == gh.issuer
    assert meta["token_endpoint"] == gh.token_endpoint
    assert meta["jwks_uri"] == gh.jwks_uri
    assert meta["revocation_endpoint"] == gh.revocation_endpoint
    assert meta["introspection_endpoint"] == gh.introspection_endpoint
    assert {"client_credentials", "refresh_token"} <= set(meta["grant_types_supported"])
    assert "implicit" not in meta["grant_types_supported"]
    assert {"client_secret_basic", "client_secret_post", "none"} <= set(
        meta["token_endpoint_auth_methods_supported"])
    assert {"openid", "profile", "email", "offline_access"} <= set(meta["scopes_supported"])


def test_both_documents_agree(gh):
    oidc = requests.get(gh.issuer + "/.well-known/openid-configuration", timeout=10).json()
    oauth = requests.get(gh.issuer + "/.well-known/oauth-authorization-server", timeout=10).json()
    for field in ("issuer", "token_endpoint", "jwks_uri", "revocation_endpoint",
                  "introspection_endpoint", "grant_types_supported"):
        assert oidc[field] == oauth[field], field


def test_jwks_publishes_signing_keys(gh):
    keys = requests.get(gh.jwks_uri, timeout=10).json()["keys"]
    assert keys
    for key in keys:
        assert key["kid"] and key["alg"] and key["use"] == "sig"
        # Public halves only: no private EC/OKP ("d") or RSA ("d", "p", "q") members.
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & key.keys(), key
    assert len({k["kid"] for k in keys}) == len(keys)


def test_unknown_path_is_404(gh):
    assert requests.get(gh.issuer + "/.well-known/nope", timeout=10).status_code == 404
