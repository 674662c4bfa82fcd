"""Regression tests for issue 10 (the outside security review), sections A and B 4-7 and 10.

A, Critical: an upstream access token must never be turned into SOMEONE ELSE'S identity. The fake
third-party API here ("LeakySite") behaves like many real APIs: `GET /users/{username}/` answers any
person's profile to any valid token. A templated user-details URL therefore proves nothing about who owns a
token; only a fixed who-am-I URL (and then only with --allow-foreign-tokens) or RFC 7662 introspection at the
provider (which also proves the token was issued to Gatehouse's client there) can. Every attack is tried
through all three doors: dot's `GET` and `POST /register-by-token/<provider>/` and the RFC 8693 grant with
`subject_issuer=<provider>`.
A, High: register-by-token is off unless the provider is listed in compat_exchange_providers, takes a POST
form, needs the token-exchange grant on the compat client and issues a refresh token only with that grant.
B: redirect_state per client (4), lego's compat client and the password grant (5), exchange of our own
tokens (6), lego sessions on /account (7), dgp's next paths, token lifetime and logout (10).

Servers are started once per module. Settings the old binary does not know are given through their
environment variables (GATEHOUSE_COMPAT_EXCHANGE_PROVIDERS, ...) and provider options through the config
file's `providers[]` objects, which today's binary ignores instead of refusing to start: so on the old
binary these tests fail on the flaw itself (a token for the victim, a foreign token accepted, ...), not on
an unknown option. The exchange server runs on E2E_DATABASE_URL when it is set (PostgreSQL), the others on
their own SQLite files.
"""

import base64
import json
import os
import secrets
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

import conftest
from conftest import BIN, Browser, Gatehouse, free_port, parse_page, query, unique, wait_until
from test_compat import Server, assert_json, dgp_check, dgp_login, running, server_env, verify_rs256

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
EXCHANGE_FAILED = {"error": "unsuccessful_token_exchange",
                   "error_description": "Unable to complete token exchange with social backend."}
NOT_FOUND = {"detail": "Not found."}
OUR_CLIENT = "gatehouse-at-leaky-site"  # Gatehouse's client id at the site
OTHER_CLIENT = "some-other-app"  # another app registered at the site
NEXT_HOST = "rp.example.com"
LEGO_TTL = 3  # access-token lifetime (s) of the lego/dgp server


# --- the leaky third-party site --------------------------------------------------------------------
def b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class LeakySite:
    """A third-party API on loopback, as many real ones are:
    - `GET /users/{username}/`: ANY person's profile `{id, username, first_name, last_name, email}` to ANY
      valid bearer token (401 for an invalid token, 404 for an unknown username);
    - `GET /me/`: the token owner's profile (a fixed who-am-I URL);
    - `POST /introspect`: RFC 7662, HTTP Basic with a client registered here; answers `{active, sub,
      client_id, username, preferred_username, email, scope, token_type, iat, exp[, aud]}` (no `id`: the
      subject comes from `sub`) or `{active: false}`;
    - OpenID Connect under `/oidc` (discovery lists `introspection_endpoint`) and `/oidc-plain` (it does not):
      discovery, jwks, userinfo (`sub` = str(id)) and introspect.
    Tokens are issued to a client id at the site (`issue`). Protocol mistakes go to `violations`."""

    def __init__(self, log_path: Path):
        self.clients = {OUR_CLIENT: secrets.token_urlsafe(18), OTHER_CLIENT: secrets.token_urlsafe(18)}
        self.people: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict, dict]] = []  # (method, path, headers, form)
        self.violations: list[str] = []
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "leaky-" + secrets.token_hex(4)
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def secret(self) -> str:
        return self.clients[OUR_CLIENT]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self._log.close()

    def person(self, label: str = "person") -> dict:
        username = unique(label)
        profile = {"id": secrets.randbelow(10**9) + 1, "username": username, "first_name": label.title(),
                   "last_name": "Example", "email": f"{username}@leaky.example"}
        self.people[username] = profile
        return profile

    def issue(self, person: dict, client_id: str = OUR_CLIENT, aud=None) -> str:
        """An access token of `person`, issued to `client_id` at the site (and with `aud`, when given)."""
        token = "at-" + secrets.token_urlsafe(18)
        self.tokens[token] = {"username": person["username"], "client_id": client_id, "aud": aud, "active": True}
        return token

    def revoke(self, token: str):
        self.tokens[token]["active"] = False

    def seen(self, method: str, path: str) -> list[tuple[dict, dict]]:
        return [(h, f) for m, p, h, f in self.requests if m == method and p == path]

    def owner(self, headers) -> dict | None:
        auth = headers.get("Authorization", "")
        record = self.tokens.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
        return self.people[record["username"]] if record and record["active"] else None

    def introspection(self, headers, form: dict) -> tuple[int, dict]:
        auth = headers.get("Authorization", "")
        client = None
        if auth.startswith("Basic "):
            try:
                raw = base64.b64decode(auth[6:]).decode()
                cid, _, secret = raw.partition(":")
                cid, secret = unquote_plus(cid), unquote_plus(secret)
                if self.clients.get(cid) == secret:
                    client = cid
            except ValueError:
                pass
        if client is None:
            self.violations.append(f"introspection without valid HTTP Basic client authentication: {auth[:40]!r}")
            return 401, {"error": "invalid_client"}
        if form.get("token_type_hint") != "access_token":
            self.violations.append(f"introspection token_type_hint {form.get('token_type_hint')!r}")
        record = self.tokens.get(form.get("token", ""))
        if record is None or not record["active"]:
            return 200, {"active": False}
        person = self.people[record["username"]]
        now = int(time.time())
        # RFC 7662's members, plus the profile claims servers such as Keycloak add (preferred_username, email).
        # `id` is the field the oauth2 providers map as the subject (as sign-in does); `sub` alone would not do.
        answer = {"active": True, "sub": str(person["id"]), "id": person["id"], "client_id": record["client_id"],
                  "username": person["username"], "preferred_username": person["username"], "email": person["email"],
                  "scope": "read", "token_type": "Bearer", "iat": now, "exp": now + 3600}
        if record["aud"] is not None:
            answer["aud"] = record["aud"]
        return 200, answer

    def discovery(self, prefix: str) -> dict:
        issuer = self.base + prefix
        doc = {"issuer": issuer, "authorization_endpoint": issuer + "/authorize", "token_endpoint": issuer + "/token",
               "userinfo_endpoint": issuer + "/userinfo", "jwks_uri": issuer + "/jwks",
               "response_types_supported": ["code"], "subject_types_supported": ["public"],
               "id_token_signing_alg_values_supported": ["RS256"]}
        if prefix == "/oidc":
            doc["introspection_endpoint"] = issuer + "/introspect"
        return doc

    def _handler(self):
        site = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status: int, body):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                if status == 401:
                    self.send_header("WWW-Authenticate", "Bearer")
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                path = urlsplit(self.path).path
                site.requests.append(("GET", path, dict(self.headers), {}))
                owner = site.owner(self.headers)
                if path == "/me/":
                    return self.reply(200, owner) if owner else self.reply(401, {"detail": "Invalid token."})
                if path.startswith("/users/") and path.endswith("/"):
                    if owner is None:
                        return self.reply(401, {"detail": "Invalid token."})
                    wanted = site.people.get(unquote_plus(path[len("/users/"):-1]))
                    # The leak: whoever the token belongs to, the profile asked for.
                    return self.reply(200, wanted) if wanted else self.reply(404, {"detail": "Not found."})
                for prefix in ("/oidc-plain", "/oidc"):
                    if path.startswith(prefix + "/"):
                        rest = path[len(prefix):]
                        if rest == "/.well-known/openid-configuration":
                            return self.reply(200, site.discovery(prefix))
                        if rest == "/jwks":
                            n = site.key.public_key().public_numbers()
                            return self.reply(200, {"keys": [{"kty": "RSA", "kid": site.kid, "use": "sig", "alg": "RS256",
                                                              "n": b64url_uint(n.n), "e": b64url_uint(n.e)}]})
                        if rest == "/userinfo":
                            if owner is None:
                                return self.reply(401, {"error": "invalid_token"})
                            return self.reply(200, {"sub": str(owner["id"]), "preferred_username": owner["username"],
                                                    "email": owner["email"], "name": owner["first_name"]})
                self.reply(404, {"detail": "Not found."})

            def do_POST(self):
                path = urlsplit(self.path).path
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                site.requests.append(("POST", path, dict(self.headers), form))
                if path in ("/introspect", "/oidc/introspect", "/oidc-plain/introspect"):
                    if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
                        site.violations.append(f"introspection Content-Type {self.headers.get('Content-Type')!r}")
                    return self.reply(*site.introspection(self.headers, form))
                self.reply(404, {"detail": "Not found."})

            def log_message(self, fmt, *args):
                site._log.write("leaky site: " + fmt % args + "\n")
                site._log.flush()

        return Handler


