"""Backups and moving databases (docs/operations.md): `gatehouse export | gatehouse import` moves a running
installation from its SQLite file to another database (PostgreSQL when the suite runs on PostgreSQL, else a
new SQLite file) and a real client's refresh token, the client's secret, the user's password and the signing
keys keep working there; bad export files change nothing; `gatehouse backup` copies a live SQLite file
consistently (PostgreSQL: the pg_dump command it prints restores into a working database)."""

import base64
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import threading
import time

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from conftest import BIN, ON_PG, Gatehouse, basic_auth, own_database, psql, unique, wait_until

SECRETS_KEY = base64.b64encode(bytes(range(7, 39))).decode()


@pytest.fixture(autouse=True)
def sealed(monkeypatch):
    """Private keys and provider secrets sealed at rest: the move must carry them sealed (same key both sides)."""
    monkeypatch.setenv("GATEHOUSE_SECRETS_KEY", SECRETS_KEY)


def cli(database: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args, "--database", database], input=stdin or "", capture_output=True,
                          text=True, timeout=120)


def session(gh: Gatehouse, client: dict) -> OAuth2Session:
    return OAuth2Session(client["client_id"], client["client_secret"], token_endpoint_auth_method="client_secret_basic")


def verify(gh: Gatehouse, access_token: str) -> dict:
    """The access token checked against the JWKS of `gh` (what a resource server does)."""
    key = jwt.PyJWKClient(gh.jwks_uri, cache_jwk_set=False).get_signing_key_from_jwt(access_token)
    return jwt.decode(access_token, key, algorithms=[key.algorithm_name], audience=gh.issuer, issuer=gh.issuer)


