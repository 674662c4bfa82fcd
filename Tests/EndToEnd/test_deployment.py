"""Deployment (docs/deployment.md): the files in deploy/ as shipped.

- deploy/gatehouse.service: `systemd-analyze verify` accepts it without one complaint about the unit (a
  copy whose Exec lines name the binary under test, since verify checks that it exists), and
  `systemd-analyze security --offline` rates it at most 2.0; every hardening line the docs promise is
  there; each `Environment=` variable is a Gatehouse setting that `gatehouse config show` resolves from the
  environment, with the key file where LoadCredential puts it (%d); TimeoutStopSec outlasts
  shutdown_grace + 30 s.
- deploy/nginx-gatehouse.conf, with only its ports, certificate paths and upstream port replaced, runs in
  nginx (`nginx -p PREFIX -c CONF -g 'daemon off;'`, as the current user, its pid, logs and temp files in
  the test's directory) on loopback with a self-signed certificate for 127.0.0.1, in front of a
  `gatehouse serve` started the way the unit starts it: the unit's environment with an environment file's
  overrides (database, ports, shutdown_grace 0), `gatehouse migrate` (ExecStartPre), then the ExecStart
  command with `--issuer https://127.0.0.1:PORT --trusted-proxies 127.0.0.1`. Through nginx: discovery lists
  https endpoints; a code flow with PKCE S256 by Authlib, the user signing in on the HTML pages, then the
  token exchange and UserInfo; every cookie is `__Host-`, `Secure`, `HttpOnly`, `Path=/`, without `Domain`;
  the access token verifies against the JWKS fetched over https with `iss` the https issuer; every response
  has HSTS; plain http redirects to https.
- The client address: the test client connects from 127.0.0.2 (not a trusted proxy) with a forged
  `X-Forwarded-For`. nginx appends the address it saw, and Gatehouse's access line names that address, not
  the forged one. The same header sent from 127.0.0.2 straight to Gatehouse's port is not believed.
- Probes and metrics: /healthz and /readyz answer through nginx; /metrics is answered 404 by nginx itself
  (never proxied), 404 by Gatehouse's public port, and 200 on metrics_port.

nginx and systemd-analyze come from the Debian packages nginx and systemd (scripts/test installs them
when it runs as root). A test that needs one that is missing is skipped only when it cannot be installed
here (not root, or no apt-get); otherwise it fails.
"""

import base64
import grp
import ipaddress
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import subprocess
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import conftest
from conftest import BIN, ROOT, Browser, Gatehouse, free_port, own_database, query, serving, unique, wait_until

UNIT = ROOT / "deploy" / "gatehouse.service"
NGINX_SITE = ROOT / "deploy" / "nginx-gatehouse.conf"
UNIT_BINARY = "/usr/local/bin/gatehouse"
# The test client's own source address: on loopback like nginx, but not a trusted proxy (127.0.0.1 is).
CLIENT_ADDRESS = "127.0.0.2"
FORGED = "203.0.113.66"
REDIRECT_URI = "https://rp.example.com/callback"
HSTS = "max-age=63072000"


# --- tools --------------------------------------------------------------------------------------------
def tool(name: str, package: str) -> str:
    """The path of a command; skips when it is missing and cannot be installed, fails when it could be."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail(f"{name} is missing although it can be installed here: apt-get install {package} "
                    "(scripts/test does that)")
    pytest.skip(f"{name} not installed (Debian package {package}) and not installable here (not root or no apt-get)")


# --- the systemd unit -----------------------------------------------------------------------------------
def unit_lines(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every assignment, in order (systemd allows a key more than once)."""
    out, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        assert "=" in line and not line.endswith("\\"), f"unexpected line in {UNIT.name}: {raw!r}"
        key, value = line.split("=", 1)
        out.append((section, key.strip(), value.strip()))
    return out


def service_values(key: str) -> list[str]:
    return [v for s, k, v in unit_lines(UNIT.read_text()) if s == "Service" and k == key]


def one_service_value(key: str) -> str:
    values = service_values(key)
    assert len(values) == 1, f"{key}= should appear once in [Service] of {UNIT.name}: {values}"
    return values[0]


def unit_environment(credentials: Path, state: Path) -> dict[str, str]:
    """The unit's Environment= variables, with %d (the credentials directory) and %S (the state root) as
    systemd expands them."""
    env = {}
    for assignment in service_values("Environment"):
        for item in shlex.split(assignment):
            name, value = item.split("=", 1)
            env[name] = value.replace("%d", str(credentials)).replace("%S", str(state))
    assert "%" not in "".join(env.values()), env
    return env


