"""Property-based conformance of the admin API (`/admin/v1`) to its OpenAPI document
(Sources/GatehouseServer/Admin/openapi.json), with schemathesis against the real server: for every operation
in the document, a bounded number of generated requests (valid ones and, as schemathesis does by default,
invalid ones), each of whose answers must not be a server error and must conform to the document (status
code, content type, headers, body schema). Authenticated with a `gatehouse:admin` client token.

Path parameters are now and then replaced by resources seeded before the run (a user, a client, a scope,
a group with a member, a service with a grant, a grant), so that operations are exercised on things that
exist and not only answered 404.

Bounded: MAX_EXAMPLES per operation, derandomized (the same cases each run), no shrinking, no example
database. One server for the module."""

import json
import secrets
import zlib
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from conftest import ROOT, Server, free_port, own_database, unique

SPEC_PATH = ROOT / "Sources" / "GatehouseServer" / "Admin" / "openapi.json"
DOCUMENT = json.loads(SPEC_PATH.read_text())
MAX_EXAMPLES = 25
ADMIN = "gatehouse:admin"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]

schema = schemathesis.openapi.from_dict(DOCUMENT)
# Nothing is excluded. `POST /keys/{kid}/revoke` is run too, but its `kid` is never seeded: revoking the
# signing key ends every token signed so far, the run's admin token with them (test_admin_api.py covers
# revocation).


def base_path() -> str:
    servers = DOCUMENT.get("servers") or [{"url": "/"}]
    return urlsplit(servers[0]["url"]).path.rstrip("/")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The server, the admin token, and the resources path parameters are sometimes replaced with."""
    tmp = tmp_path_factory.mktemp("admin-schemathesis")
    port = free_port()
    with own_database(tmp) as database:
        server = Server(database, tmp, "--issuer", f"http://127.0.0.1:{port}", "--access-token-ttl", "1h", port=port)
        try:
            gh = server.gh
            ops = gh.cli("clients", "create", "--name", unique("ops-"), "--grant-type", "client_credentials",
                         "--scope", ADMIN)
            r = gh.token(ops, grant_type="client_credentials", scope=ADMIN)
            assert r.status_code == 200, r.text
            token = r.json()["access_token"]
            api = gh.issuer + "/admin/v1"
            auth = {"Authorization": "Bearer " + token}

            def post(path, body):
                r = requests.post(api + path, json=body, headers=auth, timeout=30)
                # 201 for a new resource; 200 for a membership or a grant (added, or changed in place).
                assert r.status_code in (200, 201), (path, r.status_code, r.text)
                return r.json()

            password = secrets.token_urlsafe(15)
            user = post("/users", {"username": unique("seed"), "email": unique("s") + "@example.com",
                                   "password": password})
            other = post("/users", {"username": unique("seed")})
            scope = post("/scopes", {"name": unique("seedscope"), "description": "seeded"})["name"]
            client = post("/clients", {"name": "seeded", "grant_types": ["client_credentials", "password"],
                                       "scope": scope})
            group = post("/groups", {"name": unique("seedgroup")})["name"]
            post(f"/groups/{group}/members", {"user": user["username"]})
            service = post("/services", {"name": unique("seedsvc")})["name"]
            post(f"/services/{service}/grants", {"user": user["username"], "permissions": ["read"]})
            t = gh.token(client, grant_type="password", username=user["username"], password=password, scope=scope)
            assert t.status_code == 200, t.text
            grants = requests.get(f"{api}/users/{user['id']}/grants", headers=auth, timeout=30).json()["items"]
            seeds = {
                "/users/{id}": {"id": [user["id"], other["id"]]},
                "/clients/{id}": {"id": [client["client_id"]]},
                "/scopes/{name}": {"name": [scope, "openid"]},
                "/groups/{name}": {"name": [group], "user": [user["username"], user["id"]]},
                "/services/{name}": {"name": [service, "gatehouse"], "user": [user["username"]]},
                "/grants/{id}": {"id": [g["id"] for g in grants]},
            }
            yield {"base_url": gh.issuer + base_path(), "headers": auth, "seeds": seeds, "server": server}
        finally:
            server.stop()


def seed(case, seeds: dict) -> None:
    """Replaces the path parameters of about half the cases (chosen by a hash of the case, so the same ones each
    run) with seeded resources."""
    params = case.path_parameters
    if not params:
        return
    path = case.operation.path
    if zlib.crc32(repr(sorted(params.items())).encode()) % 2:
        return
    for prefix, values in seeds.items():
        if path == prefix or path.startswith(prefix + "/"):
            for name, choices in values.items():
                if name in params and choices:
                    params[name] = choices[zlib.crc32(path.encode()) % len(choices)]


def test_the_document_has_operations():
    """Without operations the run below would test nothing: fail instead."""
    assert DOCUMENT.get("paths"), f"{SPEC_PATH} has no paths (still the placeholder?)"
    operations = [m for item in DOCUMENT["paths"].values() for m in item if m in ("get", "post", "patch", "delete")]
    assert len(operations) >= 30, f"only {len(operations)} operations in {SPEC_PATH}"


def conforms(case, live):
    seed(case, live["seeds"])
    case.call_and_validate(base_url=live["base_url"], headers=live["headers"], checks=CHECKS, timeout=30)


# A document without operations (the placeholder) would make schemathesis fail the whole collection, which
# stops every other test module too: then only test_the_document_has_operations fails.
if DOCUMENT.get("paths"):
    @schema.parametrize()
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def test_admin_api_conforms_to_its_document(case, live):
        conforms(case, live)
