"""Proves the compatibility profiles (`gatehouse serve --compat lego,dgp,doorkeeper,dot`) against the four
legacy documents in shared/seeds: every request a document shows is replayed here in its own shape (JSON
or form bodies, query parameters, headers), and the exact response shapes and status codes are checked.

- lego (000): JWT token auth and refresh, `Authorization: JWT`, the OAuth2 code flow with scopes `user` and
  `all` (role `admin`), the user-data endpoints, CORS for configured origins only, and the document's
  python-social-auth backend `LegoOAuth2`, copied verbatim and driven by social-auth-core itself.
- dgp (001): `/auth/check`, the login that ends at `next?jwt=` (allowed hosts only), `/auth/authorize`
  with permissions from `services grant` or a permissions URL (also one that fails or hangs),
  `/auth/update`, `/auth/public-key`, and dgp-oauth2's own environment variables.
- doorkeeper (002): `/api/oauth/authorize` (out-of-band included), `/api/oauth/token` with JSON and form
  bodies (`created_at`, `member`), client credentials, `/api/oauth/revoke`, `/api/oauth/token/info`.
- dot (003): `/o/authorize/`, `/o/token/` (the curl session's password grant by a public client),
  `/o/revoke_token/`, `/o/introspect/`, `user_details/`, `user_details_by_username/…/` and
  `register-by-token/{provider}/` against a fake third-party site written here (the providers listed in
  --compat-exchange-providers, their tokens bound by RFC 7662 introspection or accepted with
  --allow-foreign-tokens, the compat client registered for the token-exchange grant).
- A profile that is off exposes none of its routes.

Each server here is an extra `gatehouse serve` on a loopback port: the one with every profile on
E2E_DATABASE_URL when it is set (PostgreSQL in scripts/test's second pass), the others on their own SQLite
files. The fake third-party site and permission services are http.server instances on loopback.
"""

import base64
import json
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import conftest
from conftest import BIN, Browser, Gatehouse, basic_auth, free_port, parse_page, query, unique, wait_until

# The settings `gatehouse serve` reads from the environment: none may leak in from the caller's shell.
DGP_ENV = ("PRIVATE_KEY", "PUBLIC_KEY", "GOOGLE_KEY", "GOOGLE_SECRET", "GITHUB_KEY", "GITHUB_SECRET",
           "DATABASE_URL", "EXTERNAL_ADDRESS")
NEXT_HOST = "rp.example.com"
CORS_ORIGIN = "https://webapp.example.com"
OOB = "urn:ietf:wg:oauth:2.0:oob"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DOORKEEPER_DEFAULT = ["member-read", "activity-read", "group-read"]
DOORKEEPER_OPTIONAL = ["participant-read", "participant-write", "checkout-read", "checkout-write"]


# --- servers ---------------------------------------------------------------------------------------
class Server(Gatehouse):
    """An extra `gatehouse serve` on its own database and loopback port."""

    def __init__(self, database: str, issuer: str, port: int, log_path: Path):
        super().__init__(database, issuer)
        self.port = port
        self.log_path = log_path

    def url(self, path: str) -> str:
        return self.issuer + path


def server_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_") and k not in DGP_ENV}
    env.update(extra)
    return env


@contextmanager
def running(tmp: Path, name: str, *flags: str, env: dict | None = None, database: str | None = None,
            database_flag: bool = True, setup=None, port: int | None = None, issuer: str | None = None):
    """Migrate `database` (default: a fresh SQLite file tmp/NAME.sqlite), run `setup(server)` (CLI calls; it
    may return more flags), start `gatehouse serve` on 127.0.0.1:`port` with the flags (and --database
    unless `database_flag` is false), wait until it answers, yield it, and stop it."""
    port = port or free_port()
    issuer = issuer or f"http://127.0.0.1:{port}"
    server = Server(database or f"sqlite://{tmp}/{name}.sqlite", issuer, port, tmp / f"{name}.log")
    migrate = server.run("migrate")
    assert migrate.returncode == 0, migrate.stderr
    more = setup(server) if setup is not None else None
    conftest.extra_logs.append((f"gatehouse {name} ({server.issuer})", server.log_path))
    args = [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(port), *flags, *(more or [])]
    if database_flag:
        args += ["--database", server.database]
    with conftest.serving(args, server.log_path, f"http://127.0.0.1:{port}/.well-known/openid-configuration",
                          f"gatehouse {name}", env=env if env is not None else server_env()):
        yield server