def test_move_a_running_installation_keeps_tokens_secrets_and_keys(tmp_path, server_factory):
    source = f"sqlite://{tmp_path}/live.sqlite"
    s = server_factory(source)
    client = s.gh.create_client(grant_types=["client_credentials", "refresh_token"], allow_password_grant=True)
    user, password = s.gh.create_user(email=unique("move") + "@example.com")
    provider = cli(source, "providers", "add", "--kind", "github", "--id", "gh", "--client-id", "gh-id",
                   "--client-secret-stdin", stdin="gh-provider-secret\n")
    assert provider.returncode == 0, provider.stderr

    oauth = session(s.gh, client)
    first = dict(oauth.fetch_token(s.gh.token_endpoint, username=user["username"], password=password))
    second = dict(oauth.refresh_token(s.gh.token_endpoint, refresh_token=first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    before = verify(s.gh, second["access_token"])
    revoked = dict(oauth.fetch_token(s.gh.token_endpoint, grant_type="client_credentials"))
    r = requests.post(s.gh.revocation_endpoint, data={"token": revoked["access_token"]}, timeout=10,
                      headers={"Authorization": basic_auth(client["client_id"], client["client_secret"])})
    assert r.status_code == 200, r.text

    with own_database(tmp_path) as target:
        # The documented one-liner, while the server keeps running.
        move = subprocess.run(
            f"{BIN} export --database '{source}' | {BIN} import --database '{target}'",
            shell=True, capture_output=True, text=True, timeout=300)
        assert move.returncode == 0, move.stderr
        exported = [line for line in move.stderr.splitlines() if line.startswith("exported ")]
        imported = [line for line in move.stdout.splitlines() if line.startswith("imported ")]
        assert exported and imported, (move.stdout, move.stderr)
        total = exported[0].split()[1]
        assert imported[0].split()[1] == total and int(total) > 10, (exported, imported)
        assert "users 1" in imported[0] and "refresh_tokens 2" in imported[0], imported

        # Cut over: the old server stops, the new one answers on the same address (same issuer).
        port = s.port
        assert s.stop() == 0
        t = server_factory(target, port=port)
        assert t.gh.issuer == s.gh.issuer

        # The signing keys moved: a token issued before verifies against the new JWKS and introspects active.
        assert verify(t.gh, second["access_token"])["sub"] == before["sub"] == user["id"]
        assert t.gh.introspect(second["access_token"], client)["active"] is True
        # The revocation moved too.
        assert t.gh.introspect(revoked["access_token"], client)["active"] is False
        # The refresh token from before works with the same client library, and rotates on.
        third = dict(session(t.gh, client).refresh_token(t.gh.token_endpoint, refresh_token=second["refresh_token"]))
        assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])
        assert verify(t.gh, third["access_token"])["sub"] == user["id"]
        # The used one is still known as used: replaying it is refused (reuse detection carried over).
        r = t.gh.token(client, grant_type="refresh_token", refresh_token=first["refresh_token"])
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
        # The client secret and the user's password (hashes) work.
        assert dict(session(t.gh, client).fetch_token(t.gh.token_endpoint, grant_type="client_credentials"))["access_token"]
        assert t.gh.token(client, grant_type="password", username=user["username"], password=password).status_code == 200
        # The provider's sealed secret opens with the same secrets_key.
        listed = cli(target, "providers", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert "gh" in listed.stdout
        t.stop()


def test_bad_export_files_change_nothing(tmp_path):
    source = f"sqlite://{tmp_path}/src.sqlite"
    assert cli(source, "migrate").returncode == 0
    assert cli(source, "users", "create", "--username", "erin").returncode == 0
    path = tmp_path / "export.jsonl"
    out = cli(source, "export", "--to", str(path), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["rows"]["users"] == 1 and summary["file"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # password hashes, maybe keys: the owner's only
    again = cli(source, "export", "--to", str(path))
    assert again.returncode != 0 and "never overwrites" in again.stderr
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "gatehouse-export" and header["version"] == 1 and header["tokens"] is True

    def refused(name: str, text: str, message: str):
        bad = tmp_path / name
        bad.write_text(text)
        with own_database(tmp_path) as target:
            p = cli(target, "import", str(bad))
            assert p.returncode == 1, (p.stdout, p.stderr)
            assert "nothing imported" in p.stderr and message in p.stderr, p.stderr
            assert p.stderr.count("\n") == 1, p.stderr  # one line, no stack trace
            # Still importable: nothing was left behind.
            ok = cli(target, "import", str(path))
            assert ok.returncode == 0, ok.stderr

    newer = dict(header, version=2)
    refused("version.jsonl", "\n".join([json.dumps(newer)] + lines[1:]) + "\n", "unsupported export format version 2")
    refused("truncated.jsonl", "\n".join(lines[:-1]) + "\n", "ends before the export's last line")
    refused("garbage.jsonl", lines[0] + "\nnot json\n" + "\n".join(lines[1:]) + "\n", "line 2")
    refused("html.jsonl", "<html></html>\n", "not a Gatehouse export")

    # A database in use is never written into.
    with own_database(tmp_path) as target:
        assert cli(target, "migrate").returncode == 0
        assert cli(target, "users", "create", "--username", "frank").returncode == 0
        p = cli(target, "import", str(path))
        assert p.returncode == 1 and "not empty" in p.stderr, p.stderr


@pytest.mark.skipif(ON_PG, reason="SQLite's backup; the PostgreSQL pass runs test_postgres_backup_is_pg_dump")
def test_sqlite_backup_while_serving_restores(tmp_path, server_factory):
    database = tmp_path / "live.sqlite"
    s = server_factory(f"sqlite://{database}")
    client = s.gh.create_client(grant_types=["refresh_token"], allow_password_grant=True)
    user, password = s.gh.create_user()
    token = dict(session(s.gh, client).fetch_token(s.gh.token_endpoint, username=user["username"], password=password))

    # Writes go on while the backup runs (refresh rotation and client credentials in a loop).
    stop = threading.Event()
    failures: list[str] = []
    written = [0]

    def write():
        current = token["refresh_token"]
        while not stop.is_set():
            r = s.gh.token(client, grant_type="refresh_token", refresh_token=current)
            if r.status_code != 200:
                failures.append(r.text)
                return
            current = r.json()["refresh_token"]
            written[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: written[0] >= 5, "the writer to get going", timeout=30)
        backup = tmp_path / "backup.sqlite"
        p = cli(f"sqlite://{database}", "backup", "--to", str(backup), "--json")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["bytes"] == backup.stat().st_size > 0
        at_backup = written[0]
        wait_until(lambda: written[0] >= at_backup + 5, "writes after the backup", timeout=30)
    finally:
        stop.set()
        writer.join(timeout=30)
    assert not failures, failures
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    again = cli(f"sqlite://{database}", "backup", "--to", str(backup))
    assert again.returncode == 1 and "never overwrites" in again.stderr
    with sqlite3.connect(backup) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # Restore (docs: stop, copy the file into place): a server on the copy knows the user and the client.
    port = s.port
    assert s.stop() == 0
    restored = tmp_path / "restored.sqlite"
    shutil.copyfile(backup, restored)
    t = server_factory(f"sqlite://{restored}", port=port)
    r = t.gh.token(client, grant_type="password", username=user["username"], password=password)
    assert r.status_code == 200, r.text
    assert verify(t.gh, r.json()["access_token"])["sub"] == user["id"]


@pytest.mark.skipif(not ON_PG, reason="PostgreSQL only")
def test_postgres_backup_is_pg_dump(tmp_path, server_factory):
    with own_database(tmp_path) as database:
        s = server_factory(database)
        client = s.gh.create_client(grant_types=["client_credentials"])
        p = cli(database, "backup", "--to", str(tmp_path / "x.dump"))
        assert p.returncode == 1 and "pg_dump --format=custom" in p.stderr, p.stderr
        # The printed command, as the docs give it, and pg_restore into a new database.
        command = p.stderr[p.stderr.index("pg_dump --format"):p.stderr.index(" (docs/")].split()
        command[0] = shutil.which("pg_dump")
        dump = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert dump.returncode == 0, dump.stderr
        name = "gh_restore_" + os.urandom(4).hex()
        psql(f"CREATE DATABASE {name}")
        try:
            target = database.rsplit("/", 1)[0] + "/" + name
            host, port = database.split("@")[1].split("/")[0].split(":")
            restore = subprocess.run([shutil.which("pg_restore"), "--no-owner", "-h", host, "-p", port, "-U", "postgres",
                                      "-d", name, str(tmp_path / "x.dump")], capture_output=True, text=True, timeout=120)
            assert restore.returncode == 0, restore.stderr
            s.stop()
            t = server_factory(target, port=s.port)
            r = t.gh.token(client, grant_type="client_credentials")
            assert r.status_code == 200, r.text
            t.stop()
        finally:
            psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
