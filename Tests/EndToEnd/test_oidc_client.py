"""Proves browser sign-in and OpenID Connect with a real relying-party library (Authlib): discovery,
the authorization code flow with PKCE S256, state, nonce and RFC 9207 `iss`, ID tokens validated with
Authlib's JOSE stack against the JWKS (`at_hash`, `azp`, `auth_time`, `sid`, `sub`), UserInfo claims by
scope, refresh with a new ID token, RP-initiated logout, `prompt=none`, the out-of-band code page, and
the error page that never redirects. A requests.Session plays the browser through the HTML forms."""

import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from conftest import Browser, oauth_error, parse_page, query, unique

REDIRECT_URI = "https://rp.example.com/callback"
LOGOUT_URI = "https://rp.example.com/signed-out"
OOB = "urn:ietf:wg:oauth:2.0:oob"
FULL_SCOPE = "openid profile email offline_access"


@pytest.fixture(scope="module")
def meta(gh):
    return gh.metadata()


def profile_user(gh):
    """A user with every profile and email claim set: (JSON, password, profile)."""
    profile = {"email": unique("mail") + "@example.com", "name": "Ada Lovelace", "given_name": "Ada",
               "family_name": "Lovelace", "picture": "https://rp.example.com/ada.png"}
    user, password = gh.create_user(email_verified=True, **profile)
    return user, password, profile


def relying_party(client: dict, scope: str, redirect_uri: str = REDIRECT_URI) -> OAuth2Session:
    return OAuth2Session(
        client["client_id"], client.get("client_secret"), scope=scope, redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="none" if client["public"] else "client_secret_basic",
    )


def redirect_params(r: requests.Response, redirect_uri: str = REDIRECT_URI) -> dict:
    """The query of an authorization response that redirects to `redirect_uri`."""
    assert r.status_code in (302, 303), (r.status_code, r.url, r.text[:2000])
    location = r.headers["Location"]
    assert location.startswith(redirect_uri + "?"), location
    return query(location)


def validate_id_token(meta: dict, id_token: str, client_id: str, *, nonce: str | None = None,
                      access_token: str | None = None) -> CodeIDToken:
    """Verify the signature with the JWKS from jwks_uri and validate the claims the way Authlib's
    OpenID client does (CodeIDToken: iss, aud, exp, iat, nonce, azp, at_hash), with every claim
    Gatehouse promises made essential."""
    jwks = requests.get(meta["jwks_uri"], timeout=10).json()
    token = jose_jwt.decode(id_token, KeySet.import_key_set(jwks),
                            algorithms=meta["id_token_signing_alg_values_supported"])
    assert token.header.get("typ") == "JWT", token.header
    assert token.header.get("kid") in {k["kid"] for k in jwks["keys"]}, token.header
    options = {
        "iss": {"essential": True, "value": meta["issuer"]},
        "aud": {"essential": True, "value": client_id},
        "azp": {"essential": True, "value": client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "auth_time": {"essential": True},
        "sid": {"essential": True},
    }
    if nonce is not None:
        options["nonce"] = {"essential": True, "value": nonce}
    if access_token is not None:
        options["at_hash"] = {"essential": True}
    claims = CodeIDToken(token.claims, token.header, options,
                         {"client_id": client_id, "nonce": nonce, "access_token": access_token})
    claims.validate(leeway=5)  # raises on any mismatch, a wrong at_hash included
    return claims


@dataclass
class Flow:
    browser: Browser
    rp: OAuth2Session
    client: dict
    user: tuple
    token: dict
    claims: CodeIDToken | None
    pages: list
    started: int


def code_flow(gh, meta, client, user, scope=FULL_SCOPE, *, browser=None, remember=False,
              redirect_uri=REDIRECT_URI, **extra) -> Flow:
    """Sign in and consent in `browser` (a new one by default), then redeem the code with Authlib."""
    rp = relying_party(client, scope, redirect_uri)
    verifier = generate_token(48)
    nonce = generate_token(20)
    url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                             nonce=nonce, **extra)
    assert "code_challenge_method=S256" in url
    browser = browser or Browser(gh)
    started = int(time.time())
    r, pages = browser.authorize(url, user, "allow", remember)
    params = redirect_params(r, redirect_uri)
    assert params["iss"] == gh.issuer, params
    assert params["state"] == state, params
    assert params.get("code"), params
    assert "error" not in params, params
    token = rp.fetch_token(meta["token_endpoint"], authorization_response=r.headers["Location"],
                           state=state, code_verifier=verifier)
    assert token["token_type"].lower() == "bearer", token
    claims = None
    if "openid" in scope.split():
        claims = validate_id_token(meta, token["id_token"], client["client_id"], nonce=nonce,
                                   access_token=token["access_token"])
    return Flow(browser, rp, client, user, dict(token), claims, pages, started)