def oauth2_provider(site: LeakySite, pid: str, userinfo_path: str, **options) -> dict:
    """A config-file `providers[]` object for a plain OAuth2 provider at the site."""
    return {"id": pid, "kind": "oauth2", "name": pid, "client_id": OUR_CLIENT, "client_secret": site.secret,
            "authorize_url": site.base + "/authorize", "token_url": site.base + "/token",
            "userinfo_url": site.base + userinfo_path, **options}


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exchange-security")


@pytest.fixture(scope="module")
def site(tmp):
    s = LeakySite(tmp / "leaky-site.log")
    conftest.extra_logs.append(("leaky third-party site", s.log_path))
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def site_clean(site):
    """No test may make Gatehouse misuse the site's introspection endpoint."""
    del site.violations[:]
    yield
    assert not site.violations, site.violations


@dataclass
class Ex:
    gh: Server
    site: LeakySite
    compat: dict  # compat_client_id: token-exchange and refresh_token grants
    exchanger: dict  # an RFC 8693 client
    p: dict  # role -> provider id


ROLES = {
    # role: (user-details path, config options); all but `unlisted`, `github`, `google` are listed in
    # compat_exchange_providers.
    "tmpl": ("/users/{username}/", {}),  # templated user-details URL only: cannot tell who owns a token
    "whoami": ("/users/{username}/", {"whoami_url": "/me/"}),  # who-am-I, no opt-in: cannot bind
    "fixed": ("/me/", {}),  # a fixed user-details URL is the who-am-I URL; no opt-in
    "foreign": ("/users/{username}/", {"whoami_url": "/me/", "allow_foreign_tokens": True}),
    "intro": ("/users/{username}/", {"introspection_url": "/introspect"}),
    "introforeign": ("/users/{username}/", {"introspection_url": "/introspect", "allow_foreign_tokens": True}),
    "unlisted": ("/users/{username}/", {"whoami_url": "/me/", "allow_foreign_tokens": True}),
}


@pytest.fixture(scope="module")
def ex(tmp, site):
    """`--compat dot` with every kind of provider at the leaky site (config file), on E2E_DATABASE_URL when set."""
    p = {role: unique(role) for role in ROLES}
    p.update(oidc=unique("oidc"), oidcplain=unique("oidcplain"), github="github", google="google")
    made = {}

    def setup(s: Server) -> list[str]:
        providers = []
        for role, (path, options) in ROLES.items():
            options = {k: (site.base + v if k.endswith("_url") else v) for k, v in options.items()}
            providers.append(oauth2_provider(site, p[role], path, **options))
        for role, prefix in (("oidc", "/oidc"), ("oidcplain", "/oidc-plain")):
            providers.append({"id": p[role], "kind": "oidc", "name": p[role], "client_id": OUR_CLIENT,
                              "client_secret": site.secret, "issuer": site.base + prefix})
        providers.append({"id": "github", "kind": "github", "client_id": "gh-id", "client_secret": "gh-secret"})
        providers.append({"id": "google", "kind": "google", "client_id": "g-id", "client_secret": "g-secret"})
        config = tmp / "exchange-config.json"
        config.write_text(json.dumps({"providers": providers}))
        made["compat"] = s.create_client(name=unique("dot-compat-"), scope="openid profile",
                                         grant_types=[TOKEN_EXCHANGE, "refresh_token"])
        made["exchanger"] = s.create_client(name=unique("exchanger-"), scope="openid profile",
                                            grant_types=[TOKEN_EXCHANGE, "refresh_token"])
        return ["--compat-client-id", made["compat"]["client_id"], "--config", str(config)]

    listed = [p[r] for r in ("tmpl", "whoami", "fixed", "foreign", "intro", "introforeign", "oidc", "oidcplain")]
    env = server_env(GATEHOUSE_COMPAT_EXCHANGE_PROVIDERS=",".join(listed))
    with running(tmp, "exchange", "--compat", "dot", env=env, setup=setup,
                 database=os.environ.get("E2E_DATABASE_URL")) as server:
        yield Ex(server, site, made["compat"], made["exchanger"], p)