def exec_command(key: str) -> list[str]:
    """An Exec line's argv with the binary under test in place of /usr/local/bin/gatehouse."""
    argv = shlex.split(one_service_value(key))
    assert argv[0] == UNIT_BINARY, argv
    return [str(BIN), *argv[1:]]


def clean_environment() -> dict[str, str]:
    """This process's environment without any GATEHOUSE_ variable (the service's own come from the unit)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}


def seconds(text: str) -> float:
    """A systemd or Gatehouse duration: `50s`, `1min 30s`, `2m`, `90`."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    assert parts and "".join(n + u for n, u in parts) == text.replace(" ", ""), f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def installable_copy(directory: Path, extra: str = "") -> Path:
    """The unit as gatehouse.service in `directory`, its Exec lines naming the real binary (verify checks
    that it exists), with `extra` lines added at the top of [Service]."""
    directory.mkdir(parents=True, exist_ok=True)
    real = str(Path(BIN).resolve())
    lines, changed = [], 0
    for line in UNIT.read_text().splitlines():
        if line.startswith(("ExecStartPre=", "ExecStart=")):
            assert f"={UNIT_BINARY} " in line, line
            line = line.replace(f"={UNIT_BINARY} ", f"={real} ", 1)
            changed += 1
        lines.append(line)
        if line == "[Service]" and extra:
            lines.append(extra)
    assert changed == 2, "expected one ExecStartPre= and one ExecStart= line"
    copy = directory / "gatehouse.service"
    copy.write_text("\n".join(lines) + "\n")
    return copy


# A complaint located in a unit file the distribution ships (verify loads the dependencies too), e.g.
# "/lib/systemd/system/foo.service:12: Unknown key ...": about another unit, not ours. Any other line fails.
DISTRIBUTION_UNIT_LINE = re.compile(r"^/(?:usr/)?lib/systemd/system/[\w@.\\-]+:\d+: ")


def verify_problems(analyze: str, unit: Path) -> list[str]:
    """What `systemd-analyze verify` says about `unit`: every output line but those about other units,
    plus a non-zero exit status. Warnings (unknown key, bad value) leave the status 0 but print a line."""
    p = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60,
                       cwd=unit.parent, env={**clean_environment(), "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""})
    problems = [line for line in (p.stdout + p.stderr).splitlines()
                if line.strip() and (str(unit) in line or not DISTRIBUTION_UNIT_LINE.match(line))]
    if p.returncode != 0:
        problems.append(f"exit status {p.returncode}")
    return problems


def test_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = tool("systemd-analyze", "systemd")
    assert verify_problems(analyze, installable_copy(tmp_path / "unit")) == []
    # The check sees a bad value and an unknown directive (both only warnings with exit status 0).
    bad = installable_copy(tmp_path / "bad", "ProtectSystem=sideways\nProtectKernelTunable=yes")
    problems = verify_problems(analyze, bad)
    assert any("sideways" in p for p in problems), problems
    assert any("ProtectKernelTunable" in p for p in problems), problems

    # The offline security review rates the sandbox at most 2.0 ("OK"); it prints the score.
    p = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20", "--no-pager",
                        str(installable_copy(tmp_path / "security"))],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={**clean_environment(), "SYSTEMD_COLORS": "0"})
    score = re.search(r"Overall exposure level for gatehouse\.service: (\d+\.\d+)", p.stdout)
    assert score, p.stdout + p.stderr
    assert p.returncode == 0 and float(score.group(1)) <= 2.0, p.stdout[-3000:] + p.stderr