def new_client(gh, scope=FULL_SCOPE, **kw):
    kw.setdefault("redirect_uris", [REDIRECT_URI])
    return gh.create_client(scope=scope, **kw)


# --- discovery -------------------------------------------------------------------------------------
def test_discovery_describes_an_openid_provider(gh, meta):
    # Authlib's own OpenID Discovery 1.0 checks, all but one: Discovery §3 wants RS256 among the ID token
    # algorithms, but Gatehouse signs ID tokens with its one signing key (ES256 by default) and lists
    # only what it can sign with. That list is checked below instead.
    checks = OpenIDProviderMetadata(meta)
    for key in checks.REGISTRY_KEYS:
        if key != "id_token_signing_alg_values_supported":
            getattr(checks, "validate_" + key)()
    algs = meta["id_token_signing_alg_values_supported"]
    assert isinstance(algs, list) and algs and "none" not in algs, algs
    assert meta["issuer"] == gh.issuer
    for endpoint, path in (("authorization_endpoint", "/oauth2/authorize"),
                           ("userinfo_endpoint", "/oauth2/userinfo"),
                           ("end_session_endpoint", "/oauth2/logout")):
        assert meta[endpoint] == gh.issuer + path, (endpoint, meta.get(endpoint))
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert "authorization_code" in meta["grant_types_supported"]
    assert "public" in meta["subject_types_supported"]
    jwks = requests.get(meta["jwks_uri"], timeout=10).json()
    assert {k["alg"] for k in jwks["keys"]} <= set(algs), (jwks, algs)


# --- the code flow -------------------------------------------------------------------------------
def test_code_flow_id_token(gh, meta):
    client = new_client(gh)
    user, password, _ = profile_user(gh)
    flow = code_flow(gh, meta, client, (user, password))

    login, consent = flow.pages
    assert login.form("#login-form") is not None
    assert set(consent.scopes) == set(FULL_SCOPE.split()), consent.scopes
    assert client["name"] in consent.response.text

    assert flow.token["refresh_token"], flow.token
    c = flow.claims
    assert c["sub"] == user["id"] and c["sub"] != user["username"]
    assert c["aud"] == client["client_id"] or c["aud"] == [client["client_id"]]
    assert c["azp"] == client["client_id"]
    assert "at_hash" in c
    assert flow.started - 2 <= c["auth_time"] <= int(time.time()) + 2, (flow.started, c["auth_time"])
    assert isinstance(c["sid"], str) and c["sid"]
    assert c["exp"] > c["iat"]

    access = gh.decode(flow.token["access_token"])
    assert access["sub"] == user["id"]
    assert access["client_id"] == client["client_id"]
    assert set(access["scope"].split()) == set(FULL_SCOPE.split())