# --- helpers ---------------------------------------------------------------------------------------
def whose(server: Gatehouse, access_token: str) -> dict:
    """The user behind one of our access tokens (dot's /user_details/: id, username, ...)."""
    r = requests.get(server.issuer + "/user_details/", headers={"Authorization": "Bearer " + access_token}, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def register_by_token(server: Gatehouse, provider: str, method: str, **params) -> requests.Response:
    url = server.issuer + f"/register-by-token/{provider}/"
    headers = {"Accept": "application/json"}
    if method == "GET":
        return requests.get(url + "?" + urlencode(params), headers=headers, timeout=30)
    return requests.post(url, data=params, headers=headers, timeout=30)


def exchange(ex: Ex, provider: str, token: str, **params) -> requests.Response:
    return ex.gh.token(ex.exchanger, grant_type=TOKEN_EXCHANGE, subject_token=token,
                       subject_token_type=ACCESS_TOKEN_TYPE, subject_issuer=provider, **params)


def body_of(r: requests.Response):
    try:
        return r.json()
    except ValueError:
        return None


def no_token(server: Gatehouse, r: requests.Response, what: str, victim: dict | None = None):
    """Fail loudly, naming whose token it is, when `r` carries an access token."""
    body = body_of(r)
    if isinstance(body, dict) and body.get("access_token"):
        who = whose(server, body["access_token"])["username"]
        if victim is not None and who.split("-")[0] == victim["username"]:
            pytest.fail(f"IMPERSONATION: {what} issued a token for the victim {who!r} ({r.status_code} {r.text[:300]})")
        pytest.fail(f"{what} issued a token for {who!r}, expected a refusal ({r.status_code} {r.text[:300]})")


def doors(ex: Ex, provider: str, token: str, **params) -> list[tuple[str, requests.Response]]:
    """The same upstream token (and template parameters) through RFC 8693, GET and POST register-by-token."""
    return [("RFC 8693", exchange(ex, provider, token, **params)),
            ("GET register-by-token", register_by_token(ex.gh, provider, "GET", access_token=token, **params)),
            ("POST register-by-token", register_by_token(ex.gh, provider, "POST", access_token=token, **params))]


def cannot_identify(ex: Ex, provider: str, token: str, victim: dict | None = None, **params):
    """Every door answers 400 invalid_request naming the provider (it cannot bind or establish the subject)."""
    for door, r in doors(ex, provider, token, **params):
        what = f"{door} via {provider} with {params or 'no parameters'}"
        no_token(ex.gh, r, what, victim)
        assert r.status_code == 400, (what, r.status_code, r.text)
        body = body_of(r)
        assert isinstance(body, dict) and body.get("error") == "invalid_request", (what, r.text)
        assert provider in body.get("error_description", ""), (what, "the description names the provider", body)


def rejected(ex: Ex, provider: str, token: str, victim: dict | None = None, **params):
    """The token is refused: RFC 8693 400 invalid_grant; register-by-token 401 unsuccessful_token_exchange."""
    for door, r in doors(ex, provider, token, **params):
        what = f"{door} via {provider} with {params or 'no parameters'}"
        no_token(ex.gh, r, what, victim)
        if door == "RFC 8693":
            conftest.oauth_error(r, 400, "invalid_grant")
        else:
            assert (r.status_code, body_of(r)) == (401, EXCHANGE_FAILED), (what, r.status_code, r.text)


def identity_by_8693(ex: Ex, provider: str, token: str, **params) -> dict:
    r = exchange(ex, provider, token, **params)
    assert r.status_code == 200, (provider, params, r.status_code, r.text)
    return whose(ex.gh, r.json()["access_token"])


def identity_by_rbt(ex: Ex, provider: str, token: str, method: str = "POST", **params) -> dict:
    r = register_by_token(ex.gh, provider, method, access_token=token, **params)
    assert r.status_code == 200, (provider, method, params, r.status_code, r.text)
    return whose(ex.gh, r.json()["access_token"])


def is_person(details: dict, person: dict) -> bool:
    """A user created from `person` carries the site's username (perhaps with a -N suffix)."""
    return details["username"] == person["username"] or details["username"].startswith(person["username"] + "-")


# ===================================================================================================
# A. Critical: impersonation through a templated user-details URL
# ===================================================================================================
def test_templated_user_details_url_alone_identifies_nobody(ex):
    site = ex.site
    attacker, victim = site.person("attacker"), site.person("victim")
    token = site.issue(attacker)  # a perfectly valid token, issued to our client, of the attacker
    # The attack: the attacker's own token, and the victim's username for the template.
    cannot_identify(ex, ex.p["tmpl"], token, victim, username=victim["username"])
    # Request parameters never identify: not with the attacker's own name either, nor without one.
    cannot_identify(ex, ex.p["tmpl"], token, username=attacker["username"])
    cannot_identify(ex, ex.p["tmpl"], token)


def test_who_am_i_without_the_opt_in_cannot_bind_tokens(ex):
    site = ex.site
    attacker, victim = site.person("attacker"), site.person("victim")
    token = site.issue(attacker)
    # Templated URL plus a who-am-I URL, no --allow-foreign-tokens: refused, whatever the parameters say.
    cannot_identify(ex, ex.p["whoami"], token, victim, username=victim["username"])
    cannot_identify(ex, ex.p["whoami"], token)
    # A fixed user-details URL (the default who-am-I) and an OIDC provider without introspection in its
    # discovery document: their access tokens cannot be bound to Gatehouse either.
    foreign = site.issue(attacker, OTHER_CLIENT)
    cannot_identify(ex, ex.p["fixed"], foreign)
    cannot_identify(ex, ex.p["oidcplain"], foreign)


def test_who_am_i_with_foreign_tokens_is_the_tokens_owner(ex):
    site = ex.site
    pid = ex.p["foreign"]
    attacker, victim = site.person("attacker"), site.person("victim")
    token = site.issue(attacker, OTHER_CLIENT)  # allowed: this provider accepts tokens of other clients
    # The attacker's token with the victim's username: the leaky profile is the victim's, not the owner's.
    rejected(ex, pid, token, victim, username=victim["username"])
    # Without parameters: the owner, as the who-am-I URL says.
    me = identity_by_8693(ex, pid, token)
    assert is_person(me, attacker), (me, attacker)
    assert any(h.get("Authorization") == "Bearer " + token for h, _ in site.seen("GET", "/me/")), \
        "the who-am-I URL was asked with the token"
    # With the owner's own username: the templated URL is fetched too, and agrees.
    asked = len(site.seen("GET", f"/users/{attacker['username']}/"))
    assert identity_by_8693(ex, pid, token, username=attacker["username"])["id"] == me["id"]
    assert len(site.seen("GET", f"/users/{attacker['username']}/")) > asked, "the templated URL was checked"
    # register-by-token, POST and GET, finds the same user.
    assert identity_by_rbt(ex, pid, token, "POST")["id"] == me["id"]
    assert identity_by_rbt(ex, pid, token, "GET", username=attacker["username"])["id"] == me["id"]
    # The victim's own token is the victim, another user.
    them = identity_by_8693(ex, pid, site.issue(victim))
    assert is_person(them, victim) and them["id"] != me["id"], (them, me)
    # A token the site does not know: refused.
    rejected(ex, pid, "at-" + secrets.token_urlsafe(18))


def test_introspection_refuses_tokens_issued_to_other_clients(ex):
    site = ex.site
    pid = ex.p["intro"]
    attacker, victim = site.person("attacker"), site.person("victim")
    # Another app at the site holds a token of the victim (the victim signed in there) and replays it here.
    stolen = site.issue(victim, OTHER_CLIENT)
    rejected(ex, pid, stolen, victim, username=victim["username"])
    rejected(ex, pid, stolen, victim)
    # The attacker's token, bound to us, with the victim's username: the templated answer is not the owner.
    mine = site.issue(attacker)
    rejected(ex, pid, mine, victim, username=victim["username"])
    # The victim's own token, issued to our client: the victim, through every door, with or without the name.
    them = identity_by_8693(ex, pid, site.issue(victim))
    assert is_person(them, victim), them
    assert identity_by_8693(ex, pid, site.issue(victim), username=victim["username"])["id"] == them["id"]
    assert identity_by_rbt(ex, pid, site.issue(victim), "POST")["id"] == them["id"]
    assert identity_by_rbt(ex, pid, site.issue(victim), "GET", username=victim["username"])["id"] == them["id"]
    # Bound through `aud` too: an array containing our client id, or our client id as a string.
    assert identity_by_8693(ex, pid, site.issue(victim, OTHER_CLIENT, aud=[OTHER_CLIENT, OUR_CLIENT]))["id"] == them["id"]
    assert identity_by_8693(ex, pid, site.issue(victim, OTHER_CLIENT, aud=OUR_CLIENT))["id"] == them["id"]
    assert identity_by_8693(ex, pid, mine)["id"] != them["id"]
    # Not active (revoked at the site, or unknown): refused.
    revoked = site.issue(victim)
    site.revoke(revoked)
    rejected(ex, pid, revoked)
    rejected(ex, pid, "at-" + secrets.token_urlsafe(18))
    # Gatehouse asked the site with its own client credentials (checked by the site: no violations).
    asked = site.seen("POST", "/introspect")
    assert asked and all(f.get("token", "").startswith("at-") for _, f in asked), asked


def test_introspection_with_foreign_tokens_accepts_other_clients_tokens(ex):
    site = ex.site
    pid = ex.p["introforeign"]
    owner, victim = site.person("owner"), site.person("victim")
    foreign = site.issue(owner, OTHER_CLIENT)
    # The opt-in does not let parameters identify: the victim's name is still refused.
    rejected(ex, pid, foreign, victim, username=victim["username"])
    me = identity_by_8693(ex, pid, foreign)
    assert is_person(me, owner), me
    assert identity_by_rbt(ex, pid, foreign, "POST")["id"] == me["id"]
    site.revoke(foreign)
    rejected(ex, pid, foreign)


def test_oidc_provider_binds_access_tokens_through_discovered_introspection(ex):
    site = ex.site
    pid = ex.p["oidc"]
    person = site.person("oidcuser")
    # Its userinfo endpoint answers any valid token; the discovery document's introspection_endpoint
    # says the token belongs to another app.
    rejected(ex, pid, site.issue(person, OTHER_CLIENT))
    me = identity_by_8693(ex, pid, site.issue(person))
    assert is_person(me, person), me
    assert site.seen("POST", "/oidc/introspect"), "the discovered introspection endpoint was used"


def test_providers_add_options_and_notes(tmp):
    admin = Gatehouse(f"sqlite://{tmp}/providers-cli.sqlite", "http://127.0.0.1:9")
    assert admin.run("migrate").returncode == 0
    base = "https://api.social.example"

    def add(pid: str, *options: str) -> tuple[subprocess.CompletedProcess, dict | None]:
        p = admin.run("providers", "add", "--id", pid, "--kind", "oauth2", "--authorize-url", base + "/o/authorize",
                      "--token-url", base + "/o/token", "--client-id", "cid", "--client-secret-stdin", *options,
                      "--json", stdin="secret\n")
        return p, (json.loads(p.stdout) if p.returncode == 0 else None)

    def notes(p: subprocess.CompletedProcess) -> list[str]:
        return [line for line in p.stderr.splitlines() if line.startswith("note:")]

    templated, fixed = base + "/users/{username}/", base + "/me"
    cases = {
        # id: (options, a note expected)
        unique("tmpl"): (("--userinfo-url", templated), True),  # cannot establish who owns a token
        unique("fixed"): (("--userinfo-url", fixed), True),  # who-am-I only: cannot bind
        unique("whoami"): (("--userinfo-url", templated, "--whoami-url", fixed), True),
        unique("foreign"): (("--userinfo-url", templated, "--whoami-url", fixed, "--allow-foreign-tokens"), False),
        unique("intro"): (("--userinfo-url", templated, "--introspection-url", base + "/introspect"), False),
    }
    out = {}
    for pid, (options, noted) in cases.items():
        p, body = add(pid, *options)
        assert p.returncode == 0, (pid, p.stderr)
        assert bool(notes(p)) == noted, (pid, options, "a note: line on stderr" if noted else "no note", p.stderr)
        out[pid] = body
    tmpl_id, fixed_id, whoami_id, foreign_id, intro_id = cases
    # allow_foreign_tokens always; the URLs when there is one (like the other URLs, an unset one may be left out).
    for pid, body in out.items():
        assert isinstance(body.get("allow_foreign_tokens"), bool), body
    assert out[tmpl_id].get("whoami_url") is None and out[tmpl_id].get("introspection_url") is None, out[tmpl_id]
    assert out[tmpl_id]["allow_foreign_tokens"] is False
    assert out[foreign_id]["whoami_url"] == fixed and out[foreign_id]["allow_foreign_tokens"] is True, out[foreign_id]
    assert out[intro_id]["introspection_url"] == base + "/introspect" and out[intro_id]["allow_foreign_tokens"] is False
    # The GitHub preset binds tokens through its applications API: nothing to note.
    p = admin.run("providers", "add", "--id", unique("gh"), "--kind", "github", "--client-id", "cid",
                  "--client-secret-stdin", "--json", stdin="secret\n")
    assert p.returncode == 0 and not notes(p), p.stderr
    # A who-am-I URL must be fixed.
    bad = unique("bad")
    p, _ = add(bad, "--userinfo-url", fixed, "--whoami-url", templated, "--allow-foreign-tokens")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    listed = {row["id"]: row for row in admin.cli("providers", "list")}
    assert bad not in listed and set(cases) <= set(listed), listed.keys()
    assert listed[foreign_id]["whoami_url"] == fixed and listed[foreign_id]["allow_foreign_tokens"] is True
    assert listed[intro_id]["introspection_url"] == base + "/introspect"
    # The config file's providers[] objects take the same options.
    config = tmp / "providers-cli.json"
    cfg_id = unique("cfg")
    config.write_text(json.dumps({"providers": [{
        "id": cfg_id, "kind": "oauth2", "client_id": "cid", "client_secret": "s", "authorize_url": base + "/o/authorize",
        "token_url": base + "/o/token", "userinfo_url": templated, "whoami_url": fixed,
        "introspection_url": base + "/introspect", "allow_foreign_tokens": True}]}))
    rows = {row["id"]: row for row in admin.cli("providers", "list", "--config", str(config))}
    assert (rows[cfg_id]["whoami_url"], rows[cfg_id]["introspection_url"], rows[cfg_id]["allow_foreign_tokens"]) == (
        fixed, base + "/introspect", True), rows[cfg_id]
    config.write_text(json.dumps({"providers": [{
        "id": cfg_id, "kind": "oauth2", "client_id": "cid", "client_secret": "s", "authorize_url": base + "/o/authorize",
        "token_url": base + "/o/token", "userinfo_url": fixed, "whoami_url": templated}]}))
    p = admin.run("providers", "list", "--config", str(config), "--json")
    assert p.returncode == 1 and p.stderr.startswith("Error:"), (p.returncode, p.stderr)


# ===================================================================================================
# A. High: register-by-token
# ===================================================================================================
def test_register_by_token_post_form_and_deprecated_get(ex):
    site = ex.site
    pid = ex.p["intro"]
    person = site.person("dotuser")
    log_start = len(ex.gh.log_path.read_text(errors="replace"))
    # The preferred form: POST with a form body (template parameters in it too).
    posted = register_by_token(ex.gh, pid, "POST", access_token=site.issue(person), username=person["username"])
    body = assert_json(posted)
    assert set(body) == {"access_token", "expires_in", "token_type", "refresh_token", "scope"}, body
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and body["refresh_token"], body
    assert body["scope"] == "openid profile", body  # the compat client's default scope
    claims = ex.gh.decode(body["access_token"])
    assert claims["client_id"] == ex.compat["client_id"], claims
    me = whose(ex.gh, body["access_token"])
    assert is_person(me, person), me
    # The refresh token is real: the compat client refreshes it at /o/token/.
    r = requests.post(ex.gh.url("/o/token/"), timeout=30, data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"],
        "client_id": ex.compat["client_id"], "client_secret": ex.compat["client_secret"]})
    assert whose(ex.gh, assert_json(r)["access_token"])["id"] == me["id"]
    # The query form still works, for the same user, and is logged as deprecated.
    got = register_by_token(ex.gh, pid, "GET", access_token=site.issue(person))
    assert whose(ex.gh, assert_json(got)["access_token"])["id"] == me["id"]
    wait_until(lambda: "deprecat" in ex.gh.log_path.read_text(errors="replace")[log_start:].lower(),
               "a deprecation warning for GET register-by-token in the server log")