def rsa_pair() -> tuple[str, str]:
    """A fresh RSA pair as dgp-oauth2's tools/generate_key_pair.sh makes it (`openssl genrsa`: PKCS#1
    private key; `openssl rsa -pubout`: SubjectPublicKeyInfo)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


# --- the fake third-party site and permission services ------------------------------------------
SITE_CLIENT_ID, SITE_CLIENT_SECRET = "x", "fake-secret"  # Gatehouse's client at the fake site


class FakeSite:
    """One loopback HTTP server playing:
    - "Fake Social Site" of document 003: `GET /user_details/` and `GET /users/{username}/` with
      `Authorization: Bearer` (404 when the username is not the token's user, 401 for an unknown token),
      and RFC 7662 `POST /introspect` (HTTP Basic with Gatehouse's client there; the profile plus `active`,
      `sub` and `client_id`, the client the token was issued to);
    - permission services for dgp: `GET /perm/ok|error|slow|text?service=&userid=`.
    """

    def __init__(self, log_path: Path):
        self.tokens: dict[str, dict] = {}  # access token -> profile
        self.token_clients: dict[str, str] = {}  # access token -> the client id it was issued to
        self.requests: list[tuple[str, dict, dict]] = []  # (path, query, headers)
        self.release = threading.Event()
        self.log_path = log_path
        self._log = open(log_path, "w")
        site = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status: int, body):
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/plain")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                u = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                site.requests.append((u.path, q, dict(self.headers)))
                auth = self.headers.get("Authorization", "")
                profile = site.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
                if u.path == "/user_details/":
                    return self.reply(200, profile) if profile else self.reply(401, {"detail": "Invalid token."})
                if u.path.startswith("/users/") and u.path.endswith("/"):
                    if profile is None:
                        return self.reply(401, {"detail": "Invalid token."})
                    if u.path[len("/users/"):-1] != profile["username"]:
                        return self.reply(404, {"detail": "Not found."})
                    return self.reply(200, profile)
                if u.path == "/perm/ok":
                    return self.reply(200, {"permission-x": True, "permission-y": False})
                if u.path == "/perm/error":
                    return self.reply(500, {"error": "boom"})
                if u.path == "/perm/text":
                    return self.reply(200, b"permission-x")
                if u.path == "/perm/slow":
                    site.release.wait(20)
                    return self.reply(200, {"permission-x": True})
                self.reply(404, {"detail": "Not found."})

            def do_POST(self):
                u = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                site.requests.append((u.path, form, dict(self.headers)))
                if u.path != "/introspect":
                    return self.reply(404, {"detail": "Not found."})
                auth = self.headers.get("Authorization", "")
                try:
                    cid, _, secret = base64.b64decode(auth[len("Basic "):]).decode().partition(":")
                except ValueError:
                    cid, secret = "", ""
                if not auth.startswith("Basic ") or (unquote_plus(cid), unquote_plus(secret)) != (
                        SITE_CLIENT_ID, SITE_CLIENT_SECRET):
                    return self.reply(401, {"error": "invalid_client"})
                token = form.get("token", "")
                profile = site.tokens.get(token)
                if profile is None:
                    return self.reply(200, {"active": False})
                return self.reply(200, {**profile, "active": True, "sub": str(profile["id"]),
                                        "client_id": site.token_clients[token]})

            def log_message(self, fmt, *args):
                site._log.write("fake site: " + fmt % args + "\n")
                site._log.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def person(self, client_id: str = SITE_CLIENT_ID) -> tuple[str, dict]:
        """A new person at the site and an access token of theirs, issued to `client_id` at the site."""
        username = unique("social")
        profile = {"id": int(time.time() * 1000) % 10**9 + len(self.tokens), "username": username,
                   "first_name": "Agustin", "last_name": "Barto", "email": f"{username}@social.example.com"}
        token = unique("tok")
        self.tokens[token] = profile
        self.token_clients[token] = client_id
        return token, profile

    def seen(self, path: str) -> list[tuple[dict, dict]]:
        return [(q, h) for p, q, h in self.requests if p == path]

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._log.close()


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("compat")


@pytest.fixture(scope="module")
def site(tmp):
    s = FakeSite(tmp / "fake-site.log")
    conftest.extra_logs.append(("fake social site / permission services", s.log_path))
    yield s
    s.stop()


# --- the server with every profile ------------------------------------------------------------
@dataclass
class Compat:
    gh: Server
    compat_client: dict  # compat_client_id: a confidential client, default scope "read write"
    site: FakeSite


@pytest.fixture(scope="module")
def compat(tmp, site):
    """Every profile on one server: on E2E_DATABASE_URL when set (e.g. PostgreSQL, shared with the `gh`
    server, so the profiles' storage runs on it too), else on a fresh SQLite file."""
    made = {}
    # Issue 10: a fixed user-details URL is a who-am-I URL, which cannot prove a token was issued to us
    # (--allow-foreign-tokens accepts that, as document 003 did); the templated one gets the site's RFC 7662
    # introspection, which does.
    providers = {
        "fake_social_site": ("/user_details/", ("--allow-foreign-tokens",)),
        "fake_social_site_with_params": ("/users/{username}/", ("--introspection-url", site.base + "/introspect")),
    }

    def create_scope(s: Server, *args: str):
        p = s.run("scopes", "create", *args)  # the documents' fixed names: a reused database has them
        assert p.returncode == 0 or "already exists" in p.stderr, p.stderr

    def setup(s: Server) -> list[str]:
        for name in ("read", "write"):
            create_scope(s, name, "--description", f"{name} access")
        for name in DOORKEEPER_DEFAULT:
            create_scope(s, name, "--default")
        for name in DOORKEEPER_OPTIONAL:
            create_scope(s, name)
        # The compat client needs the password grant (lego token-auth) and the token-exchange grant
        # (register-by-token; refresh_token for its refresh tokens) since issue 10.
        made["client"] = s.create_client(name="my-api", scope="read write", allow_password_grant=True,
                                         grant_types=("authorization_code", "refresh_token", TOKEN_EXCHANGE))
        for pid, (userinfo, options) in providers.items():
            s.run("providers", "remove", pid)  # from an earlier session on a reused database
            p = s.run("providers", "add", "--id", pid, "--kind", "oauth2", "--name", pid,
                      "--authorize-url", site.base + "/o/authorize/", "--token-url", site.base + "/o/token/",
                      "--userinfo-url", site.base + userinfo, "--client-id", SITE_CLIENT_ID, "--client-secret-stdin",
                      *options, stdin=SITE_CLIENT_SECRET)
            assert p.returncode == 0, p.stderr
        return ["--compat-client-id", made["client"]["client_id"]]

    with running(tmp, "compat-all", "--compat", "lego,dgp,doorkeeper,dot", "--compat-next-hosts", NEXT_HOST,
                 "--compat-exchange-providers", ",".join(providers),
                 "--cors-origins", CORS_ORIGIN, setup=setup, database=os.environ.get("E2E_DATABASE_URL")) as server:
        yield Compat(server, made["client"], site)
        for pid in providers:  # a shared database: the `gh` server's login page need not show them
            server.run("providers", "remove", pid)


def assert_json(r: requests.Response, status: int = 200):
    assert r.status_code == status, (r.request.method, r.url, r.status_code, r.text[:2000])
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers.get("Content-Type")
    return r.json()


def location_query(r: requests.Response, prefix: str) -> dict:
    assert r.status_code in (302, 303), (r.status_code, r.url, r.text[:2000])
    location = r.headers["Location"]
    assert location.startswith(prefix), (location, prefix)
    return query(location)


# ===================================================================================================
# lego (document 000)
# ===================================================================================================
LEGO_USER_KEYS = {"id", "username", "firstName", "lastName", "fullName", "email", "profilePicture", "memberships"}
LEGO_APP = "https://lego-app.example.com"


def lego_person(c: Compat, *, admin: bool = False) -> tuple[dict, str, str]:
    """A user with a full profile and a membership in a new group (role admin or member)."""
    user = c.gh.create_user(email=unique("lego") + "@abakus.example", name="Ola Nordmann", given_name="Ola",
                            family_name="Nordmann", picture="https://abakus.example/ola.png")
    group = unique("webkom")
    c.gh.cli("groups", "create", group)
    c.gh.cli("groups", "add-member", group, user[0]["username"], "--role", "admin" if admin else "member")
    return user[0], user[1], group


def check_lego_user(data: dict, user: dict, group: str, role: str):
    assert set(data) == LEGO_USER_KEYS, data
    assert data["id"] == user["id"] and data["username"] == user["username"], data
    assert (data["firstName"], data["lastName"], data["fullName"]) == ("Ola", "Nordmann", "Ola Nordmann"), data
    assert data["email"] == user["email"] and data["profilePicture"] == "https://abakus.example/ola.png", data
    assert {"abakusGroup": {"name": group}, "role": role} in data["memberships"], data


def test_lego_scopes_are_created_at_start(compat):
    scopes = {s["name"]: s for s in compat.gh.cli("scopes", "list")}
    assert "user" in scopes and "all" in scopes, scopes.keys()
    assert scopes["all"].get("required_role") == "admin", scopes["all"]
    assert not scopes["user"].get("required_role"), scopes["user"]


def test_lego_token_auth_json_and_form_then_jwt_header(compat):
    user, password, group = lego_person(compat)
    url = compat.gh.url("/api/token-auth/")
    as_json = assert_json(requests.post(url, json={"username": user["username"], "password": password}, timeout=30))
    as_form = assert_json(requests.post(url, data={"username": user["username"], "password": password}, timeout=30))
    for body in (as_json, as_form):
        assert set(body) == {"token", "user"}, body
        check_lego_user(body["user"], user, group, "member")
        claims = compat.gh.decode(body["token"])  # a JWT, verifiable with the server's JWKS
        assert claims["sub"] == user["id"] and claims["client_id"] == compat.compat_client["client_id"], claims
    # "Authorization: JWT <insert token here>" and Bearer both work on the API.
    for scheme in ("JWT", "Bearer"):
        me = assert_json(requests.get(compat.gh.url("/api/v1/users/me/"), timeout=30,
                                      headers={"Authorization": f"{scheme} {as_json['token']}"}))
        check_lego_user(me, user, group, "member")
    # Wrong credentials: 400 and no token, as JSON or form.
    bad = requests.post(url, json={"username": user["username"], "password": password + "x"}, timeout=30)
    assert bad.status_code == 400 and "token" not in assert_json(bad, 400), bad.text
    bad = requests.post(url, data={"username": unique("nobody"), "password": "x"}, timeout=30)
    assert bad.status_code == 400 and "token" not in assert_json(bad, 400), bad.text
    # No or a bad token on the API: 401.
    assert requests.get(compat.gh.url("/api/v1/users/me/"), timeout=30).status_code == 401
    r = requests.get(compat.gh.url("/api/v1/users/me/"), headers={"Authorization": "JWT not-a-token"}, timeout=30)
    assert r.status_code == 401, r.text


def test_lego_token_refresh_with_and_without_slash(compat):
    user, password, group = lego_person(compat)
    token = assert_json(requests.post(compat.gh.url("/api/token-auth/"), timeout=30,
                                      json={"username": user["username"], "password": password}))["token"]
    seen = {token}
    # The document's spelling (no slash) as JSON, then with the slash as a form. Every token has a `jti` of
    # its own, so a fresh one differs from the old one even within the same second.
    for path, kind in (("/api/token-auth/refresh", "json"), ("/api/token-auth/refresh/", "data")):
        r = requests.post(compat.gh.url(path), timeout=30, **{kind: {"token": token}})
        body = assert_json(r)
        assert "token" in body, body
        assert body["token"] not in seen, "refresh returned an old token"
        seen.add(body["token"])
        claims = compat.gh.decode(body["token"])
        assert claims["sub"] == user["id"], claims
        me = assert_json(requests.get(compat.gh.url("/api/v1/users/me/"), timeout=30,
                                      headers={"Authorization": "JWT " + body["token"]}))
        check_lego_user(me, user, group, "member")
        token = body["token"]
    # Garbage, or a token that was never issued, is refused with 400.
    r = requests.post(compat.gh.url("/api/token-auth/refresh"), json={"token": "abc.def.ghi"}, timeout=30)
    assert r.status_code == 400 and "token" not in assert_json(r, 400), r.text


def test_lego_refresh_accepts_only_token_auth_tokens(compat):
    """F1: token-auth refresh turns only token-auth's own tokens into fresh ones. The compat client's access
    tokens from anywhere else (the password grant at any of the token endpoints, RFC 8693 exchange of its own
    tokens, DOT's register-by-token) are live, valid tokens of the same client, and refresh still refuses
    them in drf-jwt's shape: none of them becomes a 7-day refreshable session."""
    c = compat
    cid, secret = c.compat_client["client_id"], c.compat_client["client_secret"]
    user, password, group = lego_person(c)
    refresh_url = c.gh.url("/api/token-auth/refresh/")

    def live_compat_token(token: str, how: str, sub: str | None = user["id"]) -> dict:
        """`token` is a valid, unexpired access token of the compat client that the API accepts, so a
        refusal below is about where it came from, not about its validity."""
        claims = c.gh.decode(token)
        assert claims["client_id"] == cid, (how, claims)
        if sub is not None:
            assert claims["sub"] == sub, (how, claims)
        me = requests.get(c.gh.url("/api/v1/users/me/"), headers={"Authorization": "JWT " + token}, timeout=30)
        assert me.status_code == 200, (how, me.status_code, me.text)
        return claims

    def refused(token: str, how: str):
        for path, kind in (("/api/token-auth/refresh", "json"), ("/api/token-auth/refresh/", "data")):
            r = requests.post(c.gh.url(path), timeout=30, **{kind: {"token": token}})
            body = assert_json(r, 400)
            assert "token" not in body and set(body) == {"non_field_errors"}, (how, path, body)
            assert isinstance(body["non_field_errors"], list) and body["non_field_errors"], (how, path, body)
            assert token not in r.text, (how, path, "the refusal echoes the token")

    # (1) Positive control: token-auth's own token refreshes, and so does the fresh one.
    session = assert_json(requests.post(c.gh.url("/api/token-auth/"), timeout=30,
                                        json={"username": user["username"], "password": password}))["token"]
    live_compat_token(session, "token-auth")
    refreshed = assert_json(requests.post(refresh_url, json={"token": session}, timeout=30))
    assert refreshed["token"] != session, refreshed
    check_lego_user(refreshed["user"], user, group, "member")
    session = refreshed["token"]
    live_compat_token(session, "token-auth, refreshed")

    # (2) The password grant for the same client and user, at the standard token endpoint (from discovery)
    # and at every profile's token endpoint (they all run the core's token endpoint).
    discovery = assert_json(requests.get(c.gh.url("/.well-known/openid-configuration"), timeout=30))
    password_tokens = {}
    for endpoint in (discovery["token_endpoint"], c.gh.url("/o/token/"), c.gh.url("/authorization/oauth2/token/"),
                     c.gh.url("/api/oauth/token")):
        r = requests.post(endpoint, timeout=30, data={
            "grant_type": "password", "username": user["username"], "password": password,
            "client_id": cid, "client_secret": secret})
        token = assert_json(r)["access_token"]
        live_compat_token(token, f"password grant at {endpoint}")
        refused(token, f"password grant at {endpoint}")
        password_tokens[endpoint] = token

    # (3) RFC 8693 exchange by the compat client of its own tokens: of the token-auth token and of a
    # password-grant token.
    for how, subject in (("exchange of the token-auth token", session),
                         ("exchange of a password-grant token", password_tokens[discovery["token_endpoint"]])):
        r = requests.post(discovery["token_endpoint"], timeout=30, data={
            "grant_type": TOKEN_EXCHANGE, "subject_token": subject,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"},
            headers={"Authorization": basic_auth(cid, secret)})
        exchanged = assert_json(r)["access_token"]
        assert exchanged != subject, how
        live_compat_token(exchanged, how)
        refused(exchanged, how)

    # (4) DOT's register-by-token: a token of the compat client for the fake site's person (the provider whose
    # tokens are bound by the site's RFC 7662 introspection, and the one accepted with --allow-foreign-tokens).
    upstream, person = c.site.person()
    for provider, params in (("fake_social_site_with_params", {"username": person["username"]}),
                             ("fake_social_site", {})):
        token = assert_json(register_by_token(c, provider, access_token=upstream, **params))["access_token"]
        live_compat_token(token, f"register-by-token/{provider}", sub=None)
        refused(token, f"register-by-token/{provider}")

    # The refusals changed nothing for the real session: it still refreshes.
    again = assert_json(requests.post(c.gh.url("/api/token-auth/refresh"), json={"token": session}, timeout=30))
    assert again["token"] != session, again
    live_compat_token(again["token"], "token-auth, refreshed after the refusals")


def lego_client(c: Compat, redirect_uri: str, legacy_redirect_state: bool = False, **kw) -> dict:
    if legacy_redirect_state:  # python-social-auth's redirect_state: a per-client setting since issue 10
        return c.gh.cli("clients", "create", "--name", unique("e2e-client-"), "--scope", "user all",
                        "--redirect-uri", redirect_uri, "--legacy-redirect-state")
    return c.gh.create_client(scope="user all", redirect_uris=[redirect_uri], **kw)


def lego_code_flow(c: Compat, client: dict, user: tuple, scope: str, redirect_uri: str) -> requests.Response:
    """The authorization-code flow at Lego's paths; returns the redirect back to the app."""
    url = c.gh.url("/authorization/oauth2/authorize/?" + urlencode(
        {"client_id": client["client_id"], "redirect_uri": redirect_uri, "response_type": "code",
         "scope": scope, "state": "st4te"}))
    r, _ = Browser(c.gh).authorize(url, user)
    return r


def lego_redeem(c: Compat, client: dict, code: str, redirect_uri: str) -> requests.Response:
    return requests.post(c.gh.url("/authorization/oauth2/token/"), timeout=30, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "client_id": client["client_id"], "client_secret": client["client_secret"]})


def test_lego_oauth2_scopes_user_and_all(compat):
    redirect = LEGO_APP + "/callback"
    client = lego_client(compat, redirect)
    member, member_pw, group = lego_person(compat)
    admin, admin_pw, admin_group = lego_person(compat, admin=True)

    # scope=user: oauth2_userdata answers with the user data.
    params = location_query(lego_code_flow(compat, client, (member, member_pw), "user", redirect), redirect + "?")
    assert params["state"] == "st4te" and params.get("code"), params
    token = assert_json(lego_redeem(compat, client, params["code"], redirect))
    assert token["scope"].replace(",", " ").split() == ["user"], token
    for path in ("/api/v1/users/oauth2_userdata/", "/api/v1/users/me/"):
        data = assert_json(requests.get(compat.gh.url(path), timeout=30,
                                        headers={"Authorization": "Bearer " + token["access_token"]}))
        check_lego_user(data, member, group, "member")

    # scope=all for a user without the role admin: refused.
    params = location_query(lego_code_flow(compat, client, (member, member_pw), "all", redirect), redirect + "?")
    assert params.get("error") == "access_denied" and "code" not in params, params

    # A comma-separated list (SCOPE_SEPARATOR = ','): user,all for an admin.
    params = location_query(lego_code_flow(compat, client, (admin, admin_pw), "user,all", redirect), redirect + "?")
    assert params.get("code"), params
    token = assert_json(lego_redeem(compat, client, params["code"], redirect))
    assert sorted(token["scope"].replace(",", " ").split()) == ["all", "user"], token
    data = assert_json(requests.get(compat.gh.url("/api/v1/users/oauth2_userdata/"), timeout=30,
                                    headers={"Authorization": "Bearer " + token["access_token"]}))
    check_lego_user(data, admin, admin_group, "admin")

    # A token without `user` or `all` (token-auth for the compat client: "read write") may not read
    # oauth2_userdata, though /me/ works.
    jwt_token = assert_json(requests.post(compat.gh.url("/api/token-auth/"), timeout=30,
                                          json={"username": member["username"], "password": member_pw}))["token"]
    r = requests.get(compat.gh.url("/api/v1/users/oauth2_userdata/"), headers={"Authorization": "JWT " + jwt_token},
                     timeout=30)
    assert r.status_code == 403, (r.status_code, r.text)
    assert requests.get(compat.gh.url("/api/v1/users/oauth2_userdata/"), timeout=30).status_code == 401


def test_lego_cors_only_for_configured_origins(compat):
    user, password, _ = lego_person(compat)
    url = compat.gh.url("/api/token-auth/")
    ok = requests.post(url, json={"username": user["username"], "password": password}, timeout=30,
                       headers={"Origin": CORS_ORIGIN})
    assert ok.status_code == 200
    assert ok.headers.get("Access-Control-Allow-Origin") == CORS_ORIGIN, ok.headers
    assert ok.headers.get("Access-Control-Allow-Credentials") == "true", ok.headers
    token = ok.json()["token"]
    for path in ("/api/token-auth/", "/api/token-auth/refresh/", "/api/v1/users/me/", "/api/v1/users/oauth2_userdata/"):
        pre = requests.options(compat.gh.url(path), timeout=30, headers={
            "Origin": CORS_ORIGIN, "Access-Control-Request-Method": "POST" if "token-auth" in path else "GET",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert pre.status_code in (200, 204), (path, pre.status_code)
        assert pre.headers.get("Access-Control-Allow-Origin") == CORS_ORIGIN, (path, pre.headers)
        methods = pre.headers.get("Access-Control-Allow-Methods", "")
        assert ("POST" if "token-auth" in path else "GET") in methods, (path, pre.headers)
        allowed = pre.headers.get("Access-Control-Allow-Headers", "").lower()
        assert "authorization" in allowed and "content-type" in allowed, (path, pre.headers)
        evil = requests.options(compat.gh.url(path), timeout=30, headers={
            "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in evil.headers, (path, evil.headers)
    me = requests.get(compat.gh.url("/api/v1/users/me/"), timeout=30,
                      headers={"Origin": CORS_ORIGIN, "Authorization": "JWT " + token})
    assert me.status_code == 200 and me.headers.get("Access-Control-Allow-Origin") == CORS_ORIGIN, me.headers
    for origin in ("https://evil.example.com", CORS_ORIGIN + ":8443", "http://webapp.example.com"):
        r = requests.get(compat.gh.url("/api/v1/users/me/"), timeout=30,
                         headers={"Origin": origin, "Authorization": "JWT " + token})
        assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers, (origin, r.headers)
        r = requests.post(url, json={"username": user["username"], "password": password}, timeout=30,
                          headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in r.headers, (origin, r.headers)


# --- the document's python-social-auth backend, copied verbatim ------------------------------------
from six.moves.urllib.parse import urljoin  # noqa: E402,F811  (the document's first line)

from social_core.backends.oauth import BaseOAuth2  # noqa: E402


class LegoOAuth2(BaseOAuth2):

    name = 'lego'
    ACCESS_TOKEN_METHOD = 'POST'
    SCOPE_SEPARATOR = ','
    EXTRA_DATA = [
        ('id', 'id'),
        ('expires_in', 'expires_in'),
    ]

    def api_url(self):
        api_url = self.setting('API_URL')
        if not api_url:
            raise ValueError('Please set the LEGO_API_URL setting.')
        return api_url

    def get_scope(self):
        return ['user'] # Only use ['all'] when necessary (aka. never)

    def authorization_url(self):
        return urljoin(self.api_url(), '/authorization/oauth2/authorize/')

    def access_token_url(self):
        return urljoin(self.api_url(), '/authorization/oauth2/token/')

    def get_user_details(self, response):
        """Return user details from Lego account"""
        fullname, first_name, last_name = self.get_user_names(
            response.get('fullName'),
            response.get('firstName'),
            response.get('lastName')
        )
        return {'username': response.get('username'),
                'email': response.get('email') or '',
                'fullname': fullname,
                'first_name': first_name,
                'last_name': last_name}

    def user_data(self, access_token, *args, **kwargs):
        return self._user_data(access_token)

    def _user_data(self, access_token):
        url = urljoin(self.api_url(), 'api/v1/users/me/')
        return self.get_json(url, headers={'AUTHORIZATION': 'Bearer %s' % access_token})
# --- end of the document's code ---------------------------------------------------------------------


# A minimal social-auth "framework": an in-memory user table, association table and nonce store, and a
# strategy for one browser session (what social-app-django provides on a real site).
from social_core.storage import BaseStorage, NonceMixin, UserMixin  # noqa: E402
from social_core.strategy import BaseStrategy  # noqa: E402


class AppUser:
    def __init__(self, pk: int, username: str, email: str = "", **fields):
        self.id = pk
        self.username = username
        self.email = email
        self.first_name = fields.get("first_name", "")
        self.last_name = fields.get("last_name", "")
        self.is_active = True
        self.is_authenticated = True


class AppSocialAuth(UserMixin):
    users: list = []
    entries: list = []

    def __init__(self, user: AppUser, uid: str, provider: str, id_key: str = ""):
        self.id = len(self.entries) + 1
        self.user, self.uid, self.provider, self.id_key = user, uid, provider, id_key
        self.extra_data = {}

    def save(self):
        pass

    @classmethod
    def changed(cls, user):
        pass

    @classmethod
    def get_username(cls, user):
        return user.username

    @classmethod
    def user_model(cls):
        return AppUser

    @classmethod
    def username_max_length(cls):
        return 150

    @classmethod
    def user_exists(cls, *args, **kwargs):
        return any(all(getattr(u, k) == v for k, v in kwargs.items()) for u in cls.users)

    @classmethod
    def create_user(cls, *args, **kwargs):
        user = AppUser(len(cls.users) + 1, **kwargs)
        cls.users.append(user)
        return user

    @classmethod
    def get_user(cls, pk):
        return next((u for u in cls.users if u.id == pk), None)

    @classmethod
    def get_users_by_email(cls, email):
        return [u for u in cls.users if u.email.lower() == email.lower()]

    @classmethod
    def get_social_auth(cls, provider, uid, id_key=None):
        return next((e for e in cls.entries if e.provider == provider and e.uid == uid
                     and (id_key is None or e.id_key == id_key)), None)

    @classmethod
    def get_social_auth_for_user(cls, user, provider=None, id=None):  # noqa: A002
        return [e for e in cls.entries if e.user is user and (provider is None or e.provider == provider)]

    @classmethod
    def create_social_auth(cls, user, uid, provider, id_key=""):
        entry = cls(user, uid, provider, id_key)
        cls.entries.append(entry)
        return entry


class AppNonce(NonceMixin):
    live: set = set()

    @classmethod
    def use(cls, server_url, timestamp, salt):
        key = (server_url, timestamp, salt)
        if key in cls.live:
            return False
        cls.live.add(key)
        return True

    @classmethod
    def consume(cls, server_url, timestamp, salt):
        key = (server_url, timestamp, salt)
        if key not in cls.live:
            return False
        cls.live.discard(key)
        return True


class AppStorage(BaseStorage):
    user = AppSocialAuth
    nonce = AppNonce

    @classmethod
    def is_integrity_error(cls, exception):
        return False


class AppStrategy(BaseStrategy):
    """One visitor of the app at `base`: its session, and the query of the request being handled."""

    def __init__(self, base: str, settings: dict):
        super().__init__(AppStorage)
        self.base = base
        self.settings = settings
        self.session: dict = {}
        self.data: dict = {}

    def get_setting(self, name):
        return self.settings[name]

    def get_request_data(self, merge=True):
        return dict(self.data)

    def request_host(self):
        return urlsplit(self.base).netloc

    def request_is_secure(self):
        return self.base.startswith("https:")

    def request_path(self):
        return "/complete/lego/"

    def request_port(self):
        return 443

    def request_get(self):
        return dict(self.data)

    def request_post(self):
        return {}

    def session_get(self, name, default=None):
        return self.session.get(name, default)

    def session_set(self, name, value):
        self.session[name] = value

    def session_pop(self, name):
        return self.session.pop(name, None)

    def build_absolute_uri(self, path=None):
        return urljoin(self.base, path or "")

    def redirect(self, url):
        return url

    def html(self, content):
        return content


def test_lego_social_auth_backend_logs_in_unchanged(compat):
    """The document's LegoOAuth2, unchanged, run by social-auth-core's own OAuth2 machinery and its
    default pipeline: auth URL → Gatehouse login + consent → callback → token → /api/v1/users/me/."""
    user, password, group = lego_person(compat)
    strategy = AppStrategy(LEGO_APP, {"SOCIAL_AUTH_LEGO_KEY": None, "SOCIAL_AUTH_LEGO_SECRET": None,
                                      "SOCIAL_AUTH_LEGO_API_URL": compat.gh.issuer + "/"})
    redirect_uri = strategy.build_absolute_uri("/complete/lego/")
    client = lego_client(compat, redirect_uri, legacy_redirect_state=True)
    strategy.settings["SOCIAL_AUTH_LEGO_KEY"] = client["client_id"]
    strategy.settings["SOCIAL_AUTH_LEGO_SECRET"] = client["client_secret"]

    # The "login with Lego" view: the backend builds the authorization URL and redirects to it.
    start = LegoOAuth2(strategy, redirect_uri="/complete/lego/")
    auth_url = start.start()
    assert auth_url.startswith(compat.gh.issuer + "/authorization/oauth2/authorize/?"), auth_url
    sent = query(auth_url)
    assert sent["client_id"] == client["client_id"] and sent["scope"] == "user", sent
    assert sent["redirect_uri"].startswith(redirect_uri), sent

    # The person signs in at Gatehouse and allows the app; Gatehouse sends the browser back.
    back, pages = Browser(compat.gh).authorize(auth_url, (user, password))
    assert any(p.form("#consent-form") is not None for p in pages), (back.status_code, parse_page(back).text("main"), auth_url)
    callback = back.headers.get("Location", "")
    assert back.status_code in (302, 303) and callback.startswith(redirect_uri), (
        back.status_code, callback, back.text[:1500])
    assert "error" not in query(callback), callback

    # The callback view: social-auth redeems the code, fetches the user data, runs the pipeline.
    strategy.data = query(callback)
    complete = LegoOAuth2(strategy, redirect_uri="/complete/lego/")
    app_user = complete.complete()
    assert isinstance(app_user, AppUser), app_user
    assert app_user.username == user["username"] and app_user.email == user["email"], vars(app_user)
    assert (app_user.first_name, app_user.last_name) == ("Ola", "Nordmann"), vars(app_user)
    social = AppSocialAuth.get_social_auth("lego", user["id"])
    assert social is not None and social.user is app_user, AppSocialAuth.entries
    assert social.extra_data["id"] == user["id"] and social.extra_data["expires_in"] > 0, social.extra_data
    token = social.extra_data["access_token"]
    me = assert_json(requests.get(compat.gh.url("/api/v1/users/oauth2_userdata/"), timeout=30,
                                  headers={"Authorization": "Bearer " + token}))
    check_lego_user(me, user, group, "member")

    # A second login finds the same app user through the association.
    strategy.data = {}
    again_url = LegoOAuth2(strategy, redirect_uri="/complete/lego/").start()
    browser = Browser(compat.gh)
    back, _ = browser.authorize(again_url, (user, password))
    strategy.data = query(back.headers["Location"])
    assert LegoOAuth2(strategy, redirect_uri="/complete/lego/").complete() is app_user


# ===================================================================================================
# dgp (document 001)
# ===================================================================================================
DGP_PROFILE_KEYS = {"id", "name", "email", "avatar_url", "idhash", "username"}
NEXT = f"https://{NEXT_HOST}/after-login?lang=en"


def public_key(server: Gatehouse) -> str:
    r = requests.get(server.issuer + "/auth/public-key", timeout=30)
    assert r.status_code == 200, r.text
    assert r.text.startswith("-----BEGIN PUBLIC KEY-----"), r.text[:100]
    return r.text


def verify_rs256(server: Gatehouse, token: str, pem: str | None = None) -> dict:
    """Verify a dgp token with PyJWT and the PEM from /auth/public-key (or the given one)."""
    assert jwt.get_unverified_header(token)["alg"] == "RS256", jwt.get_unverified_header(token)
    return jwt.decode(token, pem or public_key(server), algorithms=["RS256"], leeway=30,
                      options={"require": ["exp", "iat"]})


def dgp_check(server: Gatehouse, **params) -> dict:
    r = requests.get(server.issuer + "/auth/check?" + urlencode(params), timeout=30)
    return assert_json(r)


def dgp_login(server: Gatehouse, user: tuple, next_url: str = NEXT, browser: Browser | None = None) -> str:
    """Ask /auth/check for the providers, follow the "gatehouse" one, sign in: the browser ends at
    `next` with ?jwt=; returns the jwt."""
    check = dgp_check(server, next=next_url)
    assert check["authenticated"] is False, check
    url = check["providers"]["gatehouse"]["url"]
    r, _ = (browser or Browser(server)).authorize(url, user)
    params = location_query(r, next_url + "&")
    assert params["lang"] == "en" and params.get("jwt"), params
    return params["jwt"]


def test_dgp_check_login_and_profile(compat):
    user = compat.gh.create_user(email=unique("dgp") + "@openspending.example", name="Rufus Pollock",
                                 picture="https://openspending.example/rufus.png")
    # Not authenticated (no jwt, or a bad one): the providers, each with a login URL.
    for params in ({"next": NEXT}, {"jwt": "not-a-token", "next": NEXT}):
        body = dgp_check(compat.gh, **params)
        assert set(body) == {"authenticated", "providers"} and body["authenticated"] is False, body
        assert "gatehouse" in body["providers"], body
        for pid, entry in body["providers"].items():
            assert set(entry) == {"url"} and entry["url"].startswith(compat.gh.issuer + "/auth/login/" + pid), entry
            assert query(entry["url"])["next"] == NEXT, entry
    # The gatehouse login ends at next?jwt=…; the jwt is RS256 under /auth/public-key.
    browser = Browser(compat.gh)
    token = dgp_login(compat.gh, user, browser=browser)
    claims = verify_rs256(compat.gh, token)
    assert claims["userid"] == user[0]["id"], claims
    # Authenticated: the profile.
    body = dgp_check(compat.gh, jwt=token, next=NEXT)
    assert body == {"authenticated": True, "profile": body["profile"]}, body
    profile = body["profile"]
    assert set(profile) == DGP_PROFILE_KEYS, profile
    assert profile["id"] == user[0]["id"] and profile["username"] == user[0]["username"], profile
    assert (profile["name"], profile["email"], profile["avatar_url"]) == (
        "Rufus Pollock", user[0]["email"], "https://openspending.example/rufus.png"), profile
    assert profile["idhash"] and profile["idhash"] != profile["id"], profile
    assert dgp_check(compat.gh, jwt=token)["profile"]["idhash"] == profile["idhash"]  # stable
    # Still signed in: the end of the login flow issues a new jwt without asking for the password again.
    r = browser.get("/auth/finish?" + urlencode({"next": NEXT}))
    again = location_query(r, NEXT + "&")["jwt"]
    assert verify_rs256(compat.gh, again)["userid"] == user[0]["id"]
    # A tampered token is not authenticated.
    head, payload, sig = token.split(".")
    forged = ".".join((head, payload, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")))
    assert dgp_check(compat.gh, jwt=forged)["authenticated"] is False


def test_dgp_next_must_be_on_an_allowed_host(compat):
    user = compat.gh.create_user()
    for bad in ("https://evil.example.com/steal", "https://rp.example.com.evil.example/x",
                "javascript:alert(1)", "//evil.example.com/", "https://user@rp.example.com/x"):
        url = dgp_check(compat.gh, next=bad)["providers"]["gatehouse"]["url"]
        r, _ = Browser(compat.gh).authorize(url, user)
        assert r.status_code == 400 and "Location" not in r.headers, (bad, r.status_code, r.headers.get("Location"))
        # Nor at the end of a login that did start well.
        b = Browser(compat.gh)
        b.sign_in(user[0]["username"], user[1])
        r = b.get("/auth/finish?" + urlencode({"next": bad}))
        assert r.status_code == 400 and "Location" not in r.headers, (bad, r.status_code, r.headers.get("Location"))


def test_dgp_authorize_with_granted_permissions(compat):
    user = compat.gh.create_user()
    service = unique("storage-service-")
    compat.gh.cli("services", "create", service)
    compat.gh.cli("services", "grant", service, "--user", user[0]["username"], "--permission", "permission-x",
                  "permission-z")
    token = dgp_login(compat.gh, user)
    r = requests.get(compat.gh.issuer + "/auth/authorize?" + urlencode({"jwt": token, "service": service}), timeout=30)
    body = assert_json(r)
    assert set(body) == {"token", "userid", "permissions", "service"}, body
    assert body["userid"] == user[0]["id"] and body["service"] == service, body
    assert body["permissions"] == {"permission-x": True, "permission-z": True}, body
    claims = verify_rs256(compat.gh, body["token"])
    assert claims["userid"] == user[0]["id"] and claims["service"] == service, claims
    assert claims["permissions"] == body["permissions"], claims
    # Another user has none; an unknown service grants none.
    other = dgp_login(compat.gh, compat.gh.create_user())
    body = assert_json(requests.get(compat.gh.issuer + "/auth/authorize?" + urlencode(
        {"jwt": other, "service": service}), timeout=30))
    assert body["permissions"] == {}, body
    body = assert_json(requests.get(compat.gh.issuer + "/auth/authorize?" + urlencode(
        {"jwt": token, "service": unique("nosuch")}), timeout=30))
    assert body["permissions"] == {}, body
    # Without a valid user token: refused, no permissions.
    r = requests.get(compat.gh.issuer + "/auth/authorize?" + urlencode({"jwt": "x.y.z", "service": service}), timeout=30)
    assert r.status_code == 401 and r.json().get("permissions", {}) == {}, (r.status_code, r.text)
    assert "token" not in r.json(), r.text


def test_dgp_authorize_with_a_permissions_url(compat):
    user = compat.gh.create_user()
    token = dgp_login(compat.gh, user)
    services = {}
    for mode in ("ok", "error", "text", "slow"):
        services[mode] = unique(f"svc-{mode}-")
        compat.gh.cli("services", "create", services[mode], "--permissions-url", f"{compat.site.base}/perm/{mode}")

    def authorize(mode: str) -> dict:
        r = requests.get(compat.gh.issuer + "/auth/authorize?" + urlencode(
            {"jwt": token, "service": services[mode]}), timeout=60)
        body = assert_json(r)
        assert set(body) == {"token", "userid", "permissions", "service"}, body
        assert verify_rs256(compat.gh, body["token"])["permissions"] == body["permissions"]
        return body

    assert authorize("ok")["permissions"] == {"permission-x": True, "permission-y": False}
    asked = compat.site.seen("/perm/ok")
    assert asked and asked[-1][0] == {"service": services["ok"], "userid": user[0]["id"]}, asked
    # A service that fails, answers something else than a JSON object, or hangs: no permissions.
    assert authorize("error")["permissions"] == {}
    assert authorize("text")["permissions"] == {}
    started = time.monotonic()
    assert authorize("slow")["permissions"] == {}
    assert time.monotonic() - started < 30


def test_dgp_update_username_once(compat):
    user = compat.gh.create_user(email=unique("upd") + "@example.com")
    token = dgp_login(compat.gh, user)

    def update(**params) -> dict:
        return assert_json(requests.post(compat.gh.issuer + "/auth/update?" + urlencode({"jwt": token, **params}),
                                         timeout=30))

    # Other fields fail silently: {"success": true}, nothing changes.
    assert update(email="other@example.com") == {"success": True}
    profile = dgp_check(compat.gh, jwt=token)["profile"]
    assert profile["email"] == user[0]["email"] and profile["username"] == user[0]["username"], profile
    new = unique("chosen")
    assert update(username=new) == {"success": True}
    assert dgp_check(compat.gh, jwt=token)["profile"]["username"] == new
    second = update(username=unique("again"))
    assert second["success"] is False and isinstance(second.get("error"), str) and second["error"], second
    assert dgp_check(compat.gh, jwt=token)["profile"]["username"] == new
    assert update(name="Someone Else") == {"success": True}
    # The new username signs in.
    assert dgp_login(compat.gh, ({"username": new}, user[1]))
    # Without a valid token: not a success.
    r = requests.post(compat.gh.issuer + "/auth/update?" + urlencode({"jwt": "bad", "username": unique("x")}), timeout=30)
    assert r.json().get("success") is False, r.text


def test_dgp_public_key_verifies_tokens_and_is_stable(compat):
    pem = public_key(compat.gh)
    assert public_key(compat.gh) == pem
    user = compat.gh.create_user()
    token = dgp_login(compat.gh, user)
    assert verify_rs256(compat.gh, token, pem)["userid"] == user[0]["id"]
    other = rsa_pair()[1]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other, algorithms=["RS256"])


# ===================================================================================================
# doorkeeper (document 002)
# ===================================================================================================
AWESOME = "https://awesome.app/sign_in"
DK_TOKEN_KEYS = {"access_token", "token_type", "expires_in", "refresh_token", "scope", "created_at", "member"}


def koala_client(c: Compat, redirect_uri: str = AWESOME, grant_types=()) -> dict:
    """Like `rake "doorkeeper:create[…]"`: an application allowed every Koala scope."""
    return c.gh.create_client(scope=" ".join(DOORKEEPER_DEFAULT + DOORKEEPER_OPTIONAL), redirect_uris=[redirect_uri],
                              grant_types=grant_types)


def koala_code(c: Compat, client: dict, user: tuple, redirect_uri: str = AWESOME, **extra) -> requests.Response:
    """GET /api/oauth/authorize?client_id=…&redirect_uri=…&response_type=code, then sign in and allow."""
    url = c.gh.url("/api/oauth/authorize?" + urlencode(
        {"client_id": client["client_id"], "redirect_uri": redirect_uri, "response_type": "code", **extra}))
    r, _ = Browser(c.gh).authorize(url, user)
    return r


def check_member_token(c: Compat, body: dict, user: dict, scope: list, started: int):
    assert set(body) == DK_TOKEN_KEYS, body
    assert body["token_type"].lower() == "bearer" and body["expires_in"] > 0, body
    assert body["access_token"] and body["refresh_token"], body
    assert body["scope"].split() == scope, body
    assert isinstance(body["created_at"], int) and started - 5 <= body["created_at"] <= time.time() + 5, body
    assert body["member"] == {"id": user["id"], "name": "Martijn Casteel", "email": user["email"]}, body


def test_doorkeeper_authorization_code_json_and_form(compat):
    user = compat.gh.create_user(name="Martijn Casteel", email=unique("m") + "@svsticky.example")
    client = koala_client(compat)
    started = int(time.time())
    # The JSON body of the document.
    code = location_query(koala_code(compat, client, user), AWESOME + "?")["code"]
    r = requests.post(compat.gh.url("/api/oauth/token"), timeout=30, json={
        "grant_type": "authorization_code", "code": code, "client_id": client["client_id"],
        "client_secret": client["client_secret"], "redirect_uri": AWESOME})
    body = assert_json(r)
    # No scope asked: the default scopes.
    check_member_token(compat, body, user[0], DOORKEEPER_DEFAULT, started)
    # The same as a form, with optional scopes asked for.
    code = location_query(koala_code(compat, client, user, scope="member-read participant-read"), AWESOME + "?")["code"]
    r = requests.post(compat.gh.url("/api/oauth/token"), timeout=30, data={
        "grant_type": "authorization_code", "code": code, "client_id": client["client_id"],
        "client_secret": client["client_secret"], "redirect_uri": AWESOME})
    body = assert_json(r)
    check_member_token(compat, body, user[0], ["member-read", "participant-read"], started)
    # The refresh token works at the same endpoint, with the same shape.
    r = requests.post(compat.gh.url("/api/oauth/token"), timeout=30, json={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": client["client_id"],
        "client_secret": client["client_secret"]})
    check_member_token(compat, assert_json(r), user[0], ["member-read", "participant-read"], started)
    # Errors keep the OAuth shape.
    r = requests.post(compat.gh.url("/api/oauth/token"), timeout=30, json={
        "grant_type": "authorization_code", "code": code, "client_id": client["client_id"],
        "client_secret": client["client_secret"], "redirect_uri": AWESOME})
    assert assert_json(r, 400)["error"] == "invalid_grant", r.text
    r = requests.post(compat.gh.url("/api/oauth/token"), timeout=30, json={
        "grant_type": "client_credentials", "client_id": client["client_id"], "client_secret": "wrong"})
    assert assert_json(r, 401)["error"] == "invalid_client", r.text


def test_doorkeeper_out_of_band(compat):
    user = compat.gh.create_user(name="Martijn Casteel", email=unique("m") + "@svsticky.example")
    client = koala_client(compat, OOB)  # doorkeeper:create[Postman application, urn:ietf:wg:oauth:2.0:oob, …]
    started = int(time.time())
    r = koala_code(compat, client, user, OOB)
    assert r.status_code == 200, (r.status_code, r.headers.get("Location"))
    code = parse_page(r).text("#code")
    assert code, r.text[:2000]
    r = requests.post(compat.gh.url("/api/oauth/token"), timeout=30, json={
        "grant_type": "authorization_code", "code": code, "client_id": client["client_id"],
        "client_secret": client["client_secret"], "redirect_uri": OOB})
    check_member_token(compat, assert_json(r), user[0], DOORKEEPER_DEFAULT, started)


def test_doorkeeper_client_credentials_has_no_member(compat):
    client = koala_client(compat, grant_types=("client_credentials",))
    started = int(time.time())
    for kind in ("json", "data"):
        r = requests.post(compat.gh.url("/api/oauth/token"), timeout=30, **{kind: {
            "grant_type": "client_credentials", "client_id": client["client_id"],
            "client_secret": client["client_secret"]}})
        body = assert_json(r)
        assert set(body) == {"access_token", "token_type", "expires_in", "scope", "created_at"}, body
        assert body["token_type"].lower() == "bearer" and body["expires_in"] > 0, body
        assert body["scope"].split() == DOORKEEPER_DEFAULT, body
        assert started - 5 <= body["created_at"] <= time.time() + 5, body
        info = assert_json(requests.get(compat.gh.url("/api/oauth/token/info"), timeout=30,
                                        headers={"Authorization": "Bearer " + body["access_token"]}))
        assert info["resource_owner_id"] is None and info["application"] == {"uid": client["client_id"]}, info


def test_doorkeeper_token_info_and_revoke(compat):
    user = compat.gh.create_user(name="Martijn Casteel", email=unique("m") + "@svsticky.example")
    client = koala_client(compat)
    code = location_query(koala_code(compat, client, user), AWESOME + "?")["code"]
    token = assert_json(requests.post(compat.gh.url("/api/oauth/token"), timeout=30, data={
        "grant_type": "authorization_code", "code": code, "client_id": client["client_id"],
        "client_secret": client["client_secret"], "redirect_uri": AWESOME}))
    info_url = compat.gh.url("/api/oauth/token/info")
    info = assert_json(requests.get(info_url, headers={"Authorization": "Bearer " + token["access_token"]}, timeout=30))
    assert set(info) == {"resource_owner_id", "scope", "expires_in", "application", "created_at"}, info
    assert info["resource_owner_id"] == user[0]["id"], info
    assert info["scope"] == DOORKEEPER_DEFAULT, info
    assert 0 < info["expires_in"] <= token["expires_in"], info
    assert info["application"] == {"uid": client["client_id"]}, info
    assert isinstance(info["created_at"], int) and abs(info["created_at"] - token["created_at"]) <= 5, info
    # Revoke (client authenticated in the body, as Doorkeeper's clients do), then the token is dead.
    r = requests.post(compat.gh.url("/api/oauth/revoke"), timeout=30, data={
        "token": token["access_token"], "client_id": client["client_id"], "client_secret": client["client_secret"]})
    assert r.status_code == 200, r.text
    r = requests.get(info_url, headers={"Authorization": "Bearer " + token["access_token"]}, timeout=30)
    assert r.status_code == 401 and assert_json(r, 401)["error"] == "invalid_token", r.text
    # Revoking the refresh token too; then refreshing fails.
    r = requests.post(compat.gh.url("/api/oauth/revoke"), timeout=30, data={"token": token["refresh_token"]},
                      headers={"Authorization": basic_auth(client["client_id"], client["client_secret"])})
    assert r.status_code == 200, r.text
    r = requests.post(compat.gh.url("/api/oauth/token"), timeout=30, data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": client["client_id"],
        "client_secret": client["client_secret"]})
    assert assert_json(r, 400)["error"] == "invalid_grant", r.text
    assert requests.get(info_url, timeout=30).status_code == 401


# ===================================================================================================
# dot: django-oauth-toolkit + Django REST Framework (document 003)
# ===================================================================================================
CURL_FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json; indent=4"}
CURL_GET = {"Accept": "application/json; indent=4"}
DOT_DETAILS_KEYS = {"id", "username", "first_name", "last_name", "email"}


def dot_person(c: Compat) -> tuple[dict, str]:
    return c.gh.create_user(email=unique("abarto") + "@rest_oauth_social_test.example", given_name="Agustin",
                            family_name="Barto")


def my_api_app(c: Compat) -> dict:
    """The document's "my-api-app": public, password grant, client_id only."""
    return c.gh.create_client(scope="read write", public=True, allow_password_grant=True,
                              grant_types=("password", "refresh_token"))


def curl_password_grant(c: Compat, app: dict, user: tuple) -> dict:
    """The first curl of the document, byte for byte in its form."""
    data = (f"username={user[0]['username']}&password={requests.utils.quote(user[1], safe='')}"
            f"&client_id={app['client_id']}&grant_type=password")
    r = requests.post(c.gh.url("/o/token/"), data=data, headers=CURL_FORM, timeout=30)
    return assert_json(r)


def test_dot_password_grant_and_user_details(compat):
    user = dot_person(compat)
    app = my_api_app(compat)
    token = curl_password_grant(compat, app, user)
    assert set(token) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}, token
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0, token
    assert token["scope"] == "read write", token
    expected = {"id": user[0]["id"], "username": user[0]["username"], "first_name": "Agustin", "last_name": "Barto",
                "email": user[0]["email"]}
    # --head without a token: 401 with WWW-Authenticate: Bearer realm="api".
    r = requests.get(compat.gh.url("/user_details/"), headers=CURL_GET, timeout=30)
    assert r.status_code == 401, r.text
    assert r.headers.get("WWW-Authenticate") == 'Bearer realm="api"', r.headers
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    bearer = {**CURL_GET, "Authorization": "Bearer " + token["access_token"]}
    assert assert_json(requests.get(compat.gh.url("/user_details/"), headers=bearer, timeout=30)) == expected
    by_name = requests.get(compat.gh.url(f"/user_details_by_username/{user[0]['username']}/"), headers=bearer, timeout=30)
    assert assert_json(by_name) == expected
    # An unknown username, or another user's: 404.
    for name in ("foobar" + unique(""), dot_person(compat)[0]["username"]):
        r = requests.get(compat.gh.url(f"/user_details_by_username/{name}/"), headers=bearer, timeout=30)
        assert r.status_code == 404, (name, r.status_code, r.text)
    # A bad token is 401 on both.
    for path in ("/user_details/", f"/user_details_by_username/{user[0]['username']}/"):
        r = requests.get(compat.gh.url(path), headers={**CURL_GET, "Authorization": "Bearer nope"}, timeout=30)
        assert r.status_code == 401 and r.headers.get("WWW-Authenticate") == 'Bearer realm="api"', (path, r.headers)
    # The refresh token works at /o/token/ for the public client too.
    r = requests.post(compat.gh.url("/o/token/"), headers=CURL_FORM, timeout=30, data=urlencode(
        {"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": app["client_id"]}))
    assert assert_json(r)["scope"] == "read write", r.text
    # A public client that may not use the password grant is refused.
    other = compat.gh.create_client(scope="read write", public=True)
    r = requests.post(compat.gh.url("/o/token/"), headers=CURL_FORM, timeout=30, data=urlencode(
        {"username": user[0]["username"], "password": user[1], "client_id": other["client_id"],
         "grant_type": "password"}))
    assert r.status_code in (400, 401) and "access_token" not in r.json(), r.text


def test_dot_authorize_revoke_introspect(compat):
    user = dot_person(compat)
    redirect = "https://my-api.example.com/callback"
    client = compat.gh.create_client(scope="read write", redirect_uris=[redirect])
    url = compat.gh.url("/o/authorize/?" + urlencode({"client_id": client["client_id"], "redirect_uri": redirect,
                                                      "response_type": "code", "scope": "read", "state": "s1"}))
    r, _ = Browser(compat.gh).authorize(url, user)
    params = location_query(r, redirect + "?")
    assert params["state"] == "s1", params
    token = assert_json(requests.post(compat.gh.url("/o/token/"), timeout=30, data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": redirect,
        "client_id": client["client_id"], "client_secret": client["client_secret"]}))
    assert token["scope"] == "read", token
    auth = {"Authorization": basic_auth(client["client_id"], client["client_secret"])}
    live = assert_json(requests.post(compat.gh.url("/o/introspect/"), data={"token": token["access_token"]},
                                     headers=auth, timeout=30))
    assert live["active"] is True and live["scope"] == "read" and live["client_id"] == client["client_id"], live
    assert live.get("username") == user[0]["username"] or live.get("sub") == user[0]["id"], live
    r = requests.post(compat.gh.url("/o/revoke_token/"), timeout=30, data={
        "token": token["access_token"], "client_id": client["client_id"], "client_secret": client["client_secret"]})
    assert r.status_code == 200, r.text
    dead = assert_json(requests.post(compat.gh.url("/o/introspect/"), data={"token": token["access_token"]},
                                     headers=auth, timeout=30))
    assert dead == {"active": False}, dead
    r = requests.get(compat.gh.url("/user_details/"), headers={"Authorization": "Bearer " + token["access_token"]},
                     timeout=30)
    assert r.status_code == 401, r.text
    # Introspection needs client authentication.
    r = requests.post(compat.gh.url("/o/introspect/"), data={"token": token["access_token"]}, timeout=30)
    assert r.status_code == 401, r.text


def register_by_token(c: Compat, provider: str, **params) -> requests.Response:
    return requests.get(c.gh.url(f"/register-by-token/{provider}/?" + urlencode(params)), headers=CURL_GET, timeout=30)


EXCHANGE_FAILED = {"error": "unsuccessful_token_exchange",
                   "error_description": "Unable to complete token exchange with social backend."}


def test_dot_register_by_token(compat):
    site = compat.site
    upstream_token, person = site.person()
    seen_ids = []
    for provider, params in (("fake_social_site_with_params", {"username": person["username"]}),
                             ("fake_social_site", {})):
        for attempt in range(2):
            body = assert_json(register_by_token(compat, provider, access_token=upstream_token, **params))
            assert set(body) == {"access_token", "expires_in", "token_type", "refresh_token", "scope"}, body
            assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and body["refresh_token"], body
            assert body["scope"] == "read write", body  # the compat client's default scope
            details = assert_json(requests.get(compat.gh.url("/user_details/"), timeout=30,
                                               headers={"Authorization": "Bearer " + body["access_token"]}))
            assert set(details) == DOT_DETAILS_KEYS, details
            assert details["email"] == person["email"], details
            seen_ids.append((provider, details["id"], details["username"]))
            claims = compat.gh.decode(body["access_token"])
            assert claims["client_id"] == compat.compat_client["client_id"], claims
    # The site was asked with the token as Bearer, at the username's URL for the provider with params.
    asked = site.seen(f"/users/{person['username']}/")
    assert asked and all(h.get("Authorization") == "Bearer " + upstream_token for _, h in asked), asked
    assert site.seen("/user_details/"), site.requests
    # One user per provider account: created on first sight, the same one the second time.
    with_params = {uid for p, uid, _ in seen_ids if p == "fake_social_site_with_params"}
    without = {uid for p, uid, _ in seen_ids if p == "fake_social_site"}
    assert len(with_params) == 1 and len(without) == 1, seen_ids
    # The user made on first sight carries the site's username (fresh here, so not taken).
    assert seen_ids[0][2] == person["username"], seen_ids


def test_dot_register_by_token_failures(compat):
    site = compat.site
    token, person = site.person()
    _, stranger = site.person()
    cases = {
        "unknown upstream token": ("fake_social_site", {"access_token": "forged"}),
        "another person's username": ("fake_social_site_with_params",
                                      {"access_token": token, "username": stranger["username"]}),
        "missing access_token": ("fake_social_site", {}),
    }
    for name, (provider, params) in cases.items():
        r = register_by_token(compat, provider, **params)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.json() == EXCHANGE_FAILED, (name, r.text)
    # Changed on purpose by issue 10: a provider that is not in compat_exchange_providers (here one that does
    # not exist) answers 404 like any unknown path, and request parameters never identify anyone: without
    # the template parameter the templated fetch is skipped and the token's owner (from introspection) gets
    # the token.
    r = register_by_token(compat, "facebook", access_token=token)
    assert r.status_code == 404 and r.json() == {"detail": "Not found."}, (r.status_code, r.text)
    body = assert_json(register_by_token(compat, "fake_social_site_with_params", access_token=token))
    details = assert_json(requests.get(compat.gh.url("/user_details/"), timeout=30,
                                       headers={"Authorization": "Bearer " + body["access_token"]}))
    assert details["email"] == person["email"], (details, person)


# ===================================================================================================
# dgp-oauth2's environment variables; lego tokens that expired; profiles that are off
# ===================================================================================================
@dataclass
class DgpEnv:
    gh: Server
    private_pem: str
    public_pem: str
    user: tuple
    compat_client: dict


@pytest.fixture(scope="module")
def dgp_env(tmp):
    """`--compat lego,dgp` configured the dgp-oauth2 way: PRIVATE_KEY/PUBLIC_KEY, GOOGLE_*/GITHUB_*,
    DATABASE_URL (SQLAlchemy spelling) and EXTERNAL_ADDRESS, no --database or --issuer; access tokens
    live 2 s (for the lego refresh test)."""
    private_pem, public_pem = rsa_pair()
    port = free_port()
    issuer = f"http://localhost:{port}"
    made = {}

    def setup(s: Server) -> list[str]:
        made["user"] = s.create_user(name="Env User", email=unique("env") + "@example.com")
        # lego token-auth needs a compat client allowed the password grant (issue 10: else no start).
        made["client"] = s.create_client(name="first-party", allow_password_grant=True)
        return ["--compat-client-id", made["client"]["client_id"]]

    env = server_env(PRIVATE_KEY=private_pem, PUBLIC_KEY=public_pem, GOOGLE_KEY="google-id", GOOGLE_SECRET="g-secret",
                     GITHUB_KEY="github-id", GITHUB_SECRET="gh-secret",
                     DATABASE_URL=f"sqlite+pysqlite:///{tmp}/dgp-env.sqlite", EXTERNAL_ADDRESS=issuer)
    with running(tmp, "dgp-env", "--compat", "lego,dgp", "--compat-next-hosts", NEXT_HOST,
                 "--access-token-ttl", "2s", env=env, database_flag=False, setup=setup, port=port,
                 issuer=issuer) as server:
        yield DgpEnv(server, private_pem, public_pem, made["user"], made["client"])


def test_dgp_environment_variables_are_honoured(dgp_env):
    gh = dgp_env.gh
    # EXTERNAL_ADDRESS is the issuer.
    assert gh.metadata()["issuer"] == gh.issuer
    # PUBLIC_KEY is what /auth/public-key serves.
    assert public_key(gh).strip() == dgp_env.public_pem.strip()
    # GOOGLE_KEY/GITHUB_KEY add those providers next to ours.
    providers = dgp_check(gh, next=NEXT)["providers"]
    assert set(providers) == {"google", "github", "gatehouse"}, providers
    for pid, entry in providers.items():
        assert entry["url"].startswith(gh.issuer + "/auth/login/" + pid + "?"), entry
    # DATABASE_URL: the user made with the CLI in that database signs in; PRIVATE_KEY signs the tokens.
    token = dgp_login(gh, dgp_env.user)
    claims = jwt.decode(token, dgp_env.public_pem, algorithms=["RS256"], options={"require": ["exp", "iat"]})
    assert claims["userid"] == dgp_env.user[0]["id"], claims
    service = unique("svc-")
    gh.cli("services", "create", service)
    gh.cli("services", "grant", service, "--user", dgp_env.user[0]["username"], "--permission", "read")
    body = assert_json(requests.get(gh.issuer + "/auth/authorize?" + urlencode({"jwt": token, "service": service}),
                                    timeout=30))
    assert body["permissions"] == {"read": True}, body
    claims = jwt.decode(body["token"], dgp_env.public_pem, algorithms=["RS256"], leeway=30)
    assert claims["permissions"] == {"read": True} and claims["service"] == service, claims


def test_dgp_refuses_a_public_key_that_does_not_match(tmp):
    private_pem, _ = rsa_pair()
    _, other_public = rsa_pair()
    port = free_port()
    env = server_env(PRIVATE_KEY=private_pem, PUBLIC_KEY=other_public)
    p = subprocess.run([str(BIN), "serve", "--port", str(port), "--compat", "dgp", "--database",
                        f"sqlite://{tmp}/dgp-mismatch.sqlite"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, p.stdout + p.stderr
    assert "PUBLIC_KEY" in p.stdout + p.stderr, p.stdout + p.stderr


def test_lego_refresh_refuses_an_expired_token(dgp_env):
    gh = dgp_env.gh
    user, password = dgp_env.user[0], dgp_env.user[1]
    token = assert_json(requests.post(gh.issuer + "/api/token-auth/", timeout=30,
                                      data={"username": user["username"], "password": password}))["token"]
    fresh = assert_json(requests.post(gh.issuer + "/api/token-auth/refresh", json={"token": token}, timeout=30))["token"]

    def me(t: str) -> int:
        r = requests.get(gh.issuer + "/api/v1/users/me/", headers={"Authorization": "JWT " + t}, timeout=30)
        return r.status_code

    assert me(fresh) == 200
    # Both outlive their 2 s: wait until the API refuses them (a side-effect-free request, unlike a refresh).
    for old in (token, fresh):
        wait_until(lambda t=old: me(t) == 401, "the API to refuse a token past its 2 s lifetime", timeout=10,
                   interval=0.1)
    for old in (token, fresh):
        r = requests.post(gh.issuer + "/api/token-auth/refresh", json={"token": old}, timeout=30)
        assert r.status_code == 400 and "token" not in assert_json(r, 400), r.text
        r = requests.get(gh.issuer + "/api/v1/users/me/", headers={"Authorization": "JWT " + old}, timeout=30)
        assert r.status_code == 401, r.text


ROUTES = {
    "lego": [("POST", "/api/token-auth/"), ("POST", "/api/token-auth/refresh"), ("POST", "/api/token-auth/refresh/"),
             ("OPTIONS", "/api/token-auth/"), ("GET", "/authorization/oauth2/authorize/"),
             ("POST", "/authorization/oauth2/authorize/"), ("POST", "/authorization/oauth2/token/"),
             ("GET", "/api/v1/users/me/"), ("GET", "/api/v1/users/oauth2_userdata/")],
    "dgp": [("GET", "/auth/check"), ("GET", "/auth/login/gatehouse"), ("GET", "/auth/finish"),
            ("GET", "/auth/authorize"), ("POST", "/auth/update"), ("GET", "/auth/public-key")],
    "doorkeeper": [("GET", "/api/oauth/authorize"), ("POST", "/api/oauth/authorize"), ("POST", "/api/oauth/token"),
                   ("POST", "/api/oauth/revoke"), ("GET", "/api/oauth/token/info")],
    "dot": [("GET", "/o/authorize/"), ("POST", "/o/authorize/"), ("POST", "/o/token/"), ("POST", "/o/revoke_token/"),
            ("POST", "/o/introspect/"), ("GET", "/user_details/"), ("GET", "/user_details_by_username/someone/"),
            ("GET", "/register-by-token/fake_social_site/?access_token=x")],
}


@pytest.fixture(scope="module")
def doorkeeper_dot(tmp, site):
    """`--compat doorkeeper,dot` only (register-by-token for the fake site's `fake_social_site`, which since
    issue 10 must be listed in --compat-exchange-providers to be served at all)."""
    made = {}

    def setup(s: Server) -> list[str]:
        made["client"] = s.create_client(name="first-party", grant_types=(TOKEN_EXCHANGE, "refresh_token"))
        p = s.run("providers", "add", "--id", "fake_social_site", "--kind", "oauth2", "--authorize-url",
                  site.base + "/o/authorize/", "--token-url", site.base + "/o/token/", "--userinfo-url",
                  site.base + "/user_details/", "--allow-foreign-tokens", "--client-id", SITE_CLIENT_ID,
                  "--client-secret-stdin", stdin=SITE_CLIENT_SECRET)
        assert p.returncode == 0, p.stderr
        return ["--compat-client-id", made["client"]["client_id"]]

    with running(tmp, "doorkeeper-dot", "--compat", "doorkeeper,dot", "--compat-exchange-providers",
                 "fake_social_site", setup=setup) as server:
        yield server


def status(server: Gatehouse, method: str, path: str) -> int:
    return requests.request(method, server.issuer + path, allow_redirects=False, timeout=30,
                            headers={"Origin": CORS_ORIGIN}).status_code


def test_profiles_that_are_off_expose_none_of_their_routes(gh, compat, dgp_env, doorkeeper_dot):
    servers = {
        "no --compat": (gh, set()),
        "--compat lego,dgp,doorkeeper,dot": (compat.gh, {"lego", "dgp", "doorkeeper", "dot"}),
        "--compat lego,dgp": (dgp_env.gh, {"lego", "dgp"}),
        "--compat doorkeeper,dot": (doorkeeper_dot, {"doorkeeper", "dot"}),
    }
    wrong = []
    for title, (server, on) in servers.items():
        for profile, routes in ROUTES.items():
            for method, path in routes:
                code = status(server, method, path)
                if (profile in on) == (code == 404):
                    wrong.append(f"{title}: {method} {path} ({profile} {'on' if profile in on else 'off'}) -> {code}")
    assert not wrong, "\n".join(wrong)
    # The core endpoints are there either way.
    for server, _ in servers.values():
        assert status(server, "GET", "/.well-known/openid-configuration") == 200