def test_userinfo_returns_claims_by_scope(gh, meta):
    client = new_client(gh)
    user, password, profile = profile_user(gh)
    flow = code_flow(gh, meta, client, (user, password), scope="openid profile email")

    r = flow.rp.get(meta["userinfo_endpoint"], timeout=10)  # Authlib sends Authorization: Bearer
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["sub"] == user["id"] == flow.claims["sub"]
    for claim in ("name", "given_name", "family_name", "picture", "email"):
        assert info[claim] == profile[claim], (claim, info)
    assert info["preferred_username"] == user["username"]
    assert info["email_verified"] is True
    assert isinstance(info["updated_at"], int)
    assert not {"address", "phone_number", "phone_number_verified"} & info.keys(), info

    # The same with the token in a POST form body.
    r = requests.post(meta["userinfo_endpoint"], data={"access_token": flow.token["access_token"]}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == info

    # Only `email`: no profile claims.
    email_only = code_flow(gh, meta, client, (user, password), scope="openid email")
    info = email_only.rp.get(meta["userinfo_endpoint"], timeout=10).json()
    assert info["sub"] == user["id"]
    assert info["email"] == profile["email"] and info["email_verified"] is True
    assert not {"name", "given_name", "family_name", "preferred_username", "picture"} & info.keys(), info


def test_userinfo_errors(gh, meta):
    r = requests.get(meta["userinfo_endpoint"], headers={"Authorization": "Bearer garbage"}, timeout=10)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer"), r.headers
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    r = requests.get(meta["userinfo_endpoint"], timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer"), r.headers

    # An access token granted without `openid` is not for UserInfo.
    client = new_client(gh, scope="openid profile")
    user = gh.create_user()
    flow = code_flow(gh, meta, client, user, scope="profile")
    assert "id_token" not in flow.token
    r = flow.rp.get(meta["userinfo_endpoint"], timeout=10)
    assert r.status_code == 403, r.text
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]


def test_refresh_returns_a_new_id_token(gh, meta):
    client = new_client(gh)
    user = gh.create_user()
    flow = code_flow(gh, meta, client, user)
    fresh = dict(flow.rp.refresh_token(meta["token_endpoint"]))
    assert fresh["access_token"] != flow.token["access_token"]
    assert fresh["refresh_token"] != flow.token["refresh_token"]
    assert fresh["id_token"] != flow.token["id_token"]
    claims = validate_id_token(meta, fresh["id_token"], client["client_id"], access_token=fresh["access_token"])
    for same in ("iss", "sub", "aud", "azp", "auth_time"):
        assert claims[same] == flow.claims[same], same


def test_code_is_single_use_and_replay_revokes_its_tokens(gh, meta):
    client = new_client(gh)
    user = gh.create_user()
    rp = relying_party(client, FULL_SCOPE)
    verifier = generate_token(48)
    url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                             nonce=generate_token(20))
    r, _ = Browser(gh).authorize(url, user)
    code = redirect_params(r)["code"]
    form = dict(grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI, code_verifier=verifier)
    first = gh.token(client, **form)
    assert first.status_code == 200, first.text
    oauth_error(gh.token(client, **form), 400, "invalid_grant")
    assert gh.introspect(first.json()["access_token"], client)["active"] is False
    oauth_error(gh.token(client, grant_type="refresh_token", refresh_token=first.json()["refresh_token"]),
                400, "invalid_grant")


# --- consent ---------------------------------------------------------------------------------------
def test_deny_answers_access_denied(gh, meta):
    client = new_client(gh)
    user = gh.create_user()
    rp = relying_party(client, "openid profile")
    url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(48))
    r, pages = Browser(gh).authorize(url, user, decision="deny")
    assert [p.form("#consent-form") is not None for p in pages] == [False, True]
    params = redirect_params(r)
    assert params["error"] == "access_denied", params
    assert params["state"] == state and params["iss"] == gh.issuer, params
    assert "code" not in params


def test_skip_consent_client_never_shows_the_consent_page(gh, meta):
    client = new_client(gh, scope="openid profile", skip_consent=True)
    assert client["skip_consent"] is True
    user = gh.create_user()
    flow = code_flow(gh, meta, client, user, scope="openid profile")
    assert len(flow.pages) == 1 and flow.pages[0].form("#login-form") is not None
    assert flow.claims["sub"] == user[0]["id"]


# --- prompt=none -----------------------------------------------------------------------------------
def test_prompt_none_with_session_and_remembered_consent_issues_a_code(gh, meta):
    client = new_client(gh)
    user = gh.create_user()
    first = code_flow(gh, meta, client, user, remember=True)
    second = code_flow(gh, meta, client, user, browser=first.browser, prompt="none")
    assert second.pages == [], "prompt=none showed a page"
    assert second.claims["sub"] == first.claims["sub"]
    assert second.claims["sid"] == first.claims["sid"]
    assert second.claims["auth_time"] == first.claims["auth_time"]