def test_unit_hardening_and_commands():
    expected = {
        "Type": "exec",
        "ExecStartPre": f"{UNIT_BINARY} migrate",
        "ExecStart": f"{UNIT_BINARY} serve",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "EnvironmentFile": "-/etc/gatehouse/gatehouse.env",
        "LoadCredential": "secrets_key:/etc/gatehouse/secrets_key",
        "DynamicUser": "yes",
        "StateDirectory": "gatehouse",
        "UMask": "0077",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallFilter": "@system-service",
        "SystemCallArchitectures": "native",
    }
    actual = {key: one_service_value(key) for key in expected}
    assert actual == expected

    env = unit_environment(Path("/run/credentials/gatehouse.service"), Path("/var/lib"))
    assert env["GATEHOUSE_DATABASE_URL"] == "sqlite:///var/lib/gatehouse/gatehouse.sqlite"
    assert env["GATEHOUSE_SECRETS_KEY_FILE"] == "/run/credentials/gatehouse.service/secrets_key"
    # systemd must not kill Gatehouse before its drain ends: shutdown_grace, then at most 30 s.
    stop = seconds(one_service_value("TimeoutStopSec"))
    grace = seconds(env.get("GATEHOUSE_SHUTDOWN_GRACE", "5s"))
    assert stop > grace + 30, (stop, grace)


