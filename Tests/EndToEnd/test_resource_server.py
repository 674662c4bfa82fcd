"""Proves that APIs can trust Gatehouse access tokens, end to end, over real HTTP:

* `notes-api` (the example API built on our Swift resource-server library) in JWKS mode accepts a
  Gatehouse token issued for its audience (RFC 8707 `resource`) and enforces its scopes; it refuses a
  missing or non-Bearer Authorization header, a token in the query string, tokens for another audience,
  tampered, forged (own key under Gatehouse's kid, `alg: none`) and garbage tokens, with the RFC 6750 §3
  challenges and JSON bodies of its contract;
* in introspection mode (RFC 7662, cache off) it sees a revocation (RFC 7009) and an expiry at once;
* a live `gatehouse keys rotate` (to RS256) costs no request: a client hammering the API with fresh
  tokens throughout gets only 200s, including for tokens signed with the new key and the old one;
* the other way round, a plain PyJWT API (pyjwt_api.py) that knows only the issuer URL verifies our
  tokens and rejects one for another audience.

notes-api runs as its own process on a free port (binary: NOTES_API_BIN, default .build/debug/notes-api).
Tests that need server flags the shared Gatehouse lacks (short token lifetime, fast key reload) get a
Gatehouse of their own on a fresh SQLite file, also on the PostgreSQL pass, so the shared one is not
disturbed.
"""

import base64
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from conftest import BIN, Gatehouse, basic_auth, extra_logs, free_port, wait_until, wait_until_ok

NOTES_API = Path(os.environ.get("NOTES_API_BIN", BIN.parent / "notes-api"))
PYJWT_API = Path(__file__).with_name("pyjwt_api.py")
READ, WRITE = "notes:read", "notes:write"  # hard-coded in notes-api, so not unique per run
OTHER_RESOURCE = "https://other-api.example.com/"
TIMEOUT = 10  # seconds, for every HTTP request to an API
ROTATION_TIMEOUT = 30

MISSING = 'Bearer realm="api"'  # RFC 6750 §3.1: no error code when no credentials were sent
INVALID_TOKEN = 'Bearer realm="api", error="invalid_token"'