def test_register_by_token_only_for_listed_providers(ex):
    site = ex.site
    person = site.person("unlisted")
    token = site.issue(person)
    for provider in (ex.p["unlisted"], "github", "google", unique("nosuch")):
        for method in ("GET", "POST"):
            r = register_by_token(ex.gh, provider, method, access_token=token, username=person["username"])
            no_token(ex.gh, r, f"{method} register-by-token via the unlisted {provider}")
            assert (r.status_code, body_of(r)) == (404, NOT_FOUND), (provider, method, r.status_code, r.text)
    # The list gates dot's register-by-token only; the provider itself works with RFC 8693.
    assert is_person(identity_by_8693(ex, ex.p["unlisted"], token), person)


@contextmanager
def dot_server(tmp: Path, site: LeakySite, name: str, grant_types: list[str] | None, listed: bool):
    """`--compat dot` on its own SQLite file with one introspecting provider at the site; the compat client
    registered for `grant_types` (None: the default grants); the provider in compat_exchange_providers or not."""
    pid = unique("rbt")
    made = {}

    def setup(s: Server) -> list[str]:
        config = tmp / f"{name}.json"
        config.write_text(json.dumps({"providers": [oauth2_provider(
            site, pid, "/users/{username}/", introspection_url=site.base + "/introspect")]}))
        made["compat"] = s.create_client(name=unique("compat-"), scope="openid profile", grant_types=grant_types or ())
        return ["--compat-client-id", made["compat"]["client_id"], "--config", str(config)]

    env = server_env(**({"GATEHOUSE_COMPAT_EXCHANGE_PROVIDERS": pid} if listed else {}))
    with running(tmp, name, "--compat", "dot", env=env, setup=setup) as server:
        yield server, pid


