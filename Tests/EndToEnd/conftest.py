"""End-to-end fixtures: run the real `gatehouse` binary and drive it over real HTTP.

One server per pytest session: `gatehouse migrate`, then `gatehouse serve` on a free loopback port,
against E2E_DATABASE_URL (e.g. PostgreSQL) or a fresh SQLite file. Test data gets random names so a
reused database never collides. Binary: GATEHOUSE_BIN, default .build/debug/gatehouse.
"""

import base64
from contextlib import contextmanager
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, quote_plus, urljoin, urlsplit, urlunsplit

import jwt
import pytest
import requests

# oauthlib (requests-oauthlib) refuses plain http; our issuer is http://127.0.0.1.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
# Authlib's metadata checks refuse plain http the same way.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

# Servers the tests start and stop (SIGTERM) skip the shutdown drain (`shutdown_grace`, default 5 s) unless
# a test asks for it: test_operations.py tests the drain itself.
os.environ.setdefault("GATEHOUSE_SHUTDOWN_GRACE", "0")
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
                      resources=(), public=False, allow_password_grant=False,
                      post_logout_redirect_uris=(), skip_consent=False, name: str | None = None) -> dict:
        args = ["clients", "create", "--name", name or unique("e2e-client-")]
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
        for u in post_logout_redirect_uris:
            args += ["--post-logout-redirect-uri", u]
        if skip_consent:
            args.append("--skip-consent")
        client = self.cli(*args)
        assert client["client_id"]
        assert public or client["client_secret"]
        return client

    def create_user(self, *, email: str | None = None, name: str | None = None,
                    given_name: str | None = None, family_name: str | None = None,
                    picture: str | None = None, email_verified: bool = False) -> tuple[dict, str]:
        """A new user with a random password (sent on stdin) and the given profile claims;
        returns (user JSON, password)."""
        password = secrets.token_urlsafe(18)
        args = ["users", "create", "--username", unique("user")]
        for option, value in (("--email", email), ("--name", name), ("--given-name", given_name),
                              ("--family-name", family_name), ("--picture", picture)):
            if value is not None:
                args += [option, value]
        if email_verified:
            args.append("--email-verified")
        user = self.cli(*args, "--password-stdin", stdin=password + "\n")
        return user, password

    def metadata(self) -> dict:
        """The OpenID Provider metadata (/.well-known/openid-configuration)."""
        r = requests.get(self.issuer + "/.well-known/openid-configuration", timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

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


# --- Browser pages over plain HTTP ------------------------------------------------------------
@dataclass
class Form:
    """One <form> of a page: its attributes, its named fields (input, textarea, select) and its
    submit buttons as (name, value, text)."""
    attrs: dict
    fields: dict = field(default_factory=dict)
    checkboxes: dict = field(default_factory=dict)  # name -> value, whether checked or not
    buttons: list = field(default_factory=list)


class PageParser(HTMLParser):
    """Collects forms, `data-scope` list items and the text of elements with an id or class."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.scopes: list[str] = []
        self.texts: dict[str, str] = {}  # "#id" or ".class" or tag name -> text of the first such element
        self._open: list[tuple[str, list[str], list[str]]] = []  # (tag, keys, text parts)
        self._form: Form | None = None
        self._button: tuple[dict, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        keys = [tag]
        if a.get("id"):
            keys.append("#" + a["id"])
        keys += ["." + c for c in a.get("class", "").split()]
        if tag not in ("input", "meta", "link", "br", "img", "hr"):
            self._open.append((tag, keys, []))
        if tag == "form":
            self._form = Form(a)
            self.forms.append(self._form)
        elif tag == "li" and "data-scope" in a:
            self.scopes.append(a["data-scope"])
        elif tag == "input" and self._form is not None and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind == "checkbox":
                self._form.checkboxes[a["name"]] = a.get("value", "on")
            elif kind in ("submit", "image"):
                self._form.buttons.append((a["name"], a.get("value", ""), a.get("value", "")))
            else:
                self._form.fields[a["name"]] = a.get("value", "")
        elif tag == "button" and self._form is not None:
            self._button = (a, [])

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        if tag == "button" and self._button is not None and self._form is not None:
            a, text = self._button
            if a.get("type", "submit").lower() == "submit":
                self._form.buttons.append((a.get("name"), a.get("value", ""), "".join(text).strip()))
            self._button = None
        # Close the innermost open element of this tag, and the unclosed ones inside it (<p>, <li>).
        if any(t == tag for t, _, _ in self._open):
            while True:
                t, keys, parts = self._open.pop()
                text = " ".join("".join(parts).split())
                for key in keys:
                    self.texts.setdefault(key, text)
                if self._open:
                    self._open[-1][2].append(" " + "".join(parts) + " ")
                if t == tag:
                    break

    def handle_data(self, data):
        if self._open:
            self._open[-1][2].append(data)
        if self._button is not None:
            self._button[1].append(data)


@dataclass
class Page:
    url: str
    response: requests.Response
    forms: list
    scopes: list
    texts: dict

    def form(self, selector: str) -> Form | None:
        """The form with `#id`, or the first one with `.class`."""
        for f in self.forms:
            if selector.startswith("#") and f.attrs.get("id") == selector[1:]:
                return f
            if selector.startswith(".") and selector[1:] in f.attrs.get("class", "").split():
                return f
        return None

    def text(self, selector: str) -> str | None:
        return self.texts.get(selector)


def parse_page(r: requests.Response) -> Page:
    parser = PageParser()
    parser.feed(r.text)
    parser.close()
    return Page(r.url, r, parser.forms, parser.scopes, parser.texts)


def query(url: str) -> dict:
    """The query parameters of a URL, each with its single value (a repeated one fails)."""
    params = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in params.values()), f"repeated parameters in {url}"
    return {k: v[0] for k, v in params.items()}


class Browser:
    """A requests.Session playing a browser without JavaScript: it keeps cookies, follows redirects
    that stay on Gatehouse, and stops at a redirect that leaves it (a client's redirect URI), which it
    returns unfollowed."""

    def __init__(self, gh: "Gatehouse"):
        self.gh = gh
        self.session = requests.Session()
        self.history: list[requests.Response] = []
        origin = urlsplit(gh.issuer)
        self._origin = (origin.scheme, origin.netloc)

    def _ours(self, url: str) -> bool:
        u = urlsplit(url)
        return (u.scheme, u.netloc) == self._origin

    def _follow(self, r: requests.Response) -> requests.Response:
        for _ in range(10):
            self.history.append(r)
            if r.status_code not in (301, 302, 303, 307, 308):
                return r
            target = urljoin(r.url, r.headers["Location"])
            if not self._ours(target):
                return r
            r = self.session.get(target, allow_redirects=False, timeout=30)
        pytest.fail(f"redirect loop ending at {r.url}")

    def get(self, url: str, **kw) -> requests.Response:
        return self._follow(self.session.get(urljoin(self.gh.issuer, url), allow_redirects=False, timeout=30, **kw))

    def post(self, url: str, data, **kw) -> requests.Response:
        return self._follow(self.session.post(urljoin(self.gh.issuer, url), data=data,
                                              allow_redirects=False, timeout=30, **kw))

    def submit(self, page: Page, selector: str, values: dict | None = None,
               button: str | None = None, check: tuple = ()) -> requests.Response:
        """Submit a form of `page` like a browser: its fields, `values` typed in, the checkboxes named
        in `check`, and the submit button whose value is `button`. The first answer must be 303."""
        form = page.form(selector)
        assert form is not None, f"no form {selector} on {page.url}:\n{page.response.text[:2000]}"
        assert form.attrs.get("method", "get").lower() == "post", form.attrs
        data = dict(form.fields)
        data.update(values or {})
        for name in check:
            assert name in form.checkboxes, (name, form.checkboxes)
            data[name] = form.checkboxes[name]
        if button is not None:
            match = [b for b in form.buttons if b[1] == button]
            assert match, f"no submit button with value {button!r} in {selector}: {form.buttons}"
            if match[0][0]:
                data[match[0][0]] = match[0][1]
        action = urljoin(page.url, form.attrs.get("action") or page.url)
        first = self.session.post(action, data=data, allow_redirects=False, timeout=30)
        assert first.status_code == 303, f"POST {action}: {first.status_code}\n{first.text[:2000]}"
        return self._follow(first)

    def sign_in(self, username: str, password: str, page: Page | None = None) -> requests.Response:
        """Fill in the login form (of `page`, or GET /login) and submit it."""
        if page is None:
            r = self.get("/login")
            assert r.status_code == 200, r.text
            page = parse_page(r)
        return self.submit(page, "#login-form", {"username": username, "password": password})

    def authorize(self, url: str, user: tuple | None = None, decision: str | None = "allow",
                  remember: bool = False) -> tuple[requests.Response, list[Page]]:
        """Play the whole authorization request at `url`: sign in with `user` = (JSON, password) when
        the login page appears, answer the consent page with `decision` (and `remember`). Returns the
        last response (a redirect leaving Gatehouse, or a page that is neither login nor consent) and
        the pages seen on the way."""
        r = self.get(url)
        pages: list[Page] = []
        for _ in range(4):
            if r.status_code != 200:
                return r, pages
            page = parse_page(r)
            pages.append(page)
            if page.form("#login-form") is not None and user is not None:
                r = self.sign_in(user[0]["username"], user[1], page)
                user = None  # only once: a second login page means the first was refused
            elif page.form("#consent-form") is not None and decision is not None:
                r = self.submit(page, "#consent-form", button=decision, check=("remember",) if remember else ())
                decision = None
            else:
                return r, pages
        pytest.fail(f"authorization did not finish; pages: {[p.url for p in pages]}")


@contextmanager
def serving(args: list[str], log_path: Path, ready_url: str, title: str, env: dict | None = None,
            verify: bool | str = True):
    """Run a server process with its output in `log_path`, wait until `ready_url` answers 200, and stop it
    (SIGTERM, then kill after 10 s) when the block ends. `verify`: requests' TLS verification (a CA file)."""
    log = open(log_path, "w")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_ok(ready_url, proc, title, lambda: log_path.read_text(errors="replace"), verify=verify)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_until(predicate, message="the condition", timeout: float = 10.0, interval: float = 0.05):
    """Poll `predicate()` until it returns something truthy and return that; fail the test once `timeout`
    seconds have passed without. `message` (a string, or a callable returning one, e.g. to describe the
    last state seen) says what was awaited. The predicate may itself fail the test (pytest.fail, assert)
    to stop waiting early. The one place the end-to-end tests sleep to synchronise: on a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        now = time.monotonic()
        if now >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {message() if callable(message) else message}")
        time.sleep(min(interval, deadline - now))


def wait_until_ok(url: str, proc: subprocess.Popen, title: str, log_text, verify: bool | str = True) -> None:
    """Until `url` answers 200; fails with the process log if it exits or takes too long."""
    def answering() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{title} exited with {proc.returncode}:\n{log_text()}")
        try:
            return requests.get(url, timeout=2, verify=verify).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answering, lambda: f"{title}: {url} to answer 200:\n{log_text()}", timeout=STARTUP_TIMEOUT,
               interval=0.1)


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


# --- Servers of a test's own (own database, own log) -------------------------------------------
PG_URL = os.environ.get("E2E_DATABASE_URL", "")
ON_PG = PG_URL.startswith("postgres")


def psql(sql: str, database: str = "postgres") -> None:
    """Runs `sql` on the suite's PostgreSQL server (the one E2E_DATABASE_URL names)."""
    psql_bin = shutil.which("psql")
    assert psql_bin, "psql not found (scripts/test installs PostgreSQL with its client)"
    u = urlsplit(PG_URL)
    subprocess.run(
        [psql_bin, "-v", "ON_ERROR_STOP=1", "-q", "-h", u.hostname, "-p", str(u.port), "-U", u.username or "postgres",
         "-d", database, "-c", sql],
        check=True, capture_output=True, text=True, timeout=60)


@contextmanager
def own_database(tmp_path: Path):
    """A database URL of this test's own: a new SQLite file, or a new PostgreSQL database (dropped after)."""
    if not ON_PG:
        yield f"sqlite://{tmp_path}/own-{secrets.token_hex(3)}.sqlite"
        return
    name = "gh_ops_" + secrets.token_hex(4)
    psql(f"CREATE DATABASE {name}")
    u = urlsplit(PG_URL)
    try:
        yield urlunsplit((u.scheme, u.netloc, "/" + name, u.query, ""))
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Server:
    """A `gatehouse serve` process whose standard error (the log) goes to its own file."""

    def __init__(self, database: str, tmp_path: Path, *flags: str, port: int | None = None):
        self.port = port or free_port()
        self.gh = Gatehouse(database, f"http://127.0.0.1:{self.port}")
        migrate = self.gh.run("migrate")
        assert migrate.returncode == 0, migrate.stderr
        self.log_path = tmp_path / f"server-{self.port}-{secrets.token_hex(3)}.log"
        self.log = open(self.log_path, "w")
        extra_logs.append((f"gatehouse serve on {self.port}", self.log_path))
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--database", database, "--port", str(self.port), *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        wait_until_ok(self.gh.issuer + "/readyz", self.proc, "gatehouse serve", self.text)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict]:
        lines = []
        for line in self.text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON log line: {line!r}")
        return lines

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        return code


@pytest.fixture
def server_factory(tmp_path):
    started: list[Server] = []

    def start(database: str, *flags: str, port: int | None = None) -> Server:
        s = Server(database, tmp_path, *flags, port=port)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()

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
    with serving([str(BIN), "serve", "--database", database, "--host", "127.0.0.1", "--port", str(port),
                  "--issuer", server.issuer],
                 _server_log, server.issuer + "/.well-known/openid-configuration", "gatehouse serve"):
        yield server


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
