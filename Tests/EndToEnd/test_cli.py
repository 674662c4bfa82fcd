"""Proves the admin CLI against the running server's database: --json output is usable, bad input
exits non-zero with one line on stderr and changes nothing, and `clients rotate-secret` and
`clients delete` take effect on the running server within its cache TTL (1 s by default)."""

import pytest

from conftest import oauth_error, unique, wait_until

BUILTIN_SCOPES = {"openid", "profile", "email", "address", "phone", "offline_access"}

# The server default (GATEHOUSE_CACHE_TTL=1s) plus a little slack: how long a CLI change may take to reach
# the running server (the tests go on as soon as it shows).
CACHE_TTL = 1.2


def error_line(p) -> str:
    assert p.returncode != 0, p.stdout
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]


def client_names(gh) -> set[str]:
    return {c["name"] for c in gh.cli("clients", "list")}


def test_users_create(gh):
    user, _ = gh.create_user()
    assert user["id"] and user["username"].startswith("user")
    p = gh.run("users", "create", "--username", user["username"], "--password-stdin", "--json",
               stdin="Another-Password-123\n")
    error_line(p)


@pytest.mark.parametrize("args", [
    ["--grant-type", "bogus_grant"],
    ["--grant-type", "implicit"],
    ["--redirect-uri", "http://evil.example/cb"],
    ["--redirect-uri", "https://app.example.com/cb#fragment"],
    ["--redirect-uri", "javascript:alert(1)"],
    ["--redirect-uri", "not a uri"],
    ["--scope", "nosuchscope"],
])
def test_clients_create_rejects_bad_input(gh, args):
    name = unique("bad-client-")
    error_line(gh.run("clients", "create", "--name", name, *args, "--json"))
    assert name not in client_names(gh)


def test_clients_create_show_list(gh, scopes):
    uris = ["https://app.example.com/cb", "http://127.0.0.1:8765/cb", "com.example.app:/oauth2redirect"]
    c = gh.create_client(scope=" ".join(scopes), redirect_uris=uris)
    assert set(c["grant_types"]) == {"authorization_code", "refresh_token"}
    assert set(c["scope"].split()) == set(scopes)
    assert c["redirect_uris"] == uris

    shown = gh.cli("clients", "show", c["client_id"])
    assert shown["client_id"] == c["client_id"] and shown["name"] == c["name"]
    assert set(shown["grant_types"]) == set(c["grant_types"])
    assert "client_secret" not in shown  # stored hashed: never shown again

    listed = {x["client_id"]: x for x in gh.cli("clients", "list")}
    assert listed[c["client_id"]]["name"] == c["name"]
    assert not any("client_secret" in x for x in listed.values())

    pw = gh.create_client(scope=scopes[0], allow_password_grant=True)
    assert set(pw["grant_types"]) == {"authorization_code", "refresh_token", "password"}
    public = gh.create_client(scope=scopes[0], public=True)
    assert not public.get("client_secret")


def test_scopes(gh, scopes):
    listed = {s["name"]: s for s in gh.cli("scopes", "list")}
    assert BUILTIN_SCOPES <= listed.keys()
    assert listed[scopes[0]]["description"] == f"e2e scope {scopes[0]}"
    assert listed[scopes[0]]["default"] is False
    error_line(gh.run("scopes", "create", scopes[0], "--json"))


def test_rotate_secret(gh, scopes):
    c = gh.create_client(scope=scopes[0], grant_types=["client_credentials"])
    assert gh.token(c, grant_type="client_credentials").status_code == 200
    rotated = gh.cli("clients", "rotate-secret", c["client_id"])
    assert rotated["client_id"] == c["client_id"]
    assert rotated["client_secret"] and rotated["client_secret"] != c["client_secret"]

    # The CLI is another process: the server sees the change within cache_ttl. Until then the old secret
    # still works (so polling with it adds no failed authentication).
    def refused():
        r = gh.token(c, grant_type="client_credentials")
        return r.status_code != 200 and (r,)  # (a Response is falsy when not ok)

    (r,) = wait_until(refused, "the running server to refuse the rotated-out secret", timeout=CACHE_TTL)
    oauth_error(r, 401, "invalid_client")
    assert r.headers.get("WWW-Authenticate")
    r = gh.token(c, secret=rotated["client_secret"], grant_type="client_credentials")
    assert r.status_code == 200, r.text


def test_delete_client_kills_its_tokens(gh, scopes):
    c = gh.create_client(scope=scopes[0], grant_types=["client_credentials"])
    observer = gh.create_client(scope=scopes[0], grant_types=["client_credentials"])
    access = gh.token(c, grant_type="client_credentials").json()["access_token"]
    assert gh.introspect(access, observer)["active"] is True

    p = gh.run("clients", "delete", c["client_id"])
    assert p.returncode == 0, p.stderr
    wait_until(lambda: gh.introspect(access, observer) == {"active": False},
               "the deleted client's token to be inactive at introspection", timeout=CACHE_TTL)
    oauth_error(gh.token(c, grant_type="client_credentials"), 401, "invalid_client")
    error_line(gh.run("clients", "show", c["client_id"], "--json"))
    assert c["client_id"] not in {x["client_id"] for x in gh.cli("clients", "list")}