@pytest.fixture(scope="module")
def dot_unlisted(tmp, site):
    with dot_server(tmp, site, "dot-unlisted", [TOKEN_EXCHANGE, "refresh_token"], listed=False) as s:
        yield s


@pytest.fixture(scope="module")
def dot_no_refresh(tmp, site):
    with dot_server(tmp, site, "dot-no-refresh", [TOKEN_EXCHANGE], listed=True) as s:
        yield s


def test_register_by_token_is_off_by_default(site, dot_unlisted):
    server, pid = dot_unlisted
    person = site.person("off")
    token = site.issue(person)
    for method in ("GET", "POST"):
        r = register_by_token(server, pid, method, access_token=token, username=person["username"])
        no_token(server, r, f"{method} register-by-token without compat_exchange_providers")
        assert (r.status_code, body_of(r)) == (404, NOT_FOUND), (method, r.status_code, r.text)


def test_register_by_token_issues_a_refresh_token_only_with_that_grant(site, dot_no_refresh):
    server, pid = dot_no_refresh
    person = site.person("norefresh")
    for method in ("GET", "POST"):
        r = register_by_token(server, pid, method, access_token=site.issue(person), username=person["username"])
        body = assert_json(r)
        assert "refresh_token" not in body, (method, body)
        assert set(body) == {"access_token", "expires_in", "token_type", "scope"}, (method, body)
        assert is_person(whose(server, body["access_token"]), person)