# --- processes ---------------------------------------------------------------------------------------
class Service:
    """A process started by these tests, output to a log file; stopped by its PID."""

    live: list["Service"] = []

    def __init__(self, title: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.title = title
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        Service.live.append(self)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, url: str) -> None:
        wait_until_ok(url, self.proc, self.title, self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to our child's PID
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        Service.live.remove(self)


@contextmanager
def running(title: str, argv: list[str], log_path: Path, ready_url: str, env: dict | None = None):
    service = Service(title, argv, log_path, env)
    try:
        service.wait_ready(ready_url)
        yield service
    finally:
        service.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    """When a test fails, the logs of the processes it ran against are shown at the end of the run."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        for service in Service.live:
            if (service.title, service.log_path) not in extra_logs:
                extra_logs.append((service.title, service.log_path))


@dataclass
class API:
    url: str
    audience: str
    service: Service


@contextmanager
def notes_api(tmp: Path, issuer: str, introspection_client: dict | None = None):
    """notes-api on a free port, its audience its own URL; JWKS mode, or introspection as that client."""
    if not NOTES_API.is_file():
        pytest.fail(f"notes-api binary not found at {NOTES_API}: run `swift build` or set NOTES_API_BIN")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(NOTES_API), "--issuer", issuer, "--audience", url, "--host", "127.0.0.1", "--port", str(port)]
    env = None
    mode = "jwks"
    if introspection_client is not None:
        mode = "introspect"
        argv += ["--introspect", "--client-id", introspection_client["client_id"], "--introspection-cache-ttl", "0"]
        env = {**os.environ, "NOTES_API_CLIENT_SECRET": introspection_client["client_secret"]}
    with running(f"notes-api ({mode}, {url})", argv, tmp / f"notes-api-{mode}-{port}.log",
                 url + "/healthz", env) as service:
        yield API(url, url, service)


def ensure_notes_scopes(g: Gatehouse) -> None:
    for name in (READ, WRITE):
        p = g.run("scopes", "create", name, "--description", f"notes-api {name}")
        assert p.returncode == 0 or "already exists" in p.stderr, f"scopes create {name}: {p.stderr}"


@contextmanager
def private_gatehouse(tmp: Path, *flags: str):
    """A Gatehouse of our own on a fresh SQLite file, started with extra `serve` flags."""
    port = free_port()
    g = Gatehouse(f"sqlite://{tmp}/gatehouse.sqlite", f"http://127.0.0.1:{port}")
    migrate = g.run("migrate")
    assert migrate.returncode == 0, f"migrate failed: {migrate.stderr}"
    argv = [str(BIN), "serve", "--database", g.database, "--host", "127.0.0.1", "--port", str(port),
            "--issuer", g.issuer, *flags]
    with running(f"gatehouse serve {' '.join(flags)}", argv, tmp / "gatehouse.log",
                 g.issuer + "/.well-known/openid-configuration"):
        ensure_notes_scopes(g)
        yield g


# --- HTTP helpers ------------------------------------------------------------------------------------
def access_token(g: Gatehouse, client: dict, scope: str = f"{READ} {WRITE}", resource: str | None = None) -> str:
    form = {"grant_type": "client_credentials", "scope": scope}
    if resource is not None:
        form["resource"] = resource
    r = g.token(client, **form)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def get_notes(api: API, headers: dict | None = None, **kwargs) -> requests.Response:
    return requests.get(api.url + "/notes", headers=headers or {}, timeout=TIMEOUT, **kwargs)


def post_note(api: API, token: str, text: str) -> requests.Response:
    return requests.post(api.url + "/notes", json={"text": text}, headers=bearer(token), timeout=TIMEOUT)


def assert_refused(r: requests.Response, status: int, error: str, challenge: str | None) -> None:
    """`challenge` None: only checks that it is a Bearer challenge of realm "api"."""
    assert r.status_code == status, (r.status_code, dict(r.headers), r.text)
    assert r.json() == {"error": error}, r.text
    got = r.headers.get("WWW-Authenticate", "")
    if challenge is None:
        assert got.startswith('Bearer realm="api"'), got
    else:
        assert got == challenge, got


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def own_private_key(alg: str):
    """A fresh key of the kind `alg` signs with, for forgeries."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise AssertionError(f"no forging key for {alg}")


# --- shared Gatehouse, notes-api in JWKS mode --------------------------------------------------------
@pytest.fixture(scope="module")
def notes_scopes(gh):
    ensure_notes_scopes(gh)


@pytest.fixture(scope="module")
def jwks_api(gh, notes_scopes, tmp_path_factory):
    with notes_api(tmp_path_factory.mktemp("notes-api-jwks"), gh.issuer) as api:
        yield api


@pytest.fixture(scope="module")
def client(gh, jwks_api):
    return gh.create_client(scope=f"{READ} {WRITE}", grant_types=["client_credentials"],
                            resources=[jwks_api.audience, OTHER_RESOURCE])


@pytest.fixture(scope="module")
def token(gh, client, jwks_api) -> str:
    """Both scopes, for the API's audience. Valid for the module (default lifetime 10 min)."""
    return access_token(gh, client, resource=jwks_api.audience)


def test_notes_api_health_and_banner(jwks_api):
    assert requests.get(jwks_api.url + "/healthz", timeout=TIMEOUT).status_code == 200
    banner = f"notes-api listening on {jwks_api.url}"
    wait_until(lambda: banner in jwks_api.service.log(), lambda: f"a '{banner}' line:\n{jwks_api.service.log()}",
               timeout=5)


def test_jwks_mode_read_and_write(gh, client, jwks_api, token):
    claims = gh.decode(token, audience=jwks_api.audience)
    assert claims["aud"] in (jwks_api.audience, [jwks_api.audience])

    r = get_notes(jwks_api, bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == client["client_id"]
    before = r.json()["notes"]

    r = post_note(jwks_api, token, "buy milk")
    assert r.status_code == 201, r.text
    note = r.json()
    assert note["text"] == "buy milk" and note["id"]

    r = get_notes(jwks_api, bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"subject": client["client_id"], "notes": before + [note]}


def test_notes_are_per_subject(gh, client, jwks_api, token):
    assert post_note(jwks_api, token, "mine").status_code == 201
    other = gh.create_client(scope=READ, grant_types=["client_credentials"], resources=[jwks_api.audience])
    r = get_notes(jwks_api, bearer(access_token(gh, other, READ, jwks_api.audience)))
    assert r.status_code == 200, r.text
    assert r.json() == {"subject": other["client_id"], "notes": []}


def test_missing_authorization_header(jwks_api):
    assert_refused(get_notes(jwks_api), 401, "auth.authorization_header_missing", MISSING)
    r = requests.post(jwks_api.url + "/notes", json={"text": "x"}, timeout=TIMEOUT)
    assert_refused(r, 401, "auth.authorization_header_missing", MISSING)


def test_basic_scheme_is_refused(client, jwks_api):
    r = get_notes(jwks_api, {"Authorization": basic_auth(client["client_id"], client["client_secret"])})
    assert_refused(r, 401, "auth.authorization_token_type_not_supported", None)


def test_token_in_query_string_is_ignored(jwks_api, token):
    assert_refused(get_notes(jwks_api, params={"access_token": token}), 401,
                   "auth.authorization_header_missing", MISSING)


def test_token_for_another_audience_is_refused(gh, client, jwks_api):
    other = access_token(gh, client, resource=OTHER_RESOURCE)
    assert gh.decode(other, audience=OTHER_RESOURCE)["client_id"] == client["client_id"]  # valid, elsewhere
    assert_refused(get_notes(jwks_api, bearer(other)), 401, "invalid_token", INVALID_TOKEN)

    default = access_token(gh, client)  # no resource: the default audience (the issuer)
    assert gh.decode(default)["client_id"] == client["client_id"]
    assert_refused(get_notes(jwks_api, bearer(default)), 401, "invalid_token", INVALID_TOKEN)


def test_missing_scope_is_403(gh, client, jwks_api):
    read_only = access_token(gh, client, READ, jwks_api.audience)
    assert get_notes(jwks_api, bearer(read_only)).status_code == 200
    assert_refused(post_note(jwks_api, read_only, "nope"), 403, "insufficient_scope",
                   f'Bearer realm="api", error="insufficient_scope", scope="{WRITE}"')

    write_only = access_token(gh, client, WRITE, jwks_api.audience)
    assert post_note(jwks_api, write_only, "ok").status_code == 201
    assert_refused(get_notes(jwks_api, bearer(write_only)), 403, "insufficient_scope",
                   f'Bearer realm="api", error="insufficient_scope", scope="{READ}"')


def test_tampered_tokens_are_refused(jwks_api, token):
    header, payload, signature = token.split(".")
    i = len(signature) // 2  # a middle character: all 6 bits are signature bits
    flipped = signature[:i] + ("A" if signature[i] != "A" else "B") + signature[i + 1:]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    for bad in (f"{header}.{payload}.{flipped}",
                f"{header}.{b64url(json.dumps(claims).encode())}.{signature}",
                f"{header}.{payload}.",
                "not-a-jwt"):
        assert_refused(get_notes(jwks_api, bearer(bad)), 401, "invalid_token", INVALID_TOKEN)
    assert get_notes(jwks_api, bearer(token)).status_code == 200  # the original still works


def test_forged_tokens_are_refused(jwks_api, token):
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})  # right iss, aud, scope, exp

    # Our own key under Gatehouse's kid and algorithm (ES256 unless the database was rotated).
    forged = jwt.encode(claims, own_private_key(header["alg"]), algorithm=header["alg"],
                        headers={"kid": header["kid"], "typ": "at+jwt"})
    forged_header = jwt.get_unverified_header(forged)
    assert (forged_header["kid"], forged_header["alg"], forged_header["typ"]) == (header["kid"], header["alg"], "at+jwt")
    assert_refused(get_notes(jwks_api, bearer(forged)), 401, "invalid_token", INVALID_TOKEN)

    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": header["kid"], "typ": "at+jwt"})
    assert_refused(get_notes(jwks_api, bearer(unsigned)), 401, "invalid_token", INVALID_TOKEN)