def test_prompt_none_without_session_is_login_required(gh, meta):
    client = new_client(gh)
    rp = relying_party(client, "openid")
    url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(48),
                                             nonce=generate_token(20), prompt="none")
    r = Browser(gh).get(url)
    params = redirect_params(r)
    assert params["error"] == "login_required", params
    assert params["state"] == state and params["iss"] == gh.issuer, params
    assert "code" not in params


def test_prompt_none_without_remembered_consent_is_consent_required(gh, meta):
    client = new_client(gh, scope="openid profile", public=True)
    user = gh.create_user()
    first = code_flow(gh, meta, client, user, scope="openid profile", remember=False)
    rp = relying_party(client, "openid profile")
    url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(48),
                                             prompt="none")
    params = redirect_params(first.browser.get(url))
    assert params["error"] == "consent_required", params
    assert params["state"] == state and params["iss"] == gh.issuer, params


# --- logout ----------------------------------------------------------------------------------------
def test_rp_initiated_logout_redirects_to_registered_uri(gh, meta):
    client = new_client(gh, post_logout_redirect_uris=[LOGOUT_URI])
    user = gh.create_user()
    flow = code_flow(gh, meta, client, user)
    state = generate_token(16)
    r = flow.browser.get(meta["end_session_endpoint"] + "?" + urlencode(
        {"id_token_hint": flow.token["id_token"], "post_logout_redirect_uri": LOGOUT_URI, "state": state}))
    assert r.status_code in (302, 303), (r.status_code, r.text[:2000])
    location = r.headers["Location"]
    assert urlsplit(location)._replace(query="").geturl() == LOGOUT_URI, location
    assert query(location)["state"] == state

    # The session is over: prompt=none now needs a login.
    rp = relying_party(client, "openid")
    url, _ = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(48),
                                         prompt="none")
    assert redirect_params(flow.browser.get(url))["error"] == "login_required"


def test_logout_refuses_unregistered_post_logout_redirect_uri(gh, meta):
    other = new_client(gh, post_logout_redirect_uris=["https://other.example.com/bye"])
    client = new_client(gh, post_logout_redirect_uris=[LOGOUT_URI])
    user = gh.create_user()
    flow = code_flow(gh, meta, client, user)
    for target in ("https://evil.example.com/", LOGOUT_URI + "/x", "https://other.example.com/bye"):
        r = flow.browser.get(meta["end_session_endpoint"] + "?" + urlencode(
            {"id_token_hint": flow.token["id_token"], "post_logout_redirect_uri": target, "state": "s"}))
        assert r.status_code == 400, (target, r.status_code, r.headers.get("Location"))
        assert "Location" not in r.headers
    # Naming the other client does not make its URI usable with this client's ID token either.
    r = flow.browser.get(meta["end_session_endpoint"] + "?" + urlencode(
        {"id_token_hint": flow.token["id_token"], "client_id": other["client_id"],
         "post_logout_redirect_uri": "https://other.example.com/bye"}))
    assert r.status_code == 400 and "Location" not in r.headers, (r.status_code, r.headers.get("Location"))