def test_register_by_token_needs_the_token_exchange_grant(tmp, site):
    """A compat client without the token-exchange grant cannot back register-by-token: `serve` refuses to start
    with one line naming compat_client_id (the old binary started and issued tokens to it)."""
    pid = unique("rbt")
    database = f"sqlite://{tmp}/dot-no-exchange.sqlite"
    admin = Gatehouse(database, "http://127.0.0.1:9")
    assert admin.run("migrate").returncode == 0
    config = tmp / "dot-no-exchange.json"
    config.write_text(json.dumps({"providers": [oauth2_provider(
        site, pid, "/users/{username}/", introspection_url=site.base + "/introspect")]}))
    plain = admin.create_client(name=unique("compat-"), scope="openid profile")
    status, stderr = refused_to_start(tmp, "dot-no-exchange", "--compat", "dot", "--compat-client-id", plain["client_id"],
                                      "--compat-exchange-providers", pid, "--config", str(config), database=database)
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert status == 1 and len(errors) == 1, (status, stderr)
    assert "compat_client_id" in errors[0] and "token-exchange" in errors[0], errors


# ===================================================================================================
# B 6. RFC 8693 exchange of our own access tokens
# ===================================================================================================
def test_own_token_exchange_needs_the_same_client_or_an_allow_list(ex):
    gh = ex.gh
    user = gh.create_user()
    a = gh.create_client(name=unique("a-"), scope="openid profile", grant_types=[TOKEN_EXCHANGE, "refresh_token"],
                         allow_password_grant=True)
    b = gh.create_client(name=unique("b-"), scope="openid profile", grant_types=[TOKEN_EXCHANGE])
    token = conftest.login(gh, a, user, "openid profile")["access_token"]

    def own(client: dict, subject_token: str, **extra) -> requests.Response:
        return gh.token(client, grant_type=TOKEN_EXCHANGE, subject_token=subject_token,
                        subject_token_type=ACCESS_TOKEN_TYPE, **extra)

    # An unrelated client may not turn A's token into one of its own.
    for extra in ({}, {"subject_issuer": gh.issuer}, {"scope": "openid"}):
        r = own(b, token, **extra)
        no_token(gh, r, f"client B exchanging client A's token {extra}")
        conftest.oauth_error(r, 400, "invalid_grant")
    # A may exchange its own token.
    r = own(a, token, scope="openid")
    assert r.status_code == 200, r.text
    # A client that lists A in --may-exchange-from (repeatable) may.
    c = gh.cli("clients", "create", "--name", unique("c-"), "--scope", "openid profile", "--grant-type", TOKEN_EXCHANGE,
               "--may-exchange-from", a["client_id"])
    d = gh.cli("clients", "create", "--name", unique("d-"), "--scope", "openid profile", "--grant-type", TOKEN_EXCHANGE,
               "--may-exchange-from", b["client_id"], "--may-exchange-from", a["client_id"])
    assert c["may_exchange_from"] == [a["client_id"]], c
    assert sorted(d["may_exchange_from"]) == sorted([a["client_id"], b["client_id"]]), d
    assert b.get("may_exchange_from", []) == [], b
    r = own(c, token)
    assert r.status_code == 200, r.text
    by_c = r.json()["access_token"]
    claims = gh.decode(by_c)
    assert claims["client_id"] == c["client_id"] and claims["act"] == {"sub": c["client_id"]}, claims
    assert own(d, token).status_code == 200
    # C's token is C's: neither A nor B lists C.
    for client in (a, b):
        r = own(client, by_c)
        no_token(gh, r, "exchanging client C's token by a client that does not list C")
        conftest.oauth_error(r, 400, "invalid_grant")