# --- introspection mode ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def introspection_api(gh, notes_scopes, tmp_path_factory):
    api_credentials = gh.create_client(grant_types=["client_credentials"])  # the API's own confidential client
    with notes_api(tmp_path_factory.mktemp("notes-api-introspect"), gh.issuer, api_credentials) as api:
        yield api


def test_introspection_mode_sees_revocation_at_once(gh, introspection_api):
    c = gh.create_client(scope=f"{READ} {WRITE}", grant_types=["client_credentials"],
                         resources=[introspection_api.audience, OTHER_RESOURCE])
    t = access_token(gh, c, resource=introspection_api.audience)
    r = get_notes(introspection_api, bearer(t))
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == c["client_id"]
    assert post_note(introspection_api, t, "before revocation").status_code == 201

    r = requests.post(gh.revocation_endpoint, data={"token": t, "token_type_hint": "access_token"},
                      headers={"Authorization": basic_auth(c["client_id"], c["client_secret"])}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert_refused(get_notes(introspection_api, bearer(t)), 401, "invalid_token", INVALID_TOKEN)
    assert_refused(post_note(introspection_api, t, "after revocation"), 401, "invalid_token", INVALID_TOKEN)

    fresh = access_token(gh, c, READ, introspection_api.audience)  # only that token is dead
    assert get_notes(introspection_api, bearer(fresh)).status_code == 200
    assert_refused(post_note(introspection_api, fresh, "x"), 403, "insufficient_scope",
                   f'Bearer realm="api", error="insufficient_scope", scope="{WRITE}"')
    elsewhere = access_token(gh, c, resource=OTHER_RESOURCE)
    assert_refused(get_notes(introspection_api, bearer(elsewhere)), 401, "invalid_token", INVALID_TOKEN)


# Expiry is shown in introspection mode: Gatehouse reports a token inactive the second its `exp` passes.
# In JWKS mode the library allows 60 s of clock-skew leeway on `exp`, so an expired token would need
# a minute's wait here; the Swift unit tests cover that path with a settable clock.
@pytest.fixture(scope="module")
def short_lived(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gatehouse-short-ttl")
    with private_gatehouse(tmp, "--access-token-ttl", "2s") as g:
        api_credentials = g.create_client(grant_types=["client_credentials"])
        with notes_api(tmp, g.issuer, api_credentials) as api:
            yield g, api


def test_introspection_mode_refuses_expired_token(short_lived):
    g, api = short_lived
    c = g.create_client(scope=READ, grant_types=["client_credentials"], resources=[api.audience])
    t = access_token(g, c, READ, api.audience)
    exp = jwt.decode(t, options={"verify_signature": False})["exp"]
    assert get_notes(api, bearer(t)).status_code == 200

    def refused():  # the cache is off: every request is introspected
        r = get_notes(api, bearer(t))
        return r.status_code != 200 and (r, time.time())  # (a Response is falsy when not ok)

    r, at = wait_until(refused, f"the API to refuse the token once its exp {exp} passed",
                       timeout=max(0.0, exp - time.time()) + 5, interval=0.1)
    assert at >= exp - 0.5, f"refused at {at:.2f}, before its exp {exp}"
    assert_refused(r, 401, "invalid_token", INVALID_TOKEN)


# --- live key rotation -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rotating(tmp_path_factory):
    """A Gatehouse that reloads keys every second (its own SQLite file: rotation must not reach the
    shared server) and a JWKS-mode notes-api in front of it."""
    tmp = tmp_path_factory.mktemp("gatehouse-rotation")
    with private_gatehouse(tmp, "--key-reload-interval", "1s") as g:
        with notes_api(tmp, g.issuer) as api:
            yield g, api


def test_key_rotation_without_a_failed_request(rotating):
    g, api = rotating
    c = g.create_client(scope=READ, grant_types=["client_credentials"], resources=[api.audience])
    old_token = access_token(g, c, READ, api.audience)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    assert get_notes(api, bearer(old_token)).status_code == 200

    results: list[tuple] = []  # (what, status, kid, detail)
    stop = threading.Event()
    new_kid_accepted = threading.Event()

    def hammer():
        session = requests.Session()
        while not stop.is_set():
            try:
                r = g.token(c, grant_type="client_credentials", scope=READ, resource=api.audience)
                if r.status_code != 200:
                    results.append(("token", r.status_code, None, r.text))
                    stop.wait(0.05)  # pacing, not synchronisation: no busy loop on a failing server
                    continue
                t = r.json()["access_token"]
                kid = jwt.get_unverified_header(t)["kid"]
                a = session.get(api.url + "/notes", headers=bearer(t), timeout=TIMEOUT)
                results.append(("api", a.status_code, kid, "" if a.status_code == 200 else
                                f"{a.headers.get('WWW-Authenticate')} {a.text}"))
                if a.status_code == 200 and kid != old_kid:
                    new_kid_accepted.set()
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                results.append(("error", None, None, repr(e)))
                stop.wait(0.05)

    worker = threading.Thread(target=hammer, name="hammer", daemon=True)
    worker.start()
    try:
        wait_until(lambda: len(results) >= 5, "traffic before the rotation", timeout=10)
        before = {k["kid"] for k in g.cli("keys", "list")}
        # --now: the new key signs at once (the hardest case for a verifier: an unknown kid it must fetch);
        # the default publishes the key first (test_hardening.py).
        g.cli("keys", "rotate", "--algorithm", "RS256", "--now")
        (new_kid,) = {k["kid"] for k in g.cli("keys", "list")} - before
        if new_kid_accepted.wait(ROTATION_TIMEOUT):
            switched = len(results)
            wait_until(lambda: len(results) >= switched + 5, "a little traffic after the switch", timeout=10)
    finally:
        stop.set()
        worker.join(timeout=2 * TIMEOUT)
    assert not worker.is_alive()

    failures = [x for x in results if x[0] != "api" or x[1] != 200]
    kids = {x[2] for x in results if x[0] == "api"}
    summary = f"{len(results)} requests, kids seen {sorted(k for k in kids if k)}"
    assert not failures, f"{len(failures)} failed of {summary}: {failures[:10]}"
    assert new_kid_accepted.is_set(), f"no token with a new kid accepted within {ROTATION_TIMEOUT}s; {summary}"
    assert kids <= {old_kid, new_kid}, summary
    assert any(x[2] == old_kid for x in results), "no traffic before the switch"

    new_token = access_token(g, c, READ, api.audience)
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert jwt.get_unverified_header(new_token)["alg"] == "RS256"
    assert get_notes(api, bearer(new_token)).status_code == 200
    assert get_notes(api, bearer(old_token)).status_code == 200  # issued before the rotation: still good


# --- interop: a PyJWT API verifying Gatehouse tokens -------------------------------------------------
@pytest.fixture(scope="module")
def pyjwt_api(gh, tmp_path_factory):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, str(PYJWT_API), "--issuer", gh.issuer, "--audience", url, "--port", str(port)]
    with running(f"pyjwt_api.py ({url})", argv, tmp_path_factory.mktemp("pyjwt-api") / "pyjwt-api.log",
                 url + "/healthz") as service:
        yield API(url, url, service)


def test_pyjwt_api_verifies_gatehouse_tokens(gh, notes_scopes, pyjwt_api):
    c = gh.create_client(scope=READ, grant_types=["client_credentials"],
                         resources=[pyjwt_api.audience, OTHER_RESOURCE])
    whoami = pyjwt_api.url + "/whoami"

    r = requests.get(whoami, headers=bearer(access_token(gh, c, READ, pyjwt_api.audience)), timeout=TIMEOUT)
    assert r.status_code == 200, (r.text, pyjwt_api.service.log())
    assert r.json() == {"sub": c["client_id"], "client_id": c["client_id"], "scope": READ}

    for wrong in (access_token(gh, c, READ, OTHER_RESOURCE), access_token(gh, c, READ)):
        r = requests.get(whoami, headers=bearer(wrong), timeout=TIMEOUT)
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="pyjwt-api", error="invalid_token"'
    assert requests.get(whoami, timeout=TIMEOUT).status_code == 401