# --- out of band -----------------------------------------------------------------------------------
def test_oob_code_is_shown_on_a_page(gh, meta):
    client = new_client(gh, scope="openid", redirect_uris=[OOB])
    user = gh.create_user()
    rp = relying_party(client, "openid", OOB)
    verifier, nonce = generate_token(48), generate_token(20)
    url, _ = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    r, pages = Browser(gh).authorize(url, user)
    assert r.status_code == 200, (r.status_code, r.headers.get("Location"))
    # Out-of-band requests always show the consent page (with its warning), even for a first visit.
    assert any(p.form("#consent-form") is not None for p in pages)
    # The code is not in the URL (history, logs): it reached the page in a cookie scoped to it.
    assert urlsplit(r.url).path == "/oauth2/oob" and not urlsplit(r.url).query, r.url
    code = parse_page(r).text("#code")
    assert code and len(code) == 43, code
    # The page shows it once; a reload (or a link from someone else) shows no code.
    again = Browser(gh).get(gh.issuer + "/oauth2/oob")
    assert again.status_code == 400 and "<code id=\"code\">" not in again.text
    fed = Browser(gh).get(gh.issuer + "/oauth2/oob?code=attackers-code")
    assert fed.status_code == 400 and "attackers-code" not in fed.text
    token = rp.fetch_token(meta["token_endpoint"], code=code, code_verifier=verifier)
    claims = validate_id_token(meta, token["id_token"], client["client_id"], nonce=nonce,
                               access_token=token["access_token"])
    assert claims["sub"] == user[0]["id"]


# --- pages -----------------------------------------------------------------------------------------
def test_error_page_never_redirects(gh, meta):
    client = new_client(gh)
    base = {"response_type": "code", "scope": "openid", "state": "st",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}
    cases = {
        "unknown client": {**base, "client_id": unique("nosuch"), "redirect_uri": REDIRECT_URI},
        "unregistered redirect_uri": {**base, "client_id": client["client_id"],
                                      "redirect_uri": "https://evil.example.com/callback"},
        "redirect_uri with a changed path": {**base, "client_id": client["client_id"],
                                             "redirect_uri": REDIRECT_URI + "/"},
    }
    for name, params in cases.items():
        r = requests.get(meta["authorization_endpoint"] + "?" + urlencode(params), allow_redirects=False, timeout=10)
        assert r.status_code == 400, (name, r.status_code, r.headers.get("Location"))
        assert "Location" not in r.headers, name
        page = parse_page(r)
        assert page.text("h1"), (name, r.text[:1000])
        assert page.text(".error-code") == "invalid_request", (name, page.text(".error-code"))


def test_wrong_password_shows_one_generic_message(gh):
    user = gh.create_user()
    messages = []
    for username, password in ((user[0]["username"], "wrong-" + user[1]), (unique("ghost"), user[1])):
        browser = Browser(gh)
        r = browser.sign_in(username, password)
        assert r.status_code == 200, r.status_code
        page = parse_page(r)
        assert page.form("#login-form") is not None, "a failed login must come back to the login page"
        messages.append(page.text(".alert"))
        assert "gatehouse_session" not in browser.session.cookies
    assert messages == ["Wrong username or password."] * 2, messages


def test_pages_send_security_headers_and_cookie_flags(gh):
    user = gh.create_user()
    browser = Browser(gh)
    r = browser.get("/login")
    assert r.status_code == 200
    assert r.headers["X-Frame-Options"] == "DENY"
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, csp
    assert r.headers["Referrer-Policy"] == "no-referrer"

    page = parse_page(r)
    form = page.form("#login-form")
    assert form.attrs["action"] == "/login" and form.fields["csrf_token"]
    post = browser.session.post(gh.issuer + "/login", allow_redirects=False, timeout=10,
                                data={**form.fields, "username": user[0]["username"], "password": user[1]})
    assert post.status_code == 303, post.text
    cookies = {c.split("=", 1)[0]: c for c in post.raw.headers.getlist("Set-Cookie")}
    cookies.update({c.split("=", 1)[0]: c for c in r.raw.headers.getlist("Set-Cookie")
                    if c.split("=", 1)[0] not in cookies})
    for name in ("gatehouse_session", "gatehouse_csrf"):
        assert name in cookies, (name, cookies)
        flags = [f.strip().lower() for f in cookies[name].split(";")[1:]]
        assert "secure" not in flags, cookies[name]  # http issuer (loopback)
        if name == "gatehouse_session":
            assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags, cookies[name]

    # A form without the CSRF token gets the error page, and no session.
    r = requests.post(gh.issuer + "/login", allow_redirects=False, timeout=10,
                      data={"username": user[0]["username"], "password": user[1], "return_to": "/account"})
    assert r.status_code == 400, r.status_code
    assert "gatehouse_session" not in r.cookies