def test_unit_environment_is_gatehouse_settings(tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "secrets_key").write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    env = unit_environment(credentials, tmp_path)
    documented = set(re.findall(r"\| `(GATEHOUSE_[A-Z_]+)` \|", (ROOT / "docs" / "configuration.md").read_text()))
    assert "GATEHOUSE_ISSUER" in documented
    assert set(env) <= documented, set(env) - documented

    p = subprocess.run([str(BIN), "config", "show", "--json"], env={**clean_environment(), **env},
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = {row["key"]: row for row in json.loads(p.stdout)}
    for name, value in env.items():
        row = rows[name.removeprefix("GATEHOUSE_").lower()]
        assert row["source"] == name, row
        if name != "GATEHOUSE_TRUSTED_PROXIES":  # shown normalised (127.0.0.1/32)
            assert row["value"] == value, (row, value)
    assert rows["trusted_proxies"]["value"] == "127.0.0.1/32"
    assert rows["issuer"]["value"].startswith("https://")


# --- nginx in front of Gatehouse --------------------------------------------------------------------------
def replace_exactly(text: str, old: str, new: str, count: int = 1) -> str:
    found = text.count(old)
    assert found == count, f"{NGINX_SITE.name}: expected {old!r} {count}x, found {found}x"
    return text.replace(old, new)


def nginx_site(https_port: int, http_port: int, upstream_port: int, cert: Path, key: Path) -> str:
    """deploy/nginx-gatehouse.conf with its ports, host name and certificate paths replaced, nothing else."""
    text = NGINX_SITE.read_text()
    text = replace_exactly(text, "listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    text = replace_exactly(text, "    listen [::]:443 ssl;\n", "")
    text = replace_exactly(text, "listen 80;", f"listen 127.0.0.1:{http_port};")
    text = replace_exactly(text, "    listen [::]:80;\n", "")
    text = replace_exactly(text, "server_name auth.example.com;", "server_name 127.0.0.1;", 2)
    text = replace_exactly(text, "https://auth.example.com$request_uri", f"https://127.0.0.1:{https_port}$request_uri")
    text = replace_exactly(text, "/etc/letsencrypt/live/auth.example.com/fullchain.pem", str(cert))
    text = replace_exactly(text, "/etc/letsencrypt/live/auth.example.com/privkey.pem", str(key))
    text = replace_exactly(text, "server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};")
    directives = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    assert "example.com" not in directives and "8080" not in directives, directives
    return text


def nginx_main(prefix: Path, site: Path) -> str:
    """The main nginx.conf around the site: pid, logs and temp paths in `prefix`, workers as this user."""
    user = ""
    if os.geteuid() == 0:  # nginx started by root would switch its workers to nobody
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    temps = "\n".join(f"    {kind}_temp_path {prefix / (kind + '_temp')};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} notice;
events {{ worker_connections 128; }}
http {{
    default_type application/octet-stream;
    # What nginx saw and what it sent on (the test reads it).
    log_format e2e '$request_id $remote_addr "$proxy_add_x_forwarded_for" $status $uri';
    access_log {prefix / 'access.log'} e2e;
{temps}
    include {site};
}}
"""


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the IP address 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatehouse e2e 127.0.0.1")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextmanager
def running_nginx(nginx: str, prefix: Path, conf: Path, probe_url: str, cert: Path):
    """`nginx -t` without a warning, then nginx in the foreground until the block ends (SIGTERM)."""
    args = [nginx, "-e", "stderr", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    complaints = [l for l in check.stderr.splitlines() if re.search(r"\[(warn|error|crit|alert|emerg)\]", l)]
    assert complaints == [], check.stderr
    conftest.extra_logs.append(("nginx", prefix / "error.log"))
    with conftest.serving(args, prefix / "nginx.out", probe_url, "nginx", verify=str(cert)) as proc:
        yield proc


class FromAddress(requests.adapters.HTTPAdapter):
    """Connects from a given local address (any 127.x.y.z works on Linux's loopback)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


class DeployedGatehouse(Gatehouse):
    """conftest's Gatehouse (CLI and URLs) with the service's environment for its admin commands."""

    def __init__(self, database: str, issuer: str, env: dict):
        super().__init__(database, issuer)
        self.env = env

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN), *args, "--database", self.database], env=self.env,
                              input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=120)


@dataclass
class Deployment:
    gh: DeployedGatehouse  # issuer: https://127.0.0.1:PORT (nginx)
    cert: Path
    http_port: int  # nginx's plain-http server
    direct: str  # Gatehouse's own port, http://127.0.0.1:PORT
    metrics: str  # http://127.0.0.1:METRICS_PORT
    log: Path
    nginx_log: Path
    responses: list = field(default_factory=list)  # every response through nginx of `session`s

    def session(self, session: requests.Session | None = None) -> requests.Session:
        """A session (or `session`) that trusts the certificate, connects from CLIENT_ADDRESS and records
        its responses."""
        session = session or requests.Session()
        session.verify = str(self.cert)
        session.trust_env = False  # else REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) would win over `verify`
        for scheme in ("https://", "http://"):
            session.mount(scheme, FromAddress(CLIENT_ADDRESS))
        session.hooks["response"].append(lambda r, *a, **kw: self.responses.append(r))
        return session

    def access_line(self, request_id: str) -> dict | None:
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("message") == "request" and entry.get("request_id") == request_id:
                    return entry
        return None

    def nginx_line(self, request_id: str) -> list[str] | None:
        """nginx's access line: [request_id, remote_addr, X-Forwarded-For it sent, status, uri]."""
        for line in self.nginx_log.read_text().splitlines():
            m = re.fullmatch(r'(\S+) (\S+) "([^"]*)" (\d+) (\S+)', line)
            if m and m.group(1) == request_id:
                return list(m.groups())
        return None


def distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    nginx = tool("nginx", "nginx")
    tmp = tmp_path_factory.mktemp("deployment")
    https_port, http_port, gh_port, metrics_port = distinct_free_ports(4)
    issuer = f"https://127.0.0.1:{https_port}"
    with ExitStack() as stack:
        database = stack.enter_context(own_database(tmp))
        # What systemd gives the service: the unit's environment, the key file in the credentials
        # directory, and the environment file's variables over the unit's.
        credentials = tmp / "credentials"
        credentials.mkdir()
        (credentials / "secrets_key").write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        env = {**clean_environment(), **unit_environment(credentials, tmp),
               "GATEHOUSE_DATABASE_URL": database, "GATEHOUSE_PORT": str(gh_port),
               "GATEHOUSE_METRICS_PORT": str(metrics_port), "GATEHOUSE_SHUTDOWN_GRACE": "0"}
        migrate = subprocess.run(exec_command("ExecStartPre"), env=env, capture_output=True, text=True, timeout=120)
        assert migrate.returncode == 0, migrate.stderr
        log = tmp / "gatehouse.log"
        conftest.extra_logs.append(("gatehouse serve behind nginx", log))
        stack.enter_context(serving(
            [*exec_command("ExecStart"), "--issuer", issuer, "--trusted-proxies", "127.0.0.1"],
            log, f"http://127.0.0.1:{gh_port}/readyz", "gatehouse serve", env=env))

        cert, key = make_certificate(tmp)
        prefix = tmp / "nginx"
        prefix.mkdir()
        site = prefix / "gatehouse.conf"
        site.write_text(nginx_site(https_port, http_port, gh_port, cert, key))
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_main(prefix, site))
        stack.enter_context(running_nginx(nginx, prefix, conf, issuer + "/readyz", cert))
        yield Deployment(DeployedGatehouse(database, issuer, env), cert, http_port, f"http://127.0.0.1:{gh_port}",
                         f"http://127.0.0.1:{metrics_port}", log, prefix / "access.log")


