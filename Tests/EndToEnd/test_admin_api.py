"""The admin REST API (`/admin/v1`) driven over HTTP as an operator's script would: Bearer tokens with
`gatehouse:admin` / `gatehouse:admin:read` (a client's, or a user's holding the permission `admin` /
`admin:read` of the service `gatehouse`), RFC 9457 problem details, ETag / If-Match, keyset pagination, and
what each change does to the rest of the server (a disabled user cannot sign in and loses their tokens, a
rotated secret stops working, a revoked key leaves the JWKS, ...), all recorded in the audit log.

Every admin API response (and every well-formed request) is validated against the repository's OpenAPI
document, Sources/GatehouseServer/Admin/openapi.json, with openapi-core (`checked`).

One server for the module, on its own database (a fresh SQLite file, or a fresh PostgreSQL database when the
suite runs on PostgreSQL), with a webhook receiver for `audit.*` events so the outbox has events to list."""

import json
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import bcrypt
import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from conftest import (ROOT, Browser, Gatehouse, Server, basic_auth, free_port, oauth_error, own_database, parse_page,
                      unique, wait_until)

# The document marks optional query parameters `allowEmptyValue` (empty counts as absent); openapi-core warns
# on every request that the keyword is deprecated in OpenAPI 3.x.
pytestmark = pytest.mark.filterwarnings("ignore:Use of allowEmptyValue property is deprecated:DeprecationWarning")

SPEC_PATH = ROOT / "Sources" / "GatehouseServer" / "Admin" / "openapi.json"
BASE = "/admin/v1"
HOOK_SECRET = "e2e-admin-hook-" + secrets.token_hex(8)
ADMIN = "gatehouse:admin"
ADMIN_READ = "gatehouse:admin:read"


