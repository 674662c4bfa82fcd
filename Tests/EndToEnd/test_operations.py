"""Operations (docs/operations.md): JSON logs with an access line per request, X-Request-Id, liveness and
readiness (database, migrations, shutting down), and a graceful shutdown under load that answers every
request it accepted and exits 0.

Each test runs its own server on its own database (a fresh SQLite file, or a fresh PostgreSQL database
when the suite runs on PostgreSQL), since they stop it, break its database or read all of its log."""

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

import conftest
from conftest import (BIN, ON_PG, PG_URL, Gatehouse, Server, basic_auth, free_port, own_database, psql, wait_until,
                      wait_until_ok)


def test_json_access_log_and_request_ids(tmp_path, server_factory):
    with own_database(tmp_path) as database:
        s = server_factory(database, "--log-format", "json")
        client = s.gh.create_client(grant_types=["client_credentials"])
        auth = basic_auth(client["client_id"], client["client_secret"])

        # A safe X-Request-Id is kept; the response repeats it.
        r = requests.post(s.gh.token_endpoint, data={"grant_type": "client_credentials"},
                          headers={"Authorization": auth, "X-Request-Id": "e2e-trace.42"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["X-Request-Id"] == "e2e-trace.42"
        access_token = r.json()["access_token"]

        # Anything else is replaced by a fresh id, on refusals and unknown routes too.
        ids = set()
        for given, path, method in [("has space", "/oauth2/token", "post"), ("x" * 129, "/nope", "get"),
                                    ("<script>", "/readyz", "get")]:
            r = requests.request(method, s.gh.issuer + path, headers={"X-Request-Id": given}, timeout=10)
            rid = r.headers.get("X-Request-Id", "")
            assert rid and rid != given and len(rid) == 22, (path, r.headers)
            ids.add(rid)
        assert len(ids) == 3
        # Without one, each response has its own.
        assert requests.get(s.gh.issuer + "/healthz", timeout=10).headers["X-Request-Id"] != \
            requests.get(s.gh.issuer + "/healthz", timeout=10).headers["X-Request-Id"]

        # A query string with something secret in it is never logged: only the route template.
        requests.get(s.gh.issuer + "/oauth2/authorize", params={"client_id": "nobody", "state": "SeCrEtStAtE123"},
                     allow_redirects=False, timeout=10)

        def access_line(request_id):
            for line in s.json_lines():
                if line.get("message") == "request" and line.get("request_id") == request_id:
                    return line
            return None

        line = wait_until(lambda: access_line("e2e-trace.42"), "the token request's access line")
        assert line["level"] == "info" and line["logger"] == "gatehouse"
        assert line["method"] == "POST" and line["route"] == "/oauth2/token" and line["status"] == 200
        assert line["client_id"] == client["client_id"]
        assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
        assert line["remote_address"] == "127.0.0.1"
        assert line["time"].endswith("Z") and "T" in line["time"]
        for rid in ids:
            wait_until(lambda: access_line(rid), f"the access line of {rid}")
        unmatched = [l for l in s.json_lines() if l.get("message") == "request" and l.get("status") == 404]
        assert unmatched and all(l["route"] == "unmatched" for l in unmatched), unmatched

        text = s.text()
        for secret in [client["client_secret"], access_token, "SeCrEtStAtE123", auth.split()[1]]:
            assert secret not in text, f"a secret reached the log: {secret[:8]}…"


def test_access_log_can_be_turned_off(tmp_path, server_factory):
    with own_database(tmp_path) as database:
        s = server_factory(database, "--log-format", "json", "--access-log", "false")
        r = requests.get(s.gh.issuer + "/healthz", headers={"X-Request-Id": "quiet-1"}, timeout=10)
        assert r.headers["X-Request-Id"] == "quiet-1"
        # The server's own start-up lines are there, and are JSON; no access line.
        lines = s.json_lines()
        assert any("Gatehouse is running" in l["message"] for l in lines)
        assert not any(l.get("message") == "request" for l in lines)


def ready(s: Server) -> tuple[int, dict]:
    r = requests.get(s.gh.issuer + "/readyz", timeout=10)
    assert r.headers["Cache-Control"] == "no-store"
    return r.status_code, r.json()


def test_readiness_checks_the_database(tmp_path, server_factory):
    with own_database(tmp_path) as database:
        s = server_factory(database)
        status, body = ready(s)
        assert status == 200 and body["status"] == "ready", body
        assert body["checks"] == {"database": "ok", "migrations": "ok", "signing_keys": "ok", "shutdown": "ok"}
        assert "failing" not in body

        if ON_PG:
            # The database goes away under the running server.
            name = urlsplit(database).path.lstrip("/")
            psql(f"DROP DATABASE {name} WITH (FORCE)")
            started = time.monotonic()
            status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(ready(s)),
                                      "readyz to report the dropped database")
            assert time.monotonic() - started < 5
            assert body["status"] == "not_ready" and "database" in body["failing"], body
            assert body["checks"]["database"] != "ok"
            # Liveness does not touch the database.
            live = requests.get(s.gh.issuer + "/healthz", timeout=10)
            assert live.status_code == 200 and live.json() == {"status": "ok"}
        else:
            # A migration the binary knows but the database lacks (an older schema under a newer binary).
            db = sqlite3.connect(database.removeprefix("sqlite://"), timeout=10)
            latest, name, applied_at = db.execute(
                "SELECT version, name, applied_at FROM gatehouse_migrations ORDER BY version DESC LIMIT 1").fetchone()
            with db:
                db.execute("DELETE FROM gatehouse_migrations WHERE version = ?", (latest,))
            status, body = ready(s)
            assert status == 503 and body["failing"] == ["migrations"], body
            assert body["checks"]["migrations"] == f"pending: {latest}"
            assert requests.get(s.gh.issuer + "/healthz", timeout=10).status_code == 200
            with db:
                db.execute("INSERT INTO gatehouse_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                           (latest, name, applied_at))
            db.close()
            assert ready(s)[0] == 200


def test_sigterm_under_load_answers_every_accepted_request(tmp_path, server_factory):
    """SIGTERM in the middle of a load: /readyz turns 503 at once, requests keep being served for
    shutdown_grace, then the server stops accepting, finishes what it accepted and exits 0. A request is
    accepted when the server logged it (its access line, by X-Request-Id): each of those got its response.
    Requests the server never logged may fail (connection refused or closed before they were read)."""
    with own_database(tmp_path) as database:
        s = server_factory(database, "--log-format", "json", "--shutdown-grace", "2s")
        client = s.gh.create_client(grant_types=["client_credentials"])
        auth = basic_auth(client["client_id"], client["client_secret"])
        outcomes: dict[str, object] = {}
        lock = threading.Lock()
        stop = threading.Event()
        sent_after_term = []
        term_at = []

        def worker(n: int):
            # Half the workers keep connections alive, half open a new one per request.
            session = requests.Session() if n % 2 == 0 else None
            i = 0
            while not stop.is_set():
                rid = f"load-{n}-{i}"
                i += 1
                try:
                    r = (session or requests).post(
                        s.gh.token_endpoint, data={"grant_type": "client_credentials"},
                        headers={"Authorization": auth, "X-Request-Id": rid}, timeout=20)
                    outcome = r.status_code
                except requests.RequestException as e:
                    outcome = type(e).__name__
                with lock:
                    outcomes[rid] = outcome
                    if term_at:
                        sent_after_term.append((rid, outcome))

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(6)]
        for t in threads:
            t.start()
        wait_until(lambda: sum(1 for o in list(outcomes.values()) if o == 200) >= 50, "50 answered requests")

        s.proc.send_signal(signal.SIGTERM)
        with lock:
            term_at.append(time.monotonic())
        # Readiness turns at once; liveness keeps answering during the grace period.
        wait_until(lambda: ready(s)[0] == 503, "readyz to answer 503 after SIGTERM", timeout=1.5)
        status, body = ready(s)
        assert body["failing"] == ["shutdown"] and body["checks"]["shutdown"] == "shutting down", body

        code = s.proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert code == 0, s.text()[-3000:]

        lines = s.json_lines()
        logged = {l["request_id"]: l["status"] for l in lines if l.get("message") == "request" and
                  str(l.get("request_id", "")).startswith("load-")}
        with lock:
            seen = dict(outcomes)
        failed_accepted = {rid: seen.get(rid) for rid, st in logged.items() if seen.get(rid) != st}
        assert not failed_accepted, f"accepted requests that did not get their response: {failed_accepted}"
        assert all(st == 200 for st in logged.values()), {k: v for k, v in logged.items() if v != 200}
        # The grace period served requests after SIGTERM.
        served_after = [rid for rid, o in sent_after_term if o == 200]
        assert len(served_after) >= 10, f"only {len(served_after)} requests answered after SIGTERM"
        # Failures only for requests the server never saw.
        failures = {rid: o for rid, o in seen.items() if o != 200}
        assert all(rid not in logged for rid in failures), failures
        assert any("shutting down" in l["message"] for l in lines)
        print(f"load: {len(seen)} sent, {len(logged)} accepted and answered, {len(served_after)} answered after "
              f"SIGTERM, {len(failures)} not accepted ({sorted(set(map(str, failures.values())))})")


# --- Metrics ------------------------------------------------------------------------------------------------
def scrape(url: str, token: str | None = None) -> dict:
    """GET a /metrics page and parse it with prometheus-client's text parser: {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.get(url, headers=headers, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_a_known_sequence(tmp_path, server_factory):
    with own_database(tmp_path) as database:
        s = server_factory(database)
        cc = s.gh.create_client(grant_types=["client_credentials"])
        pw = s.gh.create_client(allow_password_grant=True)
        person, password = s.gh.create_user()
        for _ in range(3):
            assert s.gh.token(cc, grant_type="client_credentials").status_code == 200
        assert s.gh.token(cc, secret="wrong", grant_type="client_credentials").status_code == 401
        assert s.gh.token(cc, grant_type="evil<grant>").status_code == 400
        ok = s.gh.token(pw, grant_type="password", username=person["username"], password=password)
        assert ok.status_code == 200, ok.text
        for _ in range(2):
            assert s.gh.token(pw, grant_type="password", username=person["username"], password="nope").status_code == 400
        token = s.gh.token(cc, grant_type="client_credentials").json()["access_token"]
        assert s.gh.introspect(token, cc)["active"] is True
        assert s.gh.introspect("not-a-token", cc)["active"] is False
        # Client-supplied values never become label values.
        assert requests.get(s.gh.issuer + "/evil-path-xyz", timeout=10).status_code == 404
        assert requests.request("PROPFIND", s.gh.issuer + "/healthz", timeout=10).status_code in (404, 405)

        m = scrape(s.gh.issuer + "/metrics")
        text = requests.get(s.gh.issuer + "/metrics", timeout=10).text
        assert "evil" not in text.lower() and "xyz" not in text

        assert value(m, "gatehouse_tokens_issued_total", grant_type="client_credentials", client_id=cc["client_id"]) == 4
        assert value(m, "gatehouse_tokens_issued_total", grant_type="password", client_id=pw["client_id"]) == 1
        assert value(m, "gatehouse_token_errors_total", error="invalid_client", grant_type="unknown") == 1
        assert value(m, "gatehouse_token_errors_total", error="unsupported_grant_type", grant_type="unknown") == 1
        assert value(m, "gatehouse_token_errors_total", error="invalid_grant", grant_type="password") == 2
        assert value(m, "gatehouse_sign_ins_total", method="password", outcome="success") == 1
        assert value(m, "gatehouse_sign_ins_total", method="password", outcome="failure") == 2
        assert value(m, "gatehouse_introspections_total", outcome="active") == 1
        assert value(m, "gatehouse_introspections_total", outcome="inactive") == 1
        token_2xx = dict(route="/oauth2/token", method="POST", status_class="2xx")
        assert value(m, "gatehouse_http_requests_total", **token_2xx) == 5
        assert value(m, "gatehouse_http_requests_total", route="/oauth2/token", method="POST", status_class="4xx") == 4
        assert value(m, "gatehouse_http_requests_total", route="unmatched", method="GET", status_class="4xx") >= 1
        assert value(m, "gatehouse_http_requests_total", route="unmatched", method="other", status_class="4xx") \
            + value(m, "gatehouse_http_requests_total", route="/healthz", method="other", status_class="4xx") >= 1
        assert value(m, "gatehouse_http_request_duration_seconds_count", **token_2xx) == 5
        assert value(m, "gatehouse_http_request_duration_seconds_bucket", le="+Inf", **token_2xx) == 5
        assert value(m, "gatehouse_http_request_duration_seconds_sum", **token_2xx) > 0
        assert value(m, "process_resident_memory_bytes") > 1_000_000
        assert value(m, "process_open_fds") > 3
        assert abs(value(m, "process_start_time_seconds") - time.time()) < 3600
        assert 0 <= value(m, "gatehouse_signing_key_age_seconds") < 3600
        assert value(m, "gatehouse_outbox_pending", kind="webhook") == 0
        # The database: each token request read the client at least once; nothing holds a connection now.
        assert value(m, "gatehouse_db_query_duration_seconds_count", operation="read") >= 5
        assert value(m, "gatehouse_db_query_duration_seconds_count", operation="transaction") >= 1
        assert value(m, "gatehouse_db_query_duration_seconds_sum", operation="read") > 0
        assert value(m, "gatehouse_db_connections_max") == (16 if ON_PG else 4)
        assert value(m, "gatehouse_db_waiting") == 0
        assert 0 <= value(m, "gatehouse_db_connections_in_use") <= 3  # background workers may hold one
        # Counters only grow.
        again = scrape(s.gh.issuer + "/metrics")
        assert value(again, "gatehouse_http_requests_total", route="/metrics", method="GET", status_class="2xx") >= 1


def test_metrics_on_their_own_port_with_a_token(tmp_path, server_factory):
    with own_database(tmp_path) as database:
        port = free_port()
        token = secrets.token_urlsafe(24)
        s = server_factory(database, "--metrics-port", str(port), "--metrics-token", token)
        # Not on the public port any more.
        assert requests.get(s.gh.issuer + "/metrics", timeout=10).status_code == 404
        url = f"http://127.0.0.1:{port}/metrics"
        for auth in [None, "Bearer wrong-token-xxxxxxxxxxxx", f"Basic {token}", f"Bearer {token}x"]:
            r = requests.get(url, headers={"Authorization": auth} if auth else {}, timeout=10)
            assert r.status_code == 401, (auth, r.status_code)
            assert "gatehouse_" not in r.text
        m = scrape(url, token)
        assert value(m, "process_open_fds") > 3
        assert token not in s.text()
        cfg = subprocess.run([str(BIN), "config", "show", "--metrics-token", token], capture_output=True, text=True,
                             timeout=60)
        assert token not in cfg.stdout + cfg.stderr


@pytest.mark.skipif(ON_PG, reason="the bound is the server's, not the database's: tested once, on SQLite")
def test_a_trickling_client_cannot_hold_the_shutdown(tmp_path, server_factory):
    """A client that sends a request's head and then only part of its body keeps that request in flight. After
    SIGTERM the shutdown waits for it at most shutdown_grace + 30 s, then cancels it and the process exits."""
    s = server_factory(f"sqlite://{tmp_path}/trickle.sqlite", "--shutdown-grace", "0s")
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
    try:
        sock.sendall(b"POST /oauth2/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=")
        # The server has the request (it answers others meanwhile), then SIGTERM.
        assert requests.get(s.gh.issuer + "/healthz", timeout=10).status_code == 200
        start = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: s.proc.poll() is not None, "the process to exit within shutdown_grace + 30 s", timeout=45,
                   interval=0.2)
        elapsed = time.monotonic() - start
        # Not before the in-flight limit (the request was still open), not long after it.
        assert 29 <= elapsed <= 40, elapsed
        assert s.proc.returncode == 0, s.text()[-2000:]
        assert "shutting down" in s.text()
    finally:
        sock.close()