# ===================================================================================================
# B 4, 5, 7 and 10: lego and dgp
# ===================================================================================================
@dataclass
class Legacy:
    gh: Server
    compat: dict


@pytest.fixture(scope="module")
def lego(tmp):
    """`--compat lego,dgp` with access tokens of 3 s (lego sessions outlive them by refreshing); dgp's
    token lifetime left at its default."""
    made = {}

    def setup(s: Server) -> list[str]:
        made["compat"] = s.create_client(name=unique("lego-web-"), allow_password_grant=True)
        return ["--compat-client-id", made["compat"]["client_id"]]

    with running(tmp, "lego", "--compat", "lego,dgp", "--compat-next-hosts", NEXT_HOST,
                 "--access-token-ttl", f"{LEGO_TTL}s", setup=setup) as server:
        yield Legacy(server, made["compat"])


DGP_TTL = 300
NEXT_OK = f"https://{NEXT_HOST}/app/home?lang=en"


@pytest.fixture(scope="module")
def dgp(tmp):
    """`--compat dgp` with compat_next_paths /app/,/after-login/ and compat_dgp_token_ttl 5m."""
    made = {}

    def setup(s: Server) -> list[str]:
        made["compat"] = s.create_client(name=unique("dgp-web-"))
        return ["--compat-client-id", made["compat"]["client_id"]]

    env = server_env(GATEHOUSE_COMPAT_NEXT_PATHS="/app/,/after-login/", GATEHOUSE_COMPAT_DGP_TOKEN_TTL="5m")
    with running(tmp, "dgp", "--compat", "dgp", "--compat-next-hosts", NEXT_HOST, env=env, setup=setup) as server:
        yield Legacy(server, made["compat"])


def test_legacy_redirect_state_only_for_clients_that_ask_for_it(lego, gh):
    redirect = "https://social-app.example.com/complete/lego/"
    sent = redirect + "?redirect_state=" + secrets.token_urlsafe(8)

    def authorize_url(server: Gatehouse, client: dict, uri: str, path: str = "/authorization/oauth2/authorize/") -> str:
        return server.issuer + path + "?" + urlencode({"client_id": client["client_id"], "redirect_uri": uri,
                                                       "response_type": "code", "scope": "user", "state": "st"})

    # The lego profile no longer turns it on for every client.
    plain = lego.gh.create_client(scope="user", redirect_uris=[redirect])
    r = Browser(lego.gh).get(authorize_url(lego.gh, plain, sent))
    assert r.status_code == 400 and "Location" not in r.headers, (r.status_code, r.headers.get("Location"))
    assert parse_page(r).form("#login-form") is None, "an error page, not the login page"
    assert plain.get("legacy_redirect_state") is False, plain
    # A client registered with --legacy-redirect-state accepts one redirect_state (python-social-auth).
    flagged = lego.gh.cli("clients", "create", "--name", unique("psa-"), "--scope", "user", "--redirect-uri", redirect,
                          "--legacy-redirect-state")
    assert flagged["legacy_redirect_state"] is True, flagged
    user = lego.gh.create_user()
    r, _ = Browser(lego.gh).authorize(authorize_url(lego.gh, flagged, sent), user)
    assert r.status_code in (302, 303) and r.headers["Location"].startswith(sent + "&"), (r.status_code, r.headers)
    params = query(r.headers["Location"])
    assert params.get("code") and params["state"] == "st", params
    token = requests.post(lego.gh.url("/authorization/oauth2/token/"), timeout=30, data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": sent,
        "client_id": flagged["client_id"], "client_secret": flagged["client_secret"]})
    assert token.status_code == 200 and token.json().get("access_token"), token.text
    # Still exactly one: two redirect_state parameters are refused.
    r = Browser(lego.gh).get(authorize_url(lego.gh, flagged, sent + "&redirect_state=again"))
    assert r.status_code == 400 and "Location" not in r.headers, (r.status_code, r.headers.get("Location"))
    # It is the client's setting, not the profile's: the same on a server without --compat.
    on_core = gh.cli("clients", "create", "--name", unique("psa-core-"), "--scope", "openid", "--redirect-uri", redirect,
                     "--legacy-redirect-state")
    r, _ = Browser(gh).authorize(gh.issuer + "/oauth2/authorize?" + urlencode({
        "client_id": on_core["client_id"], "redirect_uri": sent, "response_type": "code", "scope": "openid",
        "state": "st"}), gh.create_user())
    assert r.status_code in (302, 303) and r.headers["Location"].startswith(sent + "&"), (r.status_code, r.headers)


def refused_to_start(tmp: Path, name: str, *flags: str, database: str) -> tuple[int, str]:
    """Run `gatehouse serve` with `flags`; it must exit by itself (returns status and stderr). A server that
    starts answering instead is stopped and the test fails."""
    port = free_port()
    out_path, err_path = tmp / f"{name}.out", tmp / f"{name}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([str(BIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--database", database,
                                 *flags], stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=server_env())
        def exited() -> bool:
            if proc.poll() is not None:
                return True
            try:
                if requests.get(f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=1).ok:
                    pytest.fail(f"gatehouse serve {' '.join(flags)} started; it should refuse to")
            except requests.RequestException:
                pass
            return False

        try:
            wait_until(exited, f"gatehouse serve {' '.join(flags)} to exit (it neither started nor exited)",
                       timeout=30, interval=0.1)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return proc.returncode, err_path.read_text(errors="replace")


