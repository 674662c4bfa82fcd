"""End-to-end fixtures: run the real `gatehouse` binary and drive it over real HTTP.

One server per pytest session: `gatehouse migrate`, then `gatehouse serve` on a free loopback port,
against E2E_DATABASE_URL (e.g. PostgreSQL) or a fresh SQLite file. Test data gets random names so a
reused database never collides. Binary: GATEHOUSE_BIN, default .build/debug/gatehouse.
"""

import base64
import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote_plus

import jwt
import pytest
import requests

# oauthlib (requests-oauthlib) refuses plain http; our issuer is http://127.0.0.1.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("GATEHOUSE_BIN", ROOT / ".build" / "debug" / "gatehouse"))
STARTUP_TIMEOUT = 60
_server_log: Path | None = None
# Logs of other processes tests started, (title, path): shown like the server's log when the run fails.
extra_logs: list[tuple[str, Path]] = []


def unique(prefix: str) -> str:
    """A name no earlier session used (letters and digits only)."""
    return prefix + secrets.token_hex(4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic_auth(client_id: str, secret: str) -> str:
    """Authorization header value per RFC 6749 §2.3.1 (form-urlencode, then base64)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class Gatehouse:
    """The running server plus helpers for its CLI (same database) and endpoints."""

    def __init__(self, database: str, issuer: str):
        self.database = database
        self.issuer = issuer
        self.token_endpoint = issuer + "/oauth2/token"
        self.revocation_endpoint = issuer + "/oauth2/revoke"
        self.introspection_endpoint = issuer + "/oauth2/introspect"
        self.jwks_uri = issuer + "/.well-known/jwks.json"

    # --- CLI -------------------------------------------------------------------------------
    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN), *args, "--database", self.database],
            input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=120,
        )

    def cli(self, *args: str, stdin: str | None = None):
        """Run a command with --json, insist on success, return the parsed JSON."""
        p = self.run(*args, "--json", stdin=stdin)
        assert p.returncode == 0, f"gatehouse {' '.join(args)} failed ({p.returncode}): {p.stderr}"
        return json.loads(p.stdout)

    def create_client(self, *, scope: str | None = None, redirect_uris=(), grant_types=(),
                      resources=(), public=False, allow_password_grant=False) -> dict:
        args = ["clients", "create", "--name", unique("e2e-client-")]
        if scope:
            args += ["--scope", scope]
        for u in redirect_uris:
            args += ["--redirect-uri", u]
        for g in grant_types:
            args += ["--grant-type", g]
        for r in resources:
            args += ["--resource", r]
        if public:
            args.append("--public")
        if allow_password_grant:
            args.append("--allow-password-grant")
        client = self.cli(*args)
        assert client["client_id"]
        assert public or client["client_secret"]
        return client

    def create_user(self) -> tuple[dict, str]:
        """A new user with a random password (sent on stdin); returns (user JSON, password)."""
        password = secrets.token_urlsafe(18)
        user = self.cli("users", "create", "--username", unique("user"),
                        "--password-stdin", stdin=password + "\n")
        return user, password

    # --- HTTP ------------------------------------------------------------------------------
    def token(self, client: dict | None = None, secret: str | None = None, **form) -> requests.Response:
        """POST /oauth2/token with form parameters and HTTP Basic client authentication."""
        headers = {}
        if client is not None:
            headers["Authorization"] = basic_auth(client["client_id"], secret or client["client_secret"])
        return requests.post(self.token_endpoint, data=form, headers=headers, timeout=30)

    def introspect(self, token: str, client: dict) -> dict:
        r = requests.post(self.introspection_endpoint, data={"token": token}, timeout=30,
                          headers={"Authorization": basic_auth(client["client_id"], client["client_secret"])})
        assert r.status_code == 200, r.text
        assert "no-store" in r.headers.get("Cache-Control", "")
        return r.json()

    def decode(self, token: str, audience: str | None = None) -> dict:
        """Verify an access token against the server's JWKS as a resource server would."""
        header = jwt.get_unverified_header(token)
        assert header.get("typ") == "at+jwt", header
        key = jwt.PyJWKClient(self.jwks_uri, cache_jwk_set=False).get_signing_key_from_jwt(token)
        assert header["alg"] == key.algorithm_name, (header, key.algorithm_name)
        claims = jwt.decode(
            token, key, algorithms=[key.algorithm_name], audience=audience or self.issuer,
            issuer=self.issuer,
            options={"require": ["iss", "sub", "aud", "client_id", "jti", "iat", "exp"]},
        )
        return claims


def wait_until_ok(url: str, proc: subprocess.Popen, title: str, log_text) -> None:
    """Until `url` answers 200; fails with the process log if it exits or takes too long."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{title} exited with {proc.returncode}:\n{log_text()}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{title}: {url} not answering 200 after {STARTUP_TIMEOUT}s:\n{log_text()}")
        time.sleep(0.1)


def login(gh, client, user, scope):
    """A password-grant token response for `user` (as returned by the `user` fixture)."""
    r = gh.token(client, grant_type="password", username=user[0]["username"], password=user[1], scope=scope)
    assert r.status_code == 200, r.text
    return r.json()


def oauth_error(r: requests.Response, status: int, error: str) -> dict:
    """Assert an RFC 6749 §5.2 error response and return its body."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body.get("error") == error, body
    return body


@pytest.fixture(scope="session")
def gh(tmp_path_factory) -> Gatehouse:
    global _server_log
    if not BIN.is_file():
        pytest.fail(f"gatehouse binary not found at {BIN}: run `swift build` or set GATEHOUSE_BIN")
    tmp = tmp_path_factory.mktemp("gatehouse")
    database = os.environ.get("E2E_DATABASE_URL") or f"sqlite://{tmp}/gh.sqlite"
    port = free_port()
    server = Gatehouse(database, f"http://127.0.0.1:{port}")

    migrate = server.run("migrate")
    assert migrate.returncode == 0, f"migrate failed: {migrate.stderr}"

    _server_log = tmp / "server.log"
    log = open(_server_log, "w")
    proc = subprocess.Popen(
        [str(BIN), "serve", "--database", database, "--host", "127.0.0.1",
         "--port", str(port), "--issuer", server.issuer],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_ok(server.issuer + "/.well-known/openid-configuration", proc, "gatehouse serve",
                      _server_log.read_text)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def user(gh):
    """A user made with the CLI: (its --json output, its password)."""
    return gh.create_user()


@pytest.fixture(scope="session")
def scopes(gh) -> tuple[str, str]:
    """Two fresh custom scopes, (read, write)."""
    names = unique("read"), unique("write")
    for name in names:
        p = gh.run("scopes", "create", name, "--description", f"e2e scope {name}")
        assert p.returncode == 0, p.stderr
    return names


def pytest_terminal_summary(terminalreporter, exitstatus):
    """On failure, show the end of the server's log."""
    if exitstatus != 0 and _server_log and _server_log.exists():
        lines = _server_log.read_text(errors="replace").splitlines()[-150:]
        terminalreporter.section(f"gatehouse serve log (last {len(lines)} lines of {_server_log})")
        terminalreporter.write_line("\n".join(lines))
    if exitstatus != 0:
        for title, path in extra_logs:
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-80:]
                terminalreporter.section(f"{title} log (last {len(lines)} lines of {path})")
                terminalreporter.write_line("\n".join(lines))