def check_host_cookie(set_cookie: str) -> None:
    """A Set-Cookie of an https issuer: __Host- prefix, Secure, HttpOnly, Path=/, no Domain (RFC 6265bis)."""
    name = set_cookie.split("=", 1)[0]
    attributes = [a.strip().lower() for a in set_cookie.split(";")[1:]]
    assert name.startswith("__Host-"), set_cookie
    assert "secure" in attributes and "httponly" in attributes, set_cookie
    assert "path=/" in attributes, set_cookie
    assert not any(a.startswith("domain") for a in attributes), set_cookie


def verify_jwt(token: str, jwks: dict, *, audience: str, issuer: str, typ: str) -> dict:
    header = jwt.get_unverified_header(token)
    assert header.get("typ") == typ, header
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    return jwt.decode(token, key, algorithms=[key.algorithm_name], audience=audience, issuer=issuer,
                      options={"require": ["iss", "sub", "aud", "exp", "iat"]})


def test_code_flow_through_nginx(deployment):
    d = deployment
    gh = d.gh
    first_response = len(d.responses)
    https = d.session()
    r = https.get(gh.issuer + "/.well-known/openid-configuration", timeout=10)
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["issuer"] == gh.issuer
    urls = {k: v for k, v in meta.items() if k.endswith("_endpoint") or k == "jwks_uri"}
    assert {"authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"} <= urls.keys(), meta
    assert all(v.startswith(gh.issuer + "/") for v in urls.values()), urls

    client = gh.create_client(scope="openid profile", redirect_uris=[REDIRECT_URI])
    user = gh.create_user()
    rp = d.session(OAuth2Session(client["client_id"], client["client_secret"], scope="openid profile",
                                 redirect_uri=REDIRECT_URI, code_challenge_method="S256",
                                 token_endpoint_auth_method="client_secret_basic"))
    verifier = generate_token(48)
    nonce = generate_token(20)
    url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    assert "code_challenge_method=S256" in url and "code_challenge=" in url, url

    browser = Browser(gh)
    d.session(browser.session)
    r, pages = browser.authorize(url, user, "allow")
    assert pages and pages[0].form("#login-form") is not None, [p.url for p in pages]
    assert any(p.form("#consent-form") is not None for p in pages), [p.url for p in pages]
    assert r.status_code in (302, 303), (r.status_code, r.text[:2000])
    location = r.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    params = query(location)
    assert params["iss"] == gh.issuer and params["state"] == state and params.get("code"), params

    token = rp.fetch_token(meta["token_endpoint"], authorization_response=location, state=state,
                           code_verifier=verifier)
    assert token["token_type"].lower() == "bearer", token
    info = rp.get(meta["userinfo_endpoint"], timeout=10)
    assert info.status_code == 200, info.text
    assert info.json()["sub"] == user[0]["id"], info.json()

    jwks = https.get(meta["jwks_uri"], timeout=10)
    assert jwks.status_code == 200, jwks.text
    access = verify_jwt(token["access_token"], jwks.json(), audience=gh.issuer, issuer=gh.issuer, typ="at+jwt")
    assert access["sub"] == user[0]["id"] and access["client_id"] == client["client_id"], access
    id_token = verify_jwt(token["id_token"], jwks.json(), audience=client["client_id"], issuer=gh.issuer, typ="JWT")
    assert id_token["nonce"] == nonce and id_token["sub"] == user[0]["id"], id_token

    # Cookies: every Set-Cookie of the flow is a __Host- cookie (one header per cookie, as sent).
    set_cookies = [c for resp in browser.history for c in resp.raw.headers.getlist("Set-Cookie")]
    assert len({c.split("=", 1)[0] for c in set_cookies}) >= 2, set_cookies  # the CSRF and the session cookie
    for cookie in set_cookies:
        check_host_cookie(cookie)
    assert browser.session.cookies and all(c.secure for c in browser.session.cookies), browser.session.cookies

    # Every response of the flow came through nginx with HSTS, and Gatehouse logged each request with the
    # address nginx saw.
    flow = d.responses[first_response:]
    paths = {(resp.request.method, urlsplit(resp.url).path) for resp in flow}
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert any(path == urlsplit(meta[endpoint]).path for _, path in paths), (endpoint, paths)
    assert sum(1 for method, _ in paths if method == "POST") >= 3, paths  # login, consent, token
    ids = []
    for resp in flow:
        assert resp.headers.get("Strict-Transport-Security") == HSTS, (resp.url, resp.headers)
        ids.append(resp.headers["X-Request-Id"])
        assert re.fullmatch(r"[0-9a-f]{32}", ids[-1]), (resp.url, ids[-1])  # nginx's $request_id
    for rid in ids:
        line = wait_until(lambda: d.access_line(rid), f"Gatehouse's access line of {rid}")
        assert line["remote_address"] == CLIENT_ADDRESS, line