# --- the OpenAPI document and validation ----------------------------------------------------------------
class _Spec:
    """openapi.json, read again whenever the file changes (another helper may still be writing it)."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp = None
        self._app: OpenAPI | None = None
        self.document: dict = {}

    def app(self) -> OpenAPI:
        st = self.path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            document = json.loads(self.path.read_text())
            if not document.get("paths"):
                pytest.fail(f"{self.path} has no paths yet (still the placeholder): cannot validate against it")
            # The document names the API's servers as it likes; the test server's origin is ours, so keep only
            # the path of each server URL (openapi-core then matches paths only).
            spec = json.loads(json.dumps(document))
            servers = spec.get("servers") or [{"url": "/"}]
            spec["servers"] = [dict(s, url=urlsplit(s["url"]).path or "/") for s in servers]
            # openapi-core reads only a few media types as JSON; these are JSON too (RFC 9457, RFC 7396).
            config = Config(extra_media_type_deserializers={
                t: lambda value, **_: json.loads(value)
                for t in ("application/problem+json", "application/merge-patch+json")})
            self._app = OpenAPI.from_dict(spec, config=config)
            self.document = document
            self._stamp = stamp
        return self._app

    def declares(self, method: str, path: str) -> bool:
        self.app()
        for server in self.document.get("servers") or [{"url": "/"}]:
            prefix = urlsplit(server["url"]).path.rstrip("/")
            if path.startswith(prefix) and method.lower() in self.document["paths"].get(path[len(prefix):], {}):
                return True
        return False


SPEC = _Spec(SPEC_PATH)


def checked(r: requests.Response, *, request: bool = True) -> requests.Response:
    """Validates the response (and, with `request`, the request that was sent) against openapi.json; returns
    the response. Requests that are wrong on purpose (bad bodies, missing tokens) pass request=False: only the
    answer to them must still be what the document says."""
    app = SPEC.app()
    openapi_request = RequestsOpenAPIRequest(r.request)
    if request:
        try:
            app.validate_request(openapi_request)
        except Exception as e:  # openapi-core raises one of several error types
            pytest.fail(f"request {r.request.method} {r.request.url} does not match openapi.json: {e!r}\n"
                        f"{getattr(e, '__cause__', '')!r}")
    try:
        app.validate_response(openapi_request, RequestsOpenAPIResponse(r))
    except Exception as e:
        pytest.fail(f"response to {r.request.method} {r.request.url} ({r.status_code}) does not match openapi.json: "
                    f"{e!r}\n{getattr(e, '__cause__', '')!r}\n{r.text[:1500]}")
    return r


# --- calling the API ---------------------------------------------------------------------------------------
_NO_BODY = object()


class Api:
    """Admin API calls with one Bearer token (None: no Authorization header)."""

    def __init__(self, gh: Gatehouse, token: str | None, renew=None):
        self.gh = gh
        self.token = token
        self._renew = renew

    def renew(self):
        self.token = self._renew()

    def url(self, path: str) -> str:
        return self.gh.issuer + BASE + path

    def call(self, method: str, path: str, expect: int | None = None, *, body=_NO_BODY, data=None,
             headers: dict | None = None, params=None, valid: bool = True) -> requests.Response:
        h = {}
        if self.token is not None:
            h["Authorization"] = "Bearer " + self.token
        h.update(headers or {})
        kw = {}
        if body is not _NO_BODY:
            kw["json"] = body
        r = requests.request(method, self.url(path), data=data, headers=h, params=params, timeout=30, **kw)
        assert r.status_code < 500, (method, path, r.status_code, r.text)
        checked(r, request=valid)
        if expect is not None:
            assert r.status_code == expect, (method, path, r.status_code, r.text[:2000])
        return r

    def get(self, path, expect=200, **kw):
        return self.call("GET", path, expect, **kw)

    def post(self, path, body=_NO_BODY, expect=None, **kw):
        return self.call("POST", path, expect, body=body, **kw)

    def patch(self, path, body=_NO_BODY, expect=None, **kw):
        return self.call("PATCH", path, expect, body=body, **kw)

    def delete(self, path, expect=None, **kw):
        return self.call("DELETE", path, expect, **kw)

    def walk(self, path: str, params: dict | None = None, limit: int = 50) -> list[dict]:
        """Every item of a paged list, following next_cursor."""
        items, cursor = [], None
        for _ in range(1000):
            p = dict(params or {}, limit=limit)
            if cursor:
                p["cursor"] = cursor
            page = self.get(path, params=p).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        pytest.fail(f"{path}: more than 1000 pages")


def q(value: str) -> str:
    """A path segment."""
    return quote(value, safe="")


def problem(r: requests.Response, status: int, field: str | None = None) -> dict:
    """An RFC 9457 problem details answer with `status` (and a field error naming `field`)."""
    assert r.status_code == status, (r.status_code, r.text[:2000])
    assert r.headers.get("Content-Type", "").split(";")[0] == "application/problem+json", r.headers
    body = r.json()
    assert body.get("type") == "about:blank", body
    assert body.get("status") == status, body
    # (That the title is the status phrase is test_problem_titles_are_the_status_phrases': one bug, one test.)
    assert isinstance(body.get("title"), str), body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if status == 422:
        assert body.get("errors") and all(set(e) >= {"field", "message"} for e in body["errors"]), body
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], (field, body)
    return body


class Soft:
    """Collects the failures of independent checks (cases of a table), so that one server bug does not hide
    the next; `done()` fails with all of them."""

    def __init__(self):
        self.failures: list[str] = []

    @contextmanager
    def check(self, label):
        try:
            yield
        except AssertionError as e:
            self.failures.append(f"{label}: {e}")

    def done(self):
        assert not self.failures, "\n".join(self.failures)


def challenge(r: requests.Response) -> str:
    value = r.headers.get("WWW-Authenticate", "")
    assert value.startswith("Bearer"), r.headers
    return value


# --- a webhook receiver for audit.* events -------------------------------------------------------------------
class HookReceiver:
    """Answers 204 to every delivery, except 500 to events about a username starting with `hookfail`."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                with receiver.lock:
                    receiver.bodies.append(body)
                fail = str((body.get("data") or {}).get("username", "")).startswith("hookfail")
                self.send_response(500 if fail else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --- the module's server ---------------------------------------------------------------------------------------
@dataclass
class Env:
    server: Server
    gh: Gatehouse
    ops: dict        # a client with gatehouse:admin (client_credentials)
    admin: Api       # ops's token
    reader_client: dict
    reader: Api      # a client token with gatehouse:admin:read only
    pw: dict         # a password-grant client that may ask for the admin scopes and openid
    app: dict        # a password-grant client with openid and profile only (users' ordinary tokens)
    hooks: HookReceiver

    def cc_token(self, client: dict, scope: str | None = None, secret: str | None = None) -> str:
        form = {"grant_type": "client_credentials"}
        if scope:
            form["scope"] = scope
        r = self.gh.token(client, secret, **form)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def password_token(self, client: dict, username: str, password: str, scope: str) -> dict:
        r = self.gh.token(client, grant_type="password", username=username, password=password, scope=scope)
        assert r.status_code == 200, r.text
        return r.json()

    def new_user(self, password: str | None = None, **fields) -> tuple[dict, str]:
        """A user made through the API (with a random password unless one is given)."""
        password = password or secrets.token_urlsafe(15)
        body = {"username": unique("u"), "password": password, **fields}
        return self.admin.post("/users", body, 201).json(), password

    def audit(self, **filters) -> list[dict]:
        return self.admin.get("/audit", params=dict(filters, limit=200)).json()["items"]

    def audited(self, action: str, target: str, actor: str | None = None) -> dict:
        """The newest audit event `action` on `target`, by `actor` (defaults to the ops client)."""
        actor = actor or "client:" + self.ops["client_id"]
        events = self.audit(action=action, target=target)
        assert events, f"no audit event {action} on {target}"
        assert events[0]["actor"] == actor, events[0]
        return events[0]

    def active(self, token: str) -> bool:
        return self.gh.introspect(token, self.ops)["active"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("admin-api")
    hooks = HookReceiver()
    config = tmp / "config.json"
    config.write_text(json.dumps({"webhooks": [{"url": hooks.url, "secret": HOOK_SECRET, "events": ["audit.*"]}]}))
    port = free_port()
    try:
        with own_database(tmp) as database:
            server = Server(database, tmp, "--issuer", f"http://127.0.0.1:{port}", "--config", str(config),
                            "--webhook-retry-base", "1s", port=port)
            try:
                gh = server.gh
                ops = gh.cli("clients", "create", "--name", unique("ops-"), "--grant-type", "client_credentials",
                             "--scope", ADMIN)
                reader = gh.cli("clients", "create", "--name", unique("ro-"), "--grant-type", "client_credentials",
                                "--scope", ADMIN_READ)
                pw = gh.cli("clients", "create", "--name", unique("pw-"), "--allow-password-grant",
                            "--scope", f"openid {ADMIN} {ADMIN_READ}")
                app = gh.cli("clients", "create", "--name", unique("app-"), "--allow-password-grant",
                             "--scope", "openid profile")
                e = Env(server, gh, ops, None, reader, None, pw, app, hooks)
                e.admin = Api(gh, e.cc_token(ops, ADMIN), renew=lambda: e.cc_token(ops, ADMIN))
                e.reader = Api(gh, e.cc_token(reader, ADMIN_READ))
                yield e
            finally:
                server.stop()
    finally:
        hooks.stop()


# --- the document ------------------------------------------------------------------------------------------------
def test_openapi_document_is_served_without_auth_and_is_the_repository_file(env):
    r = requests.get(env.admin.url("/openapi.json"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json", r.headers
    assert r.json() == json.loads(SPEC_PATH.read_text()), "the served document differs from the repository's"
    if SPEC.declares("GET", BASE + "/openapi.json"):
        checked(r, request=False)
    doc = r.json()
    assert doc["openapi"].startswith("3.1"), doc.get("openapi")
    assert doc.get("paths"), "the served document has no paths (still the placeholder)"


# --- authentication and authorisation --------------------------------------------------------------------------
def test_no_token_or_garbage_token_is_401_with_a_bearer_challenge(env):
    anonymous = Api(env.gh, None)
    r = anonymous.get("/users", expect=None, valid=False)
    problem(r, 401)
    assert "error=" not in challenge(r), "no credentials: the challenge names no error (RFC 6750 §3.1)"
    for garbage in ["garbage", "eyJhbGciOiJFUzI1NiJ9.e30.c2ln", env.admin.token[:-4] + "AAAA"]:
        r = Api(env.gh, garbage).get("/users", expect=None, valid=False)
        problem(r, 401)
        assert 'error="invalid_token"' in challenge(r), r.headers
    # Never in the URL (RFC 6750 §2.3 is not supported): 400 invalid_request, even with a valid token.
    r = anonymous.get("/stats", expect=None, valid=False, params={"access_token": env.admin.token})
    problem(r, 400)
    assert 'error="invalid_request"' in challenge(r), r.headers
    # A Basic header is not a Bearer token.
    r = anonymous.get("/stats", expect=None, valid=False,
                      headers={"Authorization": basic_auth(env.ops["client_id"], env.ops["client_secret"])})
    problem(r, 401)
    challenge(r)


def test_problem_titles_are_the_status_phrases(env):
    """RFC 9457 §4.2.1: with type about:blank, the title SHOULD be the HTTP status phrase."""
    answers = {
        401: Api(env.gh, None).get("/users", expect=None, valid=False),
        403: env.reader.post("/groups", {"name": unique("g")}, valid=False),
        404: env.admin.get("/users/" + unique("nobody"), expect=None),
        409: env.admin.delete("/scopes/openid"),
        412: env.admin.patch("/clients/" + q(env.ops["client_id"]), {"name": "x"}, headers={"If-Match": '"stale"'}),
        415: env.admin.post("/groups", data="name=x", headers={"Content-Type": "text/plain"}, valid=False),
        422: env.admin.post("/groups", {"name": unique("g"), "extra": 1}, valid=False),
        400: env.admin.post("/groups", data="{", headers={"Content-Type": "application/json"}, valid=False),
    }
    titles = {status: r.json().get("title") for status, r in answers.items()}
    for status, r in answers.items():
        problem(r, status)
    # RFC 9110 §15 renamed 413 and 422 ("Content Too Large", "Unprocessable Content"); Python's HTTPStatus
    # still has the RFC 7231 / 4918 names.
    rfc9110 = {413: "Content Too Large", 422: "Unprocessable Content"}
    assert titles == {status: rfc9110.get(status, HTTPStatus(status).phrase) for status in answers}, titles


def test_token_without_admin_scope_is_403_insufficient_scope(env):
    plain_scope = unique("plain")
    env.admin.post("/scopes", {"name": plain_scope, "description": "no admin"}, 201)
    client = env.admin.post("/clients", {"name": unique("plain-"), "grant_types": ["client_credentials"],
                                         "scope": plain_scope}, 201).json()
    token = env.cc_token(client, plain_scope)
    api = Api(env.gh, token)
    r = api.get("/users", expect=None, valid=False)
    problem(r, 403)
    c = challenge(r)
    assert 'error="insufficient_scope"' in c and ADMIN_READ in c, c
    r = api.post("/groups", {"name": unique("g")}, valid=False)
    problem(r, 403)
    assert 'error="insufficient_scope"' in challenge(r) and ADMIN in challenge(r)
    # A token for another audience (RFC 8707 resource) is not one for this API, even with the admin scope.
    elsewhere = env.admin.post("/clients", {"name": unique("aud-"), "grant_types": ["client_credentials"],
                                            "scope": ADMIN, "resources": ["https://api.example.com"]}, 201).json()
    r = env.gh.token(elsewhere, grant_type="client_credentials", scope=ADMIN, resource="https://api.example.com")
    assert r.status_code == 200, r.text
    assert env.gh.decode(r.json()["access_token"], audience="https://api.example.com")["scope"] == ADMIN
    r = Api(env.gh, r.json()["access_token"]).get("/users", expect=None, valid=False)
    problem(r, 401)
    assert 'error="invalid_token"' in challenge(r), r.headers


def test_read_scope_reads_but_cannot_write(env):
    reader = env.reader
    assert reader.get("/users").json()["items"] is not None
    head = requests.head(reader.url("/stats"), headers={"Authorization": "Bearer " + reader.token}, timeout=10)
    assert head.status_code == 200 and head.content == b"", (head.status_code, head.headers)
    reader.get("/stats")
    reader.get("/clients")
    user, _ = env.new_user()
    etag = reader.get(f"/users/{q(user['id'])}").headers["ETag"]
    for method, path, body in [("POST", "/users", {"username": unique("ro")}),
                               ("PATCH", f"/users/{q(user['id'])}", {"name": "Changed"}),
                               ("DELETE", f"/users/{q(user['id'])}", _NO_BODY),
                               ("POST", f"/users/{q(user['id'])}/disable", _NO_BODY),
                               ("POST", "/keys/rotate", {}),
                               ("DELETE", "/scopes/openid", _NO_BODY)]:
        r = reader.call(method, path, body=body, headers={"If-Match": etag} if method != "POST" else None,
                        valid=False)
        problem(r, 403)
        assert 'error="insufficient_scope"' in challenge(r) and f'scope="{ADMIN}"' in challenge(r), r.headers
    assert env.admin.get(f"/users/{q(user['id'])}").json() == user, "a refused write changed nothing"


def test_user_tokens_need_the_permission_and_lose_it_at_once(env):
    user, password = env.new_user()
    name = user["username"]
    # No permission: the token endpoint refuses either admin scope.
    for scope in (ADMIN, ADMIN_READ):
        r = env.gh.token(env.pw, grant_type="password", username=name, password=password, scope=scope)
        assert r.status_code == 400 and r.json()["error"] in ("access_denied", "invalid_scope"), r.text
    # admin:read: reads, cannot write, cannot get the write scope.
    env.gh.cli("services", "grant", "gatehouse", "--user", name, "--permission", "admin:read")
    r = env.gh.token(env.pw, grant_type="password", username=name, password=password, scope=ADMIN)
    assert r.status_code == 400 and r.json()["error"] in ("access_denied", "invalid_scope"), r.text
    read = Api(env.gh, env.password_token(env.pw, name, password, ADMIN_READ)["access_token"])
    read.get("/users", params={"query": name})
    problem(read.post("/groups", {"name": unique("g")}, valid=False), 403)
    # admin: writes, and the change is recorded as the user's.
    env.gh.cli("services", "grant", "gatehouse", "--user", name, "--permission", "admin")
    token = env.password_token(env.pw, name, password, ADMIN)
    assert set(token["scope"].split()) == {ADMIN}, token
    writer = Api(env.gh, token["access_token"])
    group = unique("ug")
    writer.post("/groups", {"name": group}, 201)
    env.audited("group.created", "group:" + group, actor="user:" + user["id"])
    grants = env.admin.get("/services/gatehouse/grants", params={"limit": 200}).json()["items"]
    mine = [g for g in grants if g["user_id"] == user["id"]]
    assert mine and set(mine[0]["permissions"]) == {"admin", "admin:read"}, grants
    # Revoking the permission ends both tokens' use at once, though they have not expired.
    env.admin.delete(f"/services/gatehouse/grants/{q(name)}", 204)
    r = writer.post("/groups", {"name": unique("ug")}, valid=False)
    problem(r, 403)
    problem(writer.get("/users", expect=None, valid=False), 403)
    problem(read.get("/users", expect=None, valid=False), 403)
    assert env.active(token["access_token"]), "the token itself is still valid: only its admin use ended"
    env.audited("service.permissions_revoked", "service:gatehouse")
    # And a new one cannot be had.
    r = env.gh.token(env.pw, grant_type="password", username=name, password=password, scope=ADMIN_READ)
    assert r.status_code == 400 and r.json()["error"] in ("access_denied", "invalid_scope"), r.text


# --- users --------------------------------------------------------------------------------------------------------
def test_create_user_location_etag_and_duplicate(env):
    username = unique("Create")
    body = {"username": username, "email": f"{username}@Example.com", "name": "Ada Lovelace",
            "given_name": "Ada", "family_name": "Lovelace", "picture": "https://example.com/ada.png",
            "phone_number": "+44 20 7946 0000", "email_verified": True, "password": "correct horse battery"}
    r = env.admin.post("/users", body, 201)
    user = r.json()
    assert r.headers["Location"] == f"{BASE}/users/{user['id']}", r.headers
    etag = r.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2, etag
    assert user["username"] == username and user["email"] == body["email"] and user["email_verified"] is True
    assert user["given_name"] == "Ada" and user["phone_number"] == body["phone_number"], user
    assert user["has_password"] is True and user["disabled"] is False and user["disabled_at"] is None, user
    assert "password" not in user and "password_hash" not in user and "password" not in r.text.lower().replace(
        "has_password", "").replace("password_reset_required", ""), r.text
    # Location leads to it, with the same ETag.
    r2 = requests.get(env.gh.issuer + r.headers["Location"], headers={"Authorization": "Bearer " + env.admin.token},
                      timeout=10)
    checked(r2)
    assert r2.status_code == 200 and r2.json() == user and r2.headers["ETag"] == etag, r2.text
    assert r2.headers.get("Cache-Control") == "no-store", r2.headers
    env.audited("user.created", "user:" + user["id"])
    # Usernames are unique case-insensitively.
    problem(env.admin.post("/users", {"username": username}), 409)
    problem(env.admin.post("/users", {"username": username.upper()}), 409)
    # The user signs in with the password given.
    env.password_token(env.app, username, body["password"], "openid")


def test_create_user_validation(env):
    cases = [
        ({}, "username"),
        ({"username": "has space"}, "username"),
        ({"username": ""}, "username"),
        ({"username": "x" * 151}, "username"),
        ({"username": unique("v"), "email": "not-an-email"}, "email"),
        ({"username": unique("v"), "password": "short"}, "password"),
        ({"username": unique("v"), "picture": "javascript:alert(1)"}, "picture"),
        ({"username": unique("v"), "email_verified": True}, "email_verified"),
        ({"username": unique("v"), "email_verified": "yes"}, "email_verified"),
        ({"username": 42}, "username"),
        ({"username": unique("v"), "password_hash": "$1$notbcrypt"}, "password_hash"),
        ({"username": unique("v"), "password": "long enough pw", "password_hash": bcrypt.hashpw(
            b"x" * 10, bcrypt.gensalt(4)).decode()}, "password_hash"),
        ({"username": unique("v"), "nickname": "typo"}, "nickname"),
        ({"username": unique("v"), "emial": "a@example.com"}, "emial"),
    ]
    users_before = env.admin.get("/stats").json()["users"]
    soft = Soft()
    for body, field in cases:
        with soft.check(body):
            problem(env.admin.post("/users", body, valid=False), 422, field)
    # Several wrong fields: one error for each.
    r = env.admin.post("/users", {"username": unique("v"), "name": 7, "email_verified": "no", "extra": 1},
                       valid=False)
    fields = {e["field"] for e in problem(r, 422)["errors"]}
    assert {"name", "email_verified", "extra"} <= fields, fields
    # Nothing was stored for any of them.
    assert env.admin.get("/stats").json()["users"] == users_before
    soft.done()


def test_wrong_content_type_and_malformed_bodies(env):
    username = unique("ct")
    r = env.admin.post("/users", data=json.dumps({"username": username}), valid=False,
                       headers={"Content-Type": "text/plain"})
    problem(r, 415)
    r = env.admin.post("/users", data=f"username={username}", valid=False,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    problem(r, 415)
    for raw in ["{not json", "[]", '["username"]', "null", '"text"', "42", "{\"username\": \"a\"", "\xff\xfe"]:
        r = env.admin.post("/users", data=raw.encode("latin-1"), valid=False,
                           headers={"Content-Type": "application/json"})
        problem(r, 400)
    # Empty body where one is needed.
    problem(env.admin.post("/users", data=b"", valid=False, headers={"Content-Type": "application/json"}), 400)
    # Larger than 64 KiB.
    big = json.dumps({"username": unique("big"), "name": "x" * 70000})
    problem(env.admin.post("/users", data=big, valid=False, headers={"Content-Type": "application/json"}), 413)
    assert not env.admin.get("/users", params={"query": username}).json()["items"]


def test_get_and_patch_with_if_match(env):
    user, _ = env.new_user(email=unique("m") + "@example.com", email_verified=True)
    path = f"/users/{q(user['id'])}"
    r = env.admin.get(path)
    etag = r.headers["ETag"]
    assert r.json() == user
    assert env.admin.get(path).headers["ETag"] == etag, "the ETag is stable while the user does not change"
    # PATCH without If-Match applies.
    r = env.admin.patch(path, {"name": "First Name"}, 200)
    assert r.json()["name"] == "First Name"
    etag1 = r.headers["ETag"]
    assert etag1 != etag
    # The old ETag is stale now: 412, and nothing changes.
    problem(env.admin.patch(path, {"name": "Lost Update"}, headers={"If-Match": etag}), 412)
    assert env.admin.get(path).json()["name"] == "First Name"
    # The current one applies; the answer carries the next ETag, equal to a fresh GET's.
    r = env.admin.patch(path, {"name": "Second Name", "given_name": "Second"}, 200, headers={"If-Match": etag1})
    assert r.json()["name"] == "Second Name" and r.json()["given_name"] == "Second"
    assert r.headers["ETag"] == env.admin.get(path).headers["ETag"]
    env.admin.patch(path, {"name": "Star"}, 200, headers={"If-Match": "*"})
    # JSON Merge Patch (RFC 7396) is accepted as such.
    r = env.admin.patch(path, data=json.dumps({"family_name": "Merged"}), valid=False,
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["family_name"] == "Merged" and r.json()["name"] == "Star", r.text
    # null clears; a new email is no longer verified.
    r = env.admin.patch(path, {"given_name": None, "email": unique("n") + "@example.org"}, 200)
    assert r.json()["given_name"] is None and r.json()["email_verified"] is False, r.json()
    # Validation and unknown fields on PATCH.
    problem(env.admin.patch(path, {"email": "nope"}, valid=False), 422, "email")
    problem(env.admin.patch(path, {"username": "bad name"}, valid=False), 422, "username")
    problem(env.admin.patch(path, {"disabled": True}, valid=False), 422, "disabled")
    problem(env.admin.patch(path, {"id": "other"}, valid=False), 422, "id")
    problem(env.admin.patch(path, data="name=x", headers={"Content-Type": "text/plain"}, valid=False), 415)
    # Renaming onto a taken username is a conflict.
    other, _ = env.new_user()
    problem(env.admin.patch(path, {"username": other["username"].upper()}), 409)
    # Stale If-Match on DELETE: 412, the user stays.
    problem(env.admin.delete(path, headers={"If-Match": etag}), 412)
    env.admin.get(path)
    env.audited("user.updated", "user:" + user["id"])
    # Unknown ids.
    problem(env.admin.get("/users/" + unique("nobody"), expect=None), 404)
    problem(env.admin.patch("/users/" + unique("nobody"), {"name": "x"}), 404)
    problem(env.admin.delete("/users/" + unique("nobody")), 404)


def test_search_by_prefix_of_username_email_or_name(env):
    p = unique("srch")
    by_username, _ = env.new_user(username=p + "one")
    by_email, _ = env.new_user(username=unique("e"), email=p.upper() + "mail@Example.com")
    by_name, _ = env.new_user(username=unique("n"), name=p.capitalize() + " Person")
    not_prefix, _ = env.new_user(username=unique("x"), email="x" + p + "@example.com", name="Someone " + p)

    def found(query, **extra):
        return {u["id"] for u in env.admin.walk("/users", dict(extra, query=query))}

    expected = {by_username["id"], by_email["id"], by_name["id"]}
    assert found(p) == expected
    assert found(p.upper()) == expected, "search is case-insensitive"
    assert found(p.capitalize()[:-1]) == expected
    assert found(p + "ONE") == {by_username["id"]}
    assert found(p + "mail@") == {by_email["id"]}
    assert found(p + " pers") == {by_name["id"]}
    assert found("someone " + p) == {not_prefix["id"]}, "the name is searched by its prefix"
    assert found(unique("nothing")) == set()
    # A prefix, not a pattern: SQL wildcards match only themselves.
    assert found("%") == set() and found("_") == set() and found(p[:2] + "%") == set()
    # Filters: disabled, group.
    env.admin.post(f"/users/{q(by_email['id'])}/disable", expect=200)
    assert found(p, disabled="true") == {by_email["id"]}
    assert found(p, disabled="false") == {by_username["id"], by_name["id"]}
    problem(env.admin.get("/users", expect=None, params={"disabled": "maybe"}, valid=False), 422, "disabled")
    group = unique("grp")
    env.admin.post("/groups", {"name": group}, 201)
    env.admin.post(f"/groups/{q(group)}/members", {"user": by_name["username"]}, 200)
    env.admin.post(f"/groups/{q(group)}/members", {"user": not_prefix["id"], "role": "editor"}, 200)
    assert found(p, group=group) == {by_name["id"]}
    assert {u["id"] for u in env.admin.walk("/users", {"group": group})} == {by_name["id"], not_prefix["id"]}
    assert found(p, group=unique("nogroup")) == set()
    problem(env.admin.get("/users", expect=None, params={"query": "x" * 201}, valid=False), 422, "query")


def test_pagination_walks_every_user_once_while_users_are_added(env):
    p = unique("page")
    names = [f"{p}-{c}" for c in "abcDefgh"]
    for n in names:
        env.admin.post("/users", {"username": n}, 201)
    seen, cursor, inserted_after, pages = [], None, [], 0
    while True:
        params = {"query": p, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = env.admin.get("/users", params=params).json()
        pages += 1
        assert len(page["items"]) <= 3, page
        seen += [u["username"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert page["items"], "a page with a next_cursor has items"
        # Between page fetches: one user sorting before what was read (not on a later page), one after it
        # (must be on a later page).
        last = seen[-1].lower()
        env.admin.post("/users", {"username": f"{p}-0{pages}"}, 201)
        after = f"{p}-zz{pages}"
        env.admin.post("/users", {"username": after}, 201)
        inserted_after.append(after)
        assert after.lower() > last
        assert pages < 20
    keys = [s.lower() for s in seen]
    assert len(keys) == len(set(keys)), f"duplicates: {seen}"
    assert keys == sorted(keys), f"not in username order: {seen}"
    missing = set(names + inserted_after) - set(seen)
    assert not missing, f"gaps: {missing} not on any page of {seen}"
    assert pages >= 3
    # The whole list, paged at 1, equals the list at 200.
    assert [u["id"] for u in env.admin.walk("/users", {"query": p}, limit=1)] == \
        [u["id"] for u in env.admin.walk("/users", {"query": p}, limit=200)]


def test_password_hash_import(env):
    password = "imported-" + secrets.token_hex(6)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    username = unique("imp")
    r = env.admin.post("/users", {"username": username, "password_hash": hashed}, 201)
    user = r.json()
    assert user["has_password"] is True and hashed not in r.text, r.text
    assert hashed not in env.admin.get(f"/users/{q(user['id'])}").text
    token = env.password_token(env.app, username, password, "openid")
    assert env.gh.decode(token["access_token"])["sub"] == user["id"]
    oauth_error(env.gh.token(env.app, grant_type="password", username=username, password=password + "x"),
                400, "invalid_grant")
    # The $2a$ and $2y$ spellings of bcrypt are accepted too.
    soft = Soft()
    for variant in ("$2a$", "$2y$"):
        name = unique("imp")
        env.admin.post("/users", {"username": name, "password_hash": variant + hashed[4:]}, 201)
        with soft.check(f"sign-in with an imported {variant} hash"):
            env.password_token(env.app, name, password, "openid")
    soft.done()


def test_set_password_and_require_reset(env):
    user, old = env.new_user()
    path = f"/users/{q(user['id'])}/password"
    new = "new-password-" + secrets.token_hex(4)
    r = env.admin.post(path, {"password": new}, 200)
    assert r.json()["has_password"] is True
    oauth_error(env.gh.token(env.app, grant_type="password", username=user["username"], password=old),
                400, "invalid_grant")
    env.password_token(env.app, user["username"], new, "openid")
    problem(env.admin.post(path, {"password": "short"}, valid=False), 422, "password")
    problem(env.admin.post(path, {}, valid=False), 422)
    r = env.admin.post(path, {"require_reset": True}, 200)
    assert r.json()["password_reset_required"] is True
    env.audited("user.password_reset_required", "user:" + user["id"])


# --- disable, enable, delete, sessions ---------------------------------------------------------------------------
def signed_in(browser: Browser) -> bool:
    """Whether the browser's session still works: /account shows who is signed in, not the login form."""
    r = browser.get("/account")
    page = parse_page(r)
    if page.form("#login-form") is not None:
        return False
    assert r.status_code == 200 and page.text("#username"), (r.status_code, r.text[:1000])
    return True


def test_disable_ends_sign_in_tokens_and_sessions_then_enable(env):
    user, password = env.new_user()
    name = user["username"]
    browser = Browser(env.gh)
    browser.sign_in(name, password)
    assert signed_in(browser)
    tokens = env.password_token(env.app, name, password, "openid profile")
    access, refresh = tokens["access_token"], tokens.get("refresh_token")
    assert refresh, tokens
    info = requests.get(env.gh.issuer + "/oauth2/userinfo", headers={"Authorization": "Bearer " + access}, timeout=10)
    assert info.status_code == 200 and info.json()["sub"] == user["id"], info.text

    r = env.admin.post(f"/users/{q(user['id'])}/disable", expect=200)
    assert r.json()["disabled"] is True and isinstance(r.json()["disabled_at"], int), r.json()
    assert r.headers.get("ETag")
    # At once: the access token is inactive and refused at UserInfo, the refresh token is dead.
    assert not env.active(access)
    info = requests.get(env.gh.issuer + "/oauth2/userinfo", headers={"Authorization": "Bearer " + access}, timeout=10)
    assert info.status_code == 401 and "invalid_token" in info.headers.get("WWW-Authenticate", ""), \
        (info.status_code, info.headers)
    oauth_error(env.gh.token(env.app, grant_type="refresh_token", refresh_token=refresh), 400, "invalid_grant")
    # No new tokens, no sign-in; the session they had is gone.
    oauth_error(env.gh.token(env.app, grant_type="password", username=name, password=password, scope="openid"),
                400, "invalid_grant")
    assert not signed_in(browser)
    refused = Browser(env.gh)
    page = parse_page(refused.sign_in(name, password))
    assert page.form("#login-form") is not None, page.url
    assert "disabled" in (page.text(".alert") or "").lower(), page.response.text[:2000]
    assert not signed_in(refused)
    env.audited("user.disabled", "user:" + user["id"])
    assert env.audit(action="signin.disabled_account", target="user:" + user["id"]), "the refused sign-in is audited"
    # Disabling again changes nothing (and records nothing new).
    before = env.audit(action="user.disabled", target="user:" + user["id"])
    assert env.admin.post(f"/users/{q(user['id'])}/disable", expect=200).json()["disabled_at"] == r.json()["disabled_at"]
    assert env.audit(action="user.disabled", target="user:" + user["id"]) == before

    r = env.admin.post(f"/users/{q(user['id'])}/enable", expect=200)
    assert r.json()["disabled"] is False and r.json()["disabled_at"] is None, r.json()
    env.password_token(env.app, name, password, "openid")
    browser.sign_in(name, password)
    assert signed_in(browser)
    # The old tokens stay dead.
    assert not env.active(access)
    oauth_error(env.gh.token(env.app, grant_type="refresh_token", refresh_token=refresh), 400, "invalid_grant")
    env.audited("user.enabled", "user:" + user["id"])
    problem(env.admin.post(f"/users/{unique('nobody')}/disable"), 404)


def test_delete_user(env):
    user, password = env.new_user()
    browser = Browser(env.gh)
    browser.sign_in(user["username"], password)
    assert signed_in(browser)
    access = env.password_token(env.app, user["username"], password, "openid")["access_token"]
    path = f"/users/{q(user['id'])}"
    etag = env.admin.get(path).headers["ETag"]
    r = env.admin.delete(path, 204, headers={"If-Match": etag})
    assert r.content == b""
    problem(env.admin.get(path, expect=None), 404)
    problem(env.admin.delete(path), 404)
    problem(env.admin.get(path + "/sessions", expect=None), 404)
    assert not env.active(access)
    info = requests.get(env.gh.issuer + "/oauth2/userinfo", headers={"Authorization": "Bearer " + access}, timeout=10)
    assert info.status_code == 401, info.text
    assert not signed_in(browser)
    oauth_error(env.gh.token(env.app, grant_type="password", username=user["username"], password=password,
                             scope="openid"), 400, "invalid_grant")
    assert not [u for u in env.admin.walk("/users", {"query": user["username"]}) if u["id"] == user["id"]]
    event = env.audited("user.deleted", "user:" + user["id"])
    assert event["detail"].get("username") == user["username"], event
    # The username is free again; the new user gets a new id.
    again = env.admin.post("/users", {"username": user["username"]}, 201).json()
    assert again["id"] != user["id"]


def test_sessions_list_and_sign_out_everywhere(env):
    user, password = env.new_user()
    path = f"/users/{q(user['id'])}/sessions"
    assert env.admin.get(path).json() == {"items": [], "next_cursor": None}
    first, second = Browser(env.gh), Browser(env.gh)
    first.sign_in(user["username"], password)
    second.sign_in(user["username"], password)
    assert signed_in(first) and signed_in(second)
    sessions = env.admin.get(path).json()["items"]
    assert len(sessions) == 2 and {s["user_id"] for s in sessions} == {user["id"]}, sessions
    now = time.time()
    for s in sessions:
        assert s["id"] and abs(s["auth_time"] - now) < 120 and s["expires_at"] > now, s
        cookie_values = {c.value for b in (first, second) for c in b.session.cookies}
        assert s["id"] not in cookie_values, "the session id shown is not the cookie"
    assert len(env.admin.get(path, params={"limit": 1}).json()["items"]) == 1
    env.reader.get(path)
    problem(env.reader.delete(path, valid=False), 403)
    assert signed_in(first)
    env.admin.delete(path, 204)
    assert env.admin.get(path).json()["items"] == []
    assert not signed_in(first) and not signed_in(second)
    env.audited("user.signed_out_everywhere", "user:" + user["id"])


def test_user_grants_and_revoking_a_grant(env):
    user, password = env.new_user()
    tokens = env.password_token(env.app, user["username"], password, "openid")
    grants = env.admin.get(f"/users/{q(user['id'])}/grants").json()["items"]
    assert len(grants) == 1 and grants[0]["client_id"] == env.app["client_id"], grants
    assert grants[0]["user_id"] == user["id"] and grants[0]["revoked_at"] is None, grants
    assert env.active(tokens["access_token"])
    env.admin.delete(f"/grants/{q(grants[0]['id'])}", 204)
    assert not env.active(tokens["access_token"])
    oauth_error(env.gh.token(env.app, grant_type="refresh_token", refresh_token=tokens["refresh_token"]),
                400, "invalid_grant")
    assert env.admin.get(f"/users/{q(user['id'])}/grants").json()["items"] == []
    problem(env.admin.delete("/grants/" + unique("nogrant")), 404)
    env.audited("grant.revoked", "grant:" + grants[0]["id"])


def test_user_groups_and_identities_lists(env):
    user, _ = env.new_user()
    group = unique("ug")
    env.admin.post("/groups", {"name": group}, 201)
    env.admin.post(f"/groups/{q(group)}/members", {"user": user["id"], "role": "owner"}, 200)
    groups = env.admin.get(f"/users/{q(user['id'])}/groups").json()["items"]
    assert groups == [{"group": group, "user_id": user["id"], "username": user["username"], "role": "owner"}], groups
    assert env.admin.get(f"/users/{q(user['id'])}/identities").json() == {"items": [], "next_cursor": None}
    problem(env.admin.delete(f"/users/{q(user['id'])}/identities/github/{unique('s')}"), 404)
    problem(env.admin.get(f"/users/{unique('nobody')}/groups", expect=None), 404)


# --- clients ----------------------------------------------------------------------------------------------------------
def test_client_secret_is_shown_once_and_works(env):
    scope = unique("cs")
    env.admin.post("/scopes", {"name": scope, "description": "client scope"}, 201)
    r = env.admin.post("/clients", {"name": "Batch job", "grant_types": ["client_credentials"], "scope": scope}, 201)
    client = r.json()
    secret = client["client_secret"]
    assert secret and len(secret) >= 32, client
    assert r.headers["Location"] == f"{BASE}/clients/{client['client_id']}", r.headers
    assert client["token_endpoint_auth_method"] == "client_secret_basic" and client["public"] is False
    assert client["grant_types"] == ["client_credentials"] and client["scope"] == scope, client
    shown = env.admin.get(f"/clients/{q(client['client_id'])}")
    assert "client_secret" not in shown.json() and secret not in shown.text, shown.text
    assert shown.headers["ETag"] == r.headers["ETag"], "the ETag of the answer is that of the client without secret"
    listed = env.admin.walk("/clients", limit=200)
    assert client["client_id"] in {c["client_id"] for c in listed}
    assert all("client_secret" not in c for c in listed) and secret not in json.dumps(listed)
    # The secret shown works in a real client_credentials request (Authlib).
    session = OAuth2Session(client["client_id"], secret, token_endpoint_auth_method="client_secret_basic",
                            scope=scope)
    token = session.fetch_token(env.gh.token_endpoint, grant_type="client_credentials")
    claims = env.gh.decode(token["access_token"])
    assert claims["client_id"] == client["client_id"] and claims["scope"] == scope, claims
    env.audited("client.created", "client:" + client["client_id"])
    # Public clients have no secret.
    public = env.admin.post("/clients", {"name": "SPA", "public": True,
                                         "redirect_uris": ["https://spa.example.com/cb"]}, 201).json()
    assert "client_secret" not in public or public["client_secret"] is None, public
    assert public["token_endpoint_auth_method"] == "none"
    problem(env.admin.post(f"/clients/{q(public['client_id'])}/secret"), 409)


def test_client_validation_and_patch(env):
    soft = Soft()
    for body, field in [({}, "name"),
                        ({"name": ""}, "name"),
                        ({"name": "x", "grant_types": ["implicit"]}, "grant_types"),
                        ({"name": "x", "scope": unique("noscope")}, "scope"),
                        ({"name": "x", "redirect_uris": ["http://evil.example.com/cb"]}, "redirect_uris"),
                        ({"name": "x", "redirect_uris": ["https://app.example.com/cb#frag"]}, "redirect_uris"),
                        ({"name": "x", "redirect_uris": "https://app.example.com/cb"}, "redirect_uris"),
                        ({"name": "x", "public": True, "grant_types": ["client_credentials"]}, "grant_types"),
                        ({"name": "x", "secret": "mine"}, "secret")]:
        with soft.check(body):
            problem(env.admin.post("/clients", body, valid=False), 422, field)
    client = env.admin.post("/clients", {"name": "Web app", "redirect_uris": ["https://app.example.com/cb"]},
                            201).json()
    path = f"/clients/{q(client['client_id'])}"
    etag = env.admin.get(path).headers["ETag"]
    r = env.admin.patch(path, {"redirect_uris": ["https://app.example.com/cb", "http://127.0.0.1:8765/cb",
                                                 "http://[::1]/cb"]}, 200, headers={"If-Match": etag})
    assert r.json()["redirect_uris"] == ["https://app.example.com/cb", "http://127.0.0.1:8765/cb", "http://[::1]/cb"]
    assert "client_secret" not in r.json()
    for bad in (["http://app.example.com/cb"], ["https://app.example.com/cb#x"], ["not a uri"], ["/relative"]):
        with soft.check(bad):
            problem(env.admin.patch(path, {"redirect_uris": bad}, valid=False), 422, "redirect_uris")
    problem(env.admin.patch(path, {"name": "Stale"}, headers={"If-Match": etag}), 412)
    problem(env.admin.patch(path, {"public": True}, valid=False), 422, "public")
    current = env.admin.get(path).json()
    assert current["redirect_uris"] == r.json()["redirect_uris"] and current["name"] == "Web app", current
    r = env.admin.patch(path, {"name": "Renamed", "skip_consent": True}, 200)
    assert r.json()["name"] == "Renamed" and r.json()["skip_consent"] is True
    env.audited("client.updated", "client:" + client["client_id"])
    problem(env.admin.get("/clients/" + unique("noclient"), expect=None), 404)
    problem(env.admin.patch("/clients/" + unique("noclient"), {"name": "x"}), 404)
    soft.done()


def test_secret_rotation_without_and_with_grace(env):
    created = env.admin.post("/clients", {"name": "Rotating", "grant_types": ["client_credentials"]}, 201).json()
    cid, first = created["client_id"], created["client_secret"]
    env.cc_token(created)
    # Without grace: the old secret fails at once.
    r = env.admin.post(f"/clients/{q(cid)}/secret", expect=200)
    second = r.json()["client_secret"]
    assert second and second != first and r.json()["previous_secret_expires_at"] is None, r.json()
    oauth_error(env.gh.token(created, first, grant_type="client_credentials"), 401, "invalid_client")
    env.cc_token(created, secret=second)
    # With ?grace=60: both work, and the client says until when.
    r = env.admin.post(f"/clients/{q(cid)}/secret", params={"grace": "60"}, expect=200)
    third = r.json()["client_secret"]
    until = r.json()["previous_secret_expires_at"]
    assert third not in (first, second) and isinstance(until, int) and 50 <= until - time.time() <= 70, r.json()
    env.cc_token(created, secret=second)
    env.cc_token(created, secret=third)
    oauth_error(env.gh.token(created, first, grant_type="client_credentials"), 401, "invalid_client")
    shown = env.admin.get(f"/clients/{q(cid)}").json()
    assert shown["previous_secret_expires_at"] == until and "client_secret" not in shown, shown
    for bad in ("-1", "86401", "ten", "1e3"):
        problem(env.admin.post(f"/clients/{q(cid)}/secret", params={"grace": bad}, valid=False), 422, "grace")
    env.cc_token(created, secret=third)
    assert env.audited("client.secret_rotated", "client:" + cid)["detail"].get("grace") == "60"
    problem(env.admin.post(f"/clients/{unique('noclient')}/secret"), 404)


def test_delete_client_ends_its_tokens(env):
    created = env.admin.post("/clients", {"name": "Doomed", "grant_types": ["client_credentials"]}, 201).json()
    token = env.cc_token(created)
    assert env.active(token)
    path = f"/clients/{q(created['client_id'])}"
    problem(env.admin.delete(path, headers={"If-Match": '"stale"'}), 412)
    env.admin.delete(path, 204, headers={"If-Match": env.admin.get(path).headers["ETag"]})
    problem(env.admin.get(path, expect=None), 404)
    assert not env.active(token)
    oauth_error(env.gh.token(created, grant_type="client_credentials"), 401, "invalid_client")
    env.audited("client.deleted", "client:" + created["client_id"])


# --- scopes ---------------------------------------------------------------------------------------------------------
def test_scopes(env):
    name = unique("sc")
    r = env.admin.post("/scopes", {"name": name, "description": "Read the widgets"}, 201)
    assert r.json() == {"name": name, "description": "Read the widgets", "default": False, "required_role": None,
                        "built_in": False}, r.json()
    assert r.headers["Location"] == f"{BASE}/scopes/{name}"
    problem(env.admin.post("/scopes", {"name": name}), 409)
    soft = Soft()
    for body, field in [({"name": "has space"}, "name"), ({"name": 'quote"'}, "name"), ({}, "name"),
                        ({"name": unique("sc"), "description": ""}, "description"),
                        ({"name": ADMIN, "default": True}, "default"),
                        ({"name": unique("sc"), "colour": "red"}, "colour")]:
        with soft.check(body):
            problem(env.admin.post("/scopes", body, valid=False), 422, field)
    listed = {s["name"]: s for s in env.admin.walk("/scopes", limit=2)}
    assert listed[name]["built_in"] is False and listed["openid"]["built_in"] is True, listed
    assert listed[ADMIN]["built_in"] is True and listed[ADMIN_READ]["built_in"] is True
    path = f"/scopes/{q(name)}"
    etag = env.admin.get(path).headers["ETag"]
    r = env.admin.patch(path, {"description": "Read widgets", "required_role": "widget-reader"}, 200,
                        headers={"If-Match": etag})
    assert r.json()["description"] == "Read widgets" and r.json()["required_role"] == "widget-reader"
    problem(env.admin.patch(path, {"description": "stale"}, headers={"If-Match": etag}), 412)
    assert env.admin.patch(path, {"required_role": None}, 200).json()["required_role"] is None
    # Built-in scopes are never deleted.
    for builtin in ("openid", "profile", ADMIN, ADMIN_READ):
        problem(env.admin.delete(f"/scopes/{q(builtin)}"), 409)
        problem(env.admin.delete(f"/scopes/{q(builtin)}", params={"force": "true"}), 409)
    # In use by a client: 409, unless forced; then the client no longer has it.
    client = env.admin.post("/clients", {"name": "Widget app", "grant_types": ["client_credentials"],
                                         "scope": f"{name} openid"}, 201).json()
    problem(env.admin.delete(path), 409)
    env.admin.get(path)
    env.admin.delete(path, 204, params={"force": "true"})
    problem(env.admin.get(path, expect=None), 404)
    after = env.admin.get(f"/clients/{q(client['client_id'])}").json()
    assert name not in after["scope"].split() and "openid" in after["scope"].split(), after
    assert name not in after["default_scope"].split(), after
    oauth_error(env.gh.token(client, grant_type="client_credentials", scope=name), 400, "invalid_scope")
    problem(env.admin.delete(path), 404)
    problem(env.admin.delete(f"/scopes/{q(unique('sc'))}", params={"force": "maybe"}, valid=False), 422, "force")
    event = env.audited("scope.deleted", "scope:" + name)
    assert event["detail"].get("force") == "true", event
    env.audited("scope.created", "scope:" + name)
    env.audited("scope.updated", "scope:" + name)
    soft.done()


# --- groups and services ----------------------------------------------------------------------------------------------
def test_groups_and_members(env):
    group = unique("team")
    r = env.admin.post("/groups", {"name": group}, 201)
    assert r.json()["name"] == group and r.json()["members"] == 0, r.json()
    assert r.headers["Location"] == f"{BASE}/groups/{group}"
    problem(env.admin.post("/groups", {"name": group}), 409)
    problem(env.admin.post("/groups", {"name": "bad name!"}, valid=False), 422, "name")
    alice, _ = env.new_user()
    bob, _ = env.new_user()
    members = f"/groups/{q(group)}/members"
    m = env.admin.post(members, {"user": alice["username"], "role": "lead"}, 200).json()
    assert m == {"group": group, "user_id": alice["id"], "username": alice["username"], "role": "lead"}, m
    env.admin.post(members, {"user": bob["id"]}, 200)
    problem(env.admin.post(members, {"user": unique("nobody")}), 404)
    problem(env.admin.post(members, {"user": bob["id"], "role": "bad role!"}, valid=False), 422, "role")
    problem(env.admin.post(f"/groups/{unique('nogroup')}/members", {"user": bob["id"]}), 404)
    listed = env.admin.walk(members, limit=1)
    assert {(x["user_id"], x["role"]) for x in listed} == {(alice["id"], "lead"), (bob["id"], "member")}, listed
    assert env.admin.get(f"/groups/{q(group)}").json()["members"] == 2
    env.admin.delete(f"{members}/{q(alice['username'])}", 204)
    problem(env.admin.delete(f"{members}/{q(alice['username'])}"), 404)
    assert [x["user_id"] for x in env.admin.get(members).json()["items"]] == [bob["id"]]
    assert group in {g["name"] for g in env.admin.walk("/groups", limit=3)}
    env.audited("group.member_added", "group:" + group)
    env.audited("group.member_removed", "group:" + group)
    path = f"/groups/{q(group)}"
    problem(env.admin.delete(path, headers={"If-Match": '"stale"'}), 412)
    env.admin.delete(path, 204)
    problem(env.admin.get(path, expect=None), 404)
    problem(env.admin.get(members, expect=None), 404)
    assert env.admin.get(f"/users/{q(bob['id'])}/groups").json()["items"] == []
    env.audited("group.deleted", "group:" + group)


def test_services_and_permission_grants(env):
    service = unique("svc")
    r = env.admin.post("/services", {"name": service, "permissions_url": "https://svc.example.com/perms"}, 201)
    assert r.json()["name"] == service and r.json()["permissions_url"] == "https://svc.example.com/perms", r.json()
    problem(env.admin.post("/services", {"name": service}), 409)
    problem(env.admin.post("/services", {"name": unique("svc"), "permissions_url": "ftp://x"}, valid=False), 422,
            "permissions_url")
    user, _ = env.new_user()
    grants = f"/services/{q(service)}/grants"
    g = env.admin.post(grants, {"user": user["username"], "permissions": ["read", "write"]}, 200).json()
    assert g["service"] == service and g["user_id"] == user["id"] and set(g["permissions"]) == {"read", "write"}, g
    problem(env.admin.post(grants, {"user": user["id"], "permissions": []}, valid=False), 422, "permissions")
    problem(env.admin.post(grants, {"user": user["id"], "permissions": ["bad perm"]}, valid=False), 422,
            "permissions")
    problem(env.admin.post(grants, {"user": unique("nobody"), "permissions": ["read"]}), 404)
    listed = env.admin.get(grants).json()["items"]
    assert [(x["user_id"], set(x["permissions"])) for x in listed] == [(user["id"], {"read", "write"})], listed
    # Revoke one permission, then the rest.
    env.admin.delete(f"{grants}/{q(user['username'])}", 204, params={"permission": "read"})
    assert env.admin.get(grants).json()["items"][0]["permissions"] == ["write"]
    env.admin.delete(f"{grants}/{q(user['id'])}", 204)
    assert env.admin.get(grants).json()["items"] == []
    problem(env.admin.delete(f"{grants}/{q(user['id'])}"), 404)
    env.audited("service.permissions_granted", "service:" + service)
    env.audited("service.permissions_revoked", "service:" + service)
    # The admin service cannot be deleted; others can.
    problem(env.admin.delete("/services/gatehouse"), 409)
    assert {s["name"] for s in env.admin.walk("/services")} >= {"gatehouse", service}
    env.admin.delete(f"/services/{q(service)}", 204)
    problem(env.admin.get(f"/services/{q(service)}", expect=None), 404)
    env.audited("service.deleted", "service:" + service)


def test_providers_list_and_unknown(env):
    page = env.admin.get("/providers").json()
    assert page["next_cursor"] is None and isinstance(page["items"], list), page
    problem(env.admin.get("/providers/" + unique("noprov"), expect=None), 404)
    problem(env.admin.delete("/providers/" + unique("noprov")), 404)


# --- events (webhook outbox) -------------------------------------------------------------------------------------------
def test_events_list_filter_and_retry(env):
    problem(env.admin.get("/events", expect=None, params={"status": "bogus"}, valid=False), 422, "status")
    problem(env.admin.get("/events", expect=None, params={"limit": "0"}, valid=False), 422, "limit")
    ok_user, _ = env.new_user()
    failing = env.admin.post("/users", {"username": unique("hookfail")}, 201).json()

    # The outbox view does not carry the payload: events are told apart by what the receiver got (the
    # delivery's id is the event's id).
    def event_ids(user_id: str) -> set[str]:
        with env.hooks.lock:
            return {b["id"] for b in env.hooks.bodies
                    if b.get("event") == "audit.user.created" and (b.get("data") or {}).get("target") == "user:" + user_id}

    def find(status: str, user_id: str) -> dict | None:
        ids = event_ids(user_id)
        return next((e for e in env.admin.walk("/events", {"status": status}, limit=200) if e["id"] in ids), None)

    wait_until(lambda: event_ids(ok_user["id"]) and event_ids(failing["id"]),
               "both audit.user.created events to reach the receiver", timeout=30)
    delivered = wait_until(lambda: find("delivered", ok_user["id"]), "the delivered event in ?status=delivered",
                           timeout=30)
    assert delivered["status"] == "delivered" and delivered["delivered_at"] and delivered["attempts"] >= 1
    assert delivered["event"] == "audit.user.created" and delivered["url"].startswith("http://127.0.0.1:"), delivered
    pending = wait_until(lambda: find("pending", failing["id"]), "the failing event in ?status=pending", timeout=30)
    assert pending["status"] == "pending" and pending["attempts"] >= 1 and pending["last_error"], pending
    assert find("delivered", failing["id"]) is None
    # One event by id, with an ETag; retrying a delivered one is a conflict, a pending one is accepted.
    r = env.admin.get(f"/events/{q(delivered['id'])}")
    assert r.json()["id"] == delivered["id"] and r.headers.get("ETag")
    problem(env.admin.post(f"/events/{q(delivered['id'])}/retry"), 409)
    r = env.admin.post(f"/events/{q(pending['id'])}/retry", expect=200)
    assert r.json()["status"] == "pending", r.json()
    env.audited("event.retried", "event:" + pending["id"])
    problem(env.admin.get("/events/" + unique("noevent"), expect=None), 404)
    problem(env.admin.post("/events/" + unique("noevent") + "/retry"), 404)
    # Newest first, paged without repeats.
    events = env.admin.walk("/events", limit=7)
    keys = [(e["created_at"], e["id"]) for e in events]
    assert len({e["id"] for e in events}) == len(events), "an event on two pages"
    assert [k[0] for k in keys] == sorted((k[0] for k in keys), reverse=True), "not newest first"


# --- keys ----------------------------------------------------------------------------------------------------------------
def jwks_kids(env) -> set[str]:
    r = requests.get(env.gh.jwks_uri, timeout=10)
    assert r.status_code == 200, r.text
    return {k["kid"] for k in r.json()["keys"]}


def test_keys_list_rotate_and_revoke_a_published_key(env):
    keys = env.admin.get("/keys").json()["items"]
    signing = [k for k in keys if k["status"] == "signing"]
    assert len(signing) == 1, keys
    assert signing[0]["kid"] in jwks_kids(env)
    problem(env.admin.post("/keys/rotate", {"algorithm": "HS256"}, valid=False), 422, "algorithm")
    problem(env.admin.post("/keys/rotate", {"now": True}, valid=False), 422, "now")
    r = env.admin.post("/keys/rotate", {"algorithm": "RS256"}, 201)
    new = r.json()
    assert new["algorithm"] == "RS256" and new["status"] == "pending", new
    assert new["activates_at"] > time.time() + 30, "a rotated key is published before it signs"
    listed = {k["kid"]: k for k in env.admin.get("/keys").json()["items"]}
    assert listed[new["kid"]]["status"] == "pending" and listed[signing[0]["kid"]]["status"] == "signing", listed
    env.audited("key.rotated", "key:" + new["kid"])
    # Published at the server's next key reload (default every 10 s).
    wait_until(lambda: new["kid"] in jwks_kids(env), "the rotated key in the JWKS", timeout=20)
    # Revoking the pending key: no replacement needed, and it leaves the JWKS at once.
    r = env.admin.post(f"/keys/{q(new['kid'])}/revoke", expect=200)
    assert r.json() == {"revoked": new["kid"], "replacement": None}, r.json()
    soft = Soft()
    with soft.check("JWKS right after the revocation"):
        assert new["kid"] not in jwks_kids(env), "a key revoked through this server must leave its JWKS at once"
    # (At the latest at the next key reload.)
    wait_until(lambda: new["kid"] not in jwks_kids(env), "the revoked key to leave the JWKS", timeout=20)
    assert {k["kid"]: k for k in env.admin.get("/keys").json()["items"]}[new["kid"]]["status"] == "revoked"
    problem(env.admin.post(f"/keys/{q(new['kid'])}/revoke"), 409)
    problem(env.admin.post(f"/keys/{unique('nokid')}/revoke"), 404)
    env.audited("key.revoked", "key:" + new["kid"])
    # Tokens are still signed by the old key and work.
    env.admin.get("/stats")
    soft.done()


# --- audit -------------------------------------------------------------------------------------------------------------
def test_signin_failure_is_audited(env):
    user, password = env.new_user()
    browser = Browser(env.gh)
    page = parse_page(browser.sign_in(user["username"], "wrong-" + password))
    assert page.form("#login-form") is not None
    events = env.audit(action="signin.failed", target="user:" + user["id"])
    assert events, "a failed sign-in is in the audit log"
    assert events[0]["actor"] == "anonymous" and events[0]["detail"].get("username") == user["username"], events[0]
    assert password not in json.dumps(events) and "wrong-" not in json.dumps(events), "no password in the audit log"
    # The password grant's failures too.
    env.gh.token(env.app, grant_type="password", username=user["username"], password="nope-" + password)
    assert len(env.audit(action="signin.failed", target="user:" + user["id"])) == 2
    browser.sign_in(user["username"], password)
    ok = env.audit(action="signin.succeeded", target="user:" + user["id"])
    assert ok and ok[0]["actor"] == "user:" + user["id"], ok


def test_audit_filters_order_and_pagination(env):
    start = int(time.time())
    actor = "client:" + env.ops["client_id"]
    users = [env.new_user()[0] for _ in range(5)]
    targets = ["user:" + u["id"] for u in users]
    mine = [e for e in env.audit(action="user.created", actor=actor, since=start) if e["target"] in targets]
    assert [e["target"] for e in mine] == list(reversed(targets)), "newest first"
    for e in mine:
        assert e["actor"] == actor and e["action"] == "user.created" and e["time"] >= start, e
        assert e["client_address"] == "127.0.0.1" and e["request_id"], e
    # Each filter narrows.
    assert {e["target"] for e in env.audit(target=targets[2])} == {targets[2]}
    assert all(e["action"] == "user.created" for e in env.audit(action="user.created"))
    assert all(e["actor"] == actor for e in env.audit(actor=actor))
    assert not env.audit(actor="client:" + unique("noone"))
    assert not env.audit(since=int(time.time()) + 3600)
    assert not [e for e in env.audit(until=start - 1) if e["target"] in targets]
    assert all(e["time"] <= start + 3600 for e in env.audit(until=start + 3600))
    # Pages of 2 walk the same events as one page, without repeats.
    walked = env.admin.walk("/audit", {"since": start, "action": "user.created", "actor": actor}, limit=2)
    whole = env.audit(since=start, action="user.created", actor=actor)
    assert [e["id"] for e in walked] == [e["id"] for e in whole] and len(walked) >= 5
    assert [e["id"] for e in walked] == sorted((e["id"] for e in walked), reverse=True)
    # The request id of the change is the X-Request-Id of its response.
    r = env.admin.post("/users", {"username": unique("rid")}, 201)
    event = env.audited("user.created", "user:" + r.json()["id"])
    assert event["request_id"] == r.headers["X-Request-Id"], (event, r.headers)
    soft = Soft()
    for params, field in [({"since": "yesterday"}, "since"), ({"until": "-5"}, "until"),
                          ({"action": "x" * 301}, "action"), ({"target": "x" * 301}, "target"), ({"limit": "201"}, "limit"),
                          ({"cursor": "%%%"}, "cursor")]:
        with soft.check(params):
            problem(env.admin.get("/audit", expect=None, params=params, valid=False), 422, field)
    # Empty values count as absent (the document's convention).
    assert env.audit(actor="", action="", since="") == env.audit()
    soft.done()


def test_cli_changes_are_audited_as_cli(env):
    user, _ = env.gh.create_user()
    env.audited("user.created", "user:" + user["id"], actor="cli")
    client = env.gh.create_client(grant_types=["client_credentials"])
    env.audited("client.created", "client:" + client["client_id"], actor="cli")
    group = unique("clig")
    env.gh.cli("groups", "create", group)
    env.audited("group.created", "group:" + group, actor="cli")
    env.gh.cli("services", "grant", "gatehouse", "--user", user["username"], "--permission", "admin:read")
    env.audited("service.permissions_granted", "service:gatehouse", actor="cli")
    # `gatehouse services revoke` (another process, same database) ends the user's admin use of their token
    # too: within the server's cache_ttl (1 s by default) at most.
    password = "cli-user-" + secrets.token_hex(6)
    env.admin.post(f"/users/{q(user['id'])}/password", {"password": password}, 200)
    read = Api(env.gh, env.password_token(env.pw, user["username"], password, ADMIN_READ)["access_token"])
    read.get("/stats")
    env.gh.cli("services", "revoke", "gatehouse", "--user", user["username"])
    wait_until(lambda: read.get("/stats", expect=None, valid=False).status_code == 403,
               "the CLI's revocation to reach the admin API", timeout=5)
    problem(read.get("/stats", expect=None, valid=False), 403)
    env.audited("service.permissions_revoked", "service:gatehouse", actor="cli")


def test_api_changes_are_audited_with_the_calling_client(env):
    """Every kind of change made through the API in this module is in the log as the ops client's."""
    actor = "client:" + env.ops["client_id"]
    actions = {e["action"] for e in env.admin.walk("/audit", {"actor": actor}, limit=200)}
    expected = {"user.created", "user.updated", "user.deleted", "user.disabled", "user.enabled", "user.password_set",
                "user.password_reset_required", "user.signed_out_everywhere", "client.created", "client.updated",
                "client.deleted", "client.secret_rotated", "scope.created", "scope.updated", "scope.deleted",
                "group.created", "group.deleted", "group.member_added", "group.member_removed", "service.created",
                "service.deleted", "service.permissions_granted", "service.permissions_revoked", "grant.revoked",
                "key.rotated", "key.revoked", "event.retried"}
    assert expected <= actions, f"not audited: {sorted(expected - actions)}"
    # Reads are not changes.
    assert not {a for a in actions if a.endswith((".listed", ".read", ".viewed"))}, actions


# --- stats --------------------------------------------------------------------------------------------------------------
def test_stats_follow_changes_and_activity(env):
    before = env.admin.get("/stats").json()
    for key in ("users", "disabled_users", "clients", "active_sessions", "pending_events", "failed_events"):
        assert isinstance(before[key], int) and before[key] >= 0, before
    user, password = env.new_user()
    env.admin.post("/clients", {"name": "Counted", "grant_types": ["client_credentials"]}, 201)
    env.admin.post(f"/users/{q(user['id'])}/disable", expect=200)
    now = env.admin.get("/stats").json()
    assert now["users"] == before["users"] + 1 and now["clients"] == before["clients"] + 1, (before, now)
    assert now["disabled_users"] == before["disabled_users"] + 1, (before, now)
    env.admin.post(f"/users/{q(user['id'])}/enable", expect=200)
    # Activity is counted in memory and flushed every few seconds: wait for it with a deadline.
    issued = 3
    for _ in range(issued):
        env.password_token(env.app, user["username"], password, "openid")
    Browser(env.gh).sign_in(user["username"], password)
    Browser(env.gh).sign_in(user["username"], "wrong-password")

    def grown():
        s = env.admin.get("/stats").json()
        h = s["last_hour"]
        b = before["last_hour"]
        ok = (h["tokens_issued"] >= b["tokens_issued"] + issued and h["signins"] >= b["signins"] + issued + 1
              and h["signin_failures"] >= b["signin_failures"] + 1)
        return s if ok else None

    after = wait_until(grown, lambda: f"activity counters to grow from {before}", timeout=20)
    assert after["last_day"]["tokens_issued"] >= after["last_hour"]["tokens_issued"], after
    assert after["active_sessions"] >= before["active_sessions"] + 1, (before, after)


# --- bad input never gives 5xx ------------------------------------------------------------------------------------------
def test_bad_input_is_4xx(env):
    soft = Soft()
    for path in ("/users", "/clients", "/audit", "/events", "/scopes", "/groups", "/services", "/keys"):
        for limit in ("1000000000000000000000", "-1", "0", "201", "ten"):
            with soft.check((path, "limit", limit)):
                problem(env.admin.get(path, expect=None, params={"limit": limit}, valid=False), 422, "limit")
        for cursor in ("!!!not-base64!!!", "x" * 2000, "%ff%fe"):
            with soft.check((path, "cursor", cursor)):
                problem(env.admin.get(path, expect=None, params={"cursor": cursor}, valid=False), 422, "cursor")
        # A well-formed cursor nobody gave out still gives a page, not an error.
        r = env.admin.get(path, expect=None, params={"cursor": "enp6"}, valid=False)
        assert r.status_code in (200, 422), (path, r.status_code, r.text)
    problem(env.admin.get("/users", expect=None, params=[("limit", "1"), ("limit", "2")], valid=False), 422, "limit")
    for path in ("/users", "/clients", "/scopes", "/groups", "/services", f"/groups/{unique('g')}/members",
                 "/keys/rotate"):
        for raw in (b"[1, 2]", b"{\"a\":", b"\x00\x01", b"1e999999", b"{\"name\": {\"$gt\": \"\"}}"):
            with soft.check((path, raw)):
                r = env.admin.post(path, data=raw, headers={"Content-Type": "application/json"}, valid=False)
                assert 400 <= r.status_code < 500, (path, raw, r.status_code, r.text)
                problem(r, r.status_code)
    # Deeply nested JSON is refused, not a crash.
    deep = ("[" * 5000 + "]" * 5000).encode()
    r = env.admin.post("/users", data=b'{"username": ' + deep + b"}", valid=False,
                       headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    # Path parameters with odd characters.
    for odd in ("..%2F..%2Fetc", "%E2%80%AE", "x" * 3000, "%zz", "%2F"):  # (NUL: its own test below)
        with soft.check(("path", odd[:20])):
            r = requests.get(env.admin.url("/users/" + odd), headers={"Authorization": "Bearer " + env.admin.token},
                             timeout=10)
            assert 400 <= r.status_code < 500, (odd, r.status_code, r.text[:300])
    # Unknown method on a known path, unknown path.
    r = requests.put(env.admin.url("/users"), headers={"Authorization": "Bearer " + env.admin.token}, timeout=10)
    assert 400 <= r.status_code < 500, r.status_code
    r = requests.get(env.admin.url("/nothing-here"), headers={"Authorization": "Bearer " + env.admin.token},
                     timeout=10)
    assert r.status_code == 404, r.status_code
    # The server is fine afterwards.
    env.admin.get("/stats")
    soft.done()


def test_nul_characters_are_refused_not_500(env):
    """U+0000 cannot be stored in PostgreSQL text, and is in no valid name, address or URL: wherever it comes in
    (a path parameter, a query parameter, a JSON string, a cursor that decodes to it), the answer is a 4xx."""
    soft = Soft()
    user, _ = env.new_user()
    group = unique("nulg")
    env.admin.post("/groups", {"name": group}, 201)
    auth = {"Authorization": "Bearer " + env.admin.token}
    for method, path in [("GET", "/users/%00"), ("GET", "/clients/%00"), ("GET", "/scopes/%00"),
                         ("GET", "/groups/%00"), ("GET", "/services/%00"), ("GET", "/events/%00"),
                         ("GET", "/providers/%00"), ("DELETE", "/grants/%00"), ("POST", "/keys/%00/revoke"),
                         ("GET", "/users/a%00b/sessions"), ("DELETE", f"/groups/{group}/members/%00"),
                         ("GET", "/users?query=%00"), ("GET", "/users?group=a%00"), ("GET", "/audit?actor=%00"),
                         ("GET", "/audit?target=user:%00")]:
        with soft.check((method, path)):
            r = requests.request(method, env.admin.url(path), headers=auth, timeout=10)
            assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    # Cursors are base64url of a sort key: "AA" is one NUL byte, "MCAA" is "0 " and a NUL.
    for path, cursor in [("/users", "AA"), ("/audit", "AA"), ("/clients", "AA"), ("/events", "MCAA"),
                         ("/scopes", "AA"), ("/groups", "AA")]:
        with soft.check((path, "cursor", cursor)):
            r = env.admin.get(path, expect=None, params={"cursor": cursor}, valid=False)
            assert r.status_code in (200, 422), (r.status_code, r.text[:300])
    for method, path, body in [
            ("POST", "/users", {"username": unique("nul"), "name": "a\u0000b"}),
            ("POST", "/users", {"username": unique("nul"), "email": "a\u0000@example.com"}),
            ("POST", "/users", {"username": unique("nul") + "\u0000"}),
            ("PATCH", f"/users/{q(user['id'])}", {"name": "x\u0000"}),
            ("POST", "/scopes", {"name": unique("nul"), "description": "d\u0000"}),
            ("POST", "/clients", {"name": "c\u0000"}),
            ("POST", "/clients", {"name": "c", "redirect_uris": ["https://app.example.com/\u0000"]}),
            ("POST", f"/groups/{group}/members", {"user": "nul\u0000probe"}),
            ("POST", f"/groups/{group}/members", {"user": user["id"], "role": "r\u0000"}),
            ("POST", "/services", {"name": unique("nul"), "permissions_url": "https://svc.example.com/\u0000"})]:
        with soft.check((method, path, body)):
            r = env.admin.call(method, path, body=body, valid=False)
            assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    soft.done()


# --- last: revoking the signing key (it invalidates every token signed so far) ----------------------------------------------
def test_revoking_the_signing_key_replaces_it_and_ends_its_tokens(env):
    signing = [k for k in env.admin.get("/keys").json()["items"] if k["status"] == "signing"][0]
    old_reader = env.reader
    r = env.admin.post(f"/keys/{q(signing['kid'])}/revoke", expect=200)
    replacement = r.json()["replacement"]
    assert r.json()["revoked"] == signing["kid"] and replacement and replacement != signing["kid"], r.json()
    # At once: the revoked key is gone from the JWKS, tokens it signed are refused, the replacement signs.
    soft = Soft()
    kids = jwks_kids(env)
    with soft.check("JWKS right after revoking the signing key"):
        assert signing["kid"] not in kids and replacement in kids, kids
    with soft.check("a token of the revoked key right after its revocation"):
        problem(old_reader.get("/users", expect=None, valid=False), 401)
        assert not env.active(old_reader.token), "introspection still says active"
    with soft.check("a new token right after revoking the signing key"):
        env.admin.renew()
        assert jwt.get_unverified_header(env.admin.token)["kid"] == replacement, "still signed by the revoked key"
    # (At the latest after the next key reload.)
    wait_until(lambda: signing["kid"] not in jwks_kids(env) and replacement in jwks_kids(env),
               "the JWKS to drop the revoked signing key", timeout=20)
    problem(old_reader.get("/users", expect=None, valid=False), 401)
    assert not env.active(old_reader.token)
    env.admin.renew()
    assert jwt.get_unverified_header(env.admin.token)["kid"] == replacement
    keys = {k["kid"]: k for k in env.admin.get("/keys").json()["items"]}
    assert keys[signing["kid"]]["status"] == "revoked" and keys[replacement]["status"] == "signing", keys
    env.audited("key.revoked", "key:" + signing["kid"])
    soft.done()