def test_lego_refuses_to_start_without_a_password_grant_compat_client(tmp):
    database = f"sqlite://{tmp}/lego-start.sqlite"
    admin = Gatehouse(database, "http://127.0.0.1:9")
    assert admin.run("migrate").returncode == 0
    no_password = admin.create_client(name=unique("no-password-"))
    for case, flags in {"missing": [], "unknown": ["--compat-client-id", unique("nosuch")],
                        "no password grant": ["--compat-client-id", no_password["client_id"]]}.items():
        status, stderr = refused_to_start(tmp, "lego-start-" + case.replace(" ", "-"), "--compat", "lego", *flags,
                                          database=database)
        errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
        assert status == 1 and len(errors) == 1, (case, status, stderr)
        assert "compat_client_id" in errors[0].lower().replace("-", "_"), (case, errors)


def test_lego_sessions_are_listed_while_refreshable_and_revocable(lego):
    gh = lego.gh
    user, password = gh.create_user()
    refresh_url = gh.url("/api/token-auth/refresh/")

    def refresh(token: str) -> requests.Response:
        return requests.post(refresh_url, json={"token": token}, timeout=30)

    token = assert_json(requests.post(gh.url("/api/token-auth/"), timeout=30,
                                      json={"username": user["username"], "password": password}))["token"]
    # The web app keeps its session alive past the access-token lifetime by refreshing (as drf-jwt's clients
    # do); this waits for wall-clock time to pass, refreshing well before each token expires.
    started = time.monotonic()
    while time.monotonic() - started < LEGO_TTL + 1.5:
        time.sleep(0.5)  # time must pass: the session outlives a token lifetime; this is the refresh pace
        token = assert_json(refresh(token))["token"]

    def listed(page) -> list:
        return [f for f in page.forms if "revoke" in f.attrs.get("class", "").split()
                and f.fields.get("client_id") == lego.compat["client_id"]]

    browser = Browser(gh)
    r = browser.sign_in(user["username"], password)
    assert r.status_code == 200 and r.url.endswith("/account"), (r.status_code, r.url)
    page = parse_page(r)
    assert listed(page), f"the token-auth session is not on /account:\n{r.text[:3000]}"
    token = assert_json(refresh(token))["token"]  # fresh: what follows is not mere expiry
    me = requests.get(gh.url("/api/v1/users/me/"), headers={"Authorization": "JWT " + token}, timeout=30)
    assert me.status_code == 200, me.text
    form = listed(page)[0]
    first = browser.session.post(gh.url("/account/revoke"), data=dict(form.fields), allow_redirects=False, timeout=30)
    assert first.status_code == 303, (first.status_code, first.text[:500])
    r = refresh(token)
    assert r.status_code == 400 and "token" not in assert_json(r, 400), r.text
    me = requests.get(gh.url("/api/v1/users/me/"), headers={"Authorization": "JWT " + token}, timeout=30)
    assert me.status_code == 401, me.text
    assert not listed(parse_page(browser.get("/account"))), "revoked sessions are not listed"


def test_dgp_next_must_be_under_an_allowed_path(dgp):
    server = dgp.gh
    user = server.create_user()
    for bad in (f"https://{NEXT_HOST}/elsewhere?lang=en", f"https://{NEXT_HOST}/?lang=en",
                f"https://{NEXT_HOST}/application/x?lang=en"):
        url = dgp_check(server, next=bad)["providers"]["gatehouse"]["url"]
        r, _ = Browser(server).authorize(url, user)
        assert r.status_code == 400 and "Location" not in r.headers, (bad, r.status_code, r.headers.get("Location"))
        signed_in = Browser(server)
        signed_in.sign_in(user[0]["username"], user[1])
        r = signed_in.get("/auth/finish?" + urlencode({"next": bad}))
        assert r.status_code == 400 and "Location" not in r.headers, (bad, r.status_code, r.headers.get("Location"))
    for good in (NEXT_OK, f"https://{NEXT_HOST}/after-login/?lang=en"):
        assert verify_rs256(server, dgp_login(server, user, good))["userid"] == user[0]["id"]


def test_dgp_token_lifetime(dgp, lego):
    for server, ttl in ((dgp.gh, DGP_TTL), (lego.gh, 3600)):  # compat_dgp_token_ttl=5m; the default 1h
        claims = verify_rs256(server, dgp_login(server, server.create_user(), NEXT_OK))
        assert claims["exp"] - claims["iat"] == ttl, (server.issuer, claims)


def test_dgp_tokens_end_with_their_session(dgp):
    server = dgp.gh
    user = server.create_user()
    service = unique("svc-")
    server.cli("services", "create", service)
    first, second = Browser(server), Browser(server)
    jwt_first = dgp_login(server, user, NEXT_OK, browser=first)
    jwt_second = dgp_login(server, user, NEXT_OK, browser=second)

    def alive(token: str) -> bool:
        checked = dgp_check(server, jwt=token)["authenticated"]
        r = requests.get(server.issuer + "/auth/authorize?" + urlencode({"jwt": token, "service": service}), timeout=30)
        assert (r.status_code == 200) == checked, (checked, r.status_code, r.text)
        return checked

    assert alive(jwt_first) and alive(jwt_second)
    # Signing out on the account page ends that session's tokens, not the other session's.
    account = parse_page(first.get("/account"))
    first.submit(account, "#logout-form")
    assert not alive(jwt_first), "a dgp token outlived the sign-out of its session"
    assert alive(jwt_second)
    # RP-initiated logout does the same.
    r = second.get("/oauth2/logout")
    assert r.status_code == 200, (r.status_code, r.text[:500])
    if parse_page(r).form("#logout-confirm-form") is not None:  # asked to confirm (no id_token_hint)
        second.submit(parse_page(r), "#logout-confirm-form", button="yes")
    assert not alive(jwt_second), "a dgp token outlived RP-initiated logout of its session"