def test_client_address_is_the_one_nginx_saw(deployment):
    d = deployment
    r = d.session().get(d.gh.issuer + "/healthz", timeout=10, headers={
        "X-Forwarded-For": FORGED, "Forwarded": "for=198.51.100.9", "X-Request-Id": "chosen-by-the-client"})
    assert r.status_code == 200, r.text
    rid = r.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid  # nginx replaced the client's id with its own
    # nginx saw the client's real address; the X-Forwarded-For it sends on (the site's one such line) is the
    # forged list with that address appended...
    xff = re.findall(r"proxy_set_header\s+X-Forwarded-For\s+([^;]*);", NGINX_SITE.read_text(), re.I)
    assert xff == ["$proxy_add_x_forwarded_for"], xff
    seen = wait_until(lambda: d.nginx_line(rid), f"nginx's access line of {rid}")
    assert seen[1] == CLIENT_ADDRESS and seen[2] == f"{FORGED}, {CLIENT_ADDRESS}", seen
    # ...and Gatehouse, reading from the right and skipping only the trusted proxy (127.0.0.1), took it.
    line = wait_until(lambda: d.access_line(rid), f"Gatehouse's access line of {rid}")
    assert line["remote_address"] == CLIENT_ADDRESS, line


def test_forged_header_straight_to_gatehouse_is_not_believed(deployment):
    d = deployment
    untrusted = requests.Session()
    untrusted.mount("http://", FromAddress(CLIENT_ADDRESS))
    rid = unique("direct-")
    r = untrusted.get(d.direct + "/healthz", headers={"X-Forwarded-For": FORGED, "X-Request-Id": rid}, timeout=10)
    assert r.status_code == 200 and r.headers["X-Request-Id"] == rid, r.headers
    line = wait_until(lambda: d.access_line(rid), f"Gatehouse's access line of {rid}")
    assert line["remote_address"] == CLIENT_ADDRESS, line

    # From the trusted proxy's own address the header is read: only nginx (and the host itself) may
    # speak for clients, which is why Gatehouse listens on 127.0.0.1 and nothing else is trusted.
    rid = unique("proxy-")
    r = requests.get(d.direct + "/healthz", headers={"X-Forwarded-For": FORGED, "X-Request-Id": rid}, timeout=10)
    assert r.status_code == 200, r.text
    line = wait_until(lambda: d.access_line(rid), f"Gatehouse's access line of {rid}")
    assert line["remote_address"] == FORGED, line


def test_plain_http_redirects_to_https(deployment):
    d = deployment
    r = requests.get(f"http://127.0.0.1:{d.http_port}/.well-known/openid-configuration?x=1",
                     allow_redirects=False, timeout=10)
    assert r.status_code == 301, r.text
    assert r.headers["Location"] == d.gh.issuer + "/.well-known/openid-configuration?x=1"


def test_probes_through_nginx_and_metrics_only_on_metrics_port(deployment):
    d = deployment
    https = d.session()
    r = https.get(d.gh.issuer + "/healthz", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
    assert r.headers["Cache-Control"] == "no-store"
    r = https.get(d.gh.issuer + "/readyz", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready" and set(body["checks"].values()) == {"ok"}, body
    assert r.headers["Cache-Control"] == "no-store"

    # nginx answers /metrics itself: its own 404 page, not Gatehouse's problem+json.
    for path in ("/metrics", "/metrics/", "/metrics?name[]=x", "//metrics"):
        r = https.get(d.gh.issuer + path, timeout=10)
        assert r.status_code == 404, (path, r.status_code, r.text[:500])
        assert r.headers.get("Content-Type", "").startswith("text/html") and "nginx" in r.text, (path, r.headers)
        assert r.headers.get("Strict-Transport-Security") == HSTS, r.headers
    # Gatehouse's public port does not serve it either (metrics_port is set)...
    r = requests.get(d.direct + "/metrics", timeout=10)
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/problem+json"), r.headers
    # ...metrics_port does, and it counted the probes above.
    r = requests.get(d.metrics + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert re.search(r'^gatehouse_http_requests_total\{[^}]*route="/readyz"', r.text, re.M), r.text[:3000]
