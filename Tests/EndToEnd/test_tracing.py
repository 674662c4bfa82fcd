"""OpenTelemetry tracing (docs/operations.md#tracing) against a real OTLP/HTTP receiver on loopback: the
exported protobuf is decoded with the OpenTelemetry protocol's own types (opentelemetry-proto). A request's
W3C `traceparent` makes its server span a child of the caller's; the grant and the database calls are
spans of the same trace; the webhook delivery joins the trace of the request that raised the event and
sends `traceparent` on; so does a call to an upstream provider. Sampling follows `otel_sampling_ratio` and
the caller's sampled flag. No span carries a secret or a query string."""

import gzip
import json
import secrets
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from conftest import BIN, basic_auth, free_port, own_database, unique, wait_until

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


class Receiver:
    """One loopback HTTP server playing three parts: the OTLP/HTTP trace receiver (`POST /v1/traces`), a
    webhook receiver (`POST /hook`) and an upstream provider's who-am-I endpoint (`GET /me`)."""

    def __init__(self):
        self.spans: list[tuple[trace_pb2.Span, dict]] = []  # (span, resource attributes)
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers) to /hook and /me
        self.raw_headers: list[list[tuple[str, str]]] = []  # every header line of each POST to /hook
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/v1/traces":
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    assert self.headers.get("Content-Type") == "application/x-protobuf", self.headers
                    export = trace_service_pb2.ExportTraceServiceRequest()
                    export.ParseFromString(body)
                    with receiver.lock:
                        for rs in export.resource_spans:
                            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                            for ss in rs.scope_spans:
                                for span in ss.spans:
                                    receiver.spans.append((span, resource))
                    reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                    return
                with receiver.lock:
                    receiver.requests.append(("POST", self.path, dict(self.headers)))
                    receiver.raw_headers.append(list(self.headers.items()))
                self.send_response(204)
                self.end_headers()

            def do_GET(self):
                with receiver.lock:
                    receiver.requests.append(("GET", self.path, dict(self.headers)))
                body = b'{"id": 4242, "login": "upstream-alice", "email": "alice@upstream.example"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def trace(self, trace_id: str) -> list[trace_pb2.Span]:
        with self.lock:
            return [s for s, _ in self.spans if s.trace_id.hex() == trace_id]

    def seen(self, method: str, path: str) -> list[dict]:
        with self.lock:
            return [h for m, p, h in self.requests if m == method and p == path]


def attrs(span: trace_pb2.Span) -> dict:
    out = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = v.string_value if v.HasField("string_value") else v.int_value if v.HasField("int_value") else \
            v.bool_value if v.HasField("bool_value") else v.double_value
    return out


def traceparent(sampled: bool = True) -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}", trace_id, span_id


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def quick_export(monkeypatch):
    """The batch span processor exports every 100 ms instead of 5 s (OTEL_BSP_SCHEDULE_DELAY, read by
    swift-otel), so the test waits less."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")


def test_request_grant_database_webhook_and_upstream_spans_form_one_trace(tmp_path, server_factory, receiver):
    with own_database(tmp_path) as database:
        config = tmp_path / "gatehouse.json"  # token.issued goes only to hooks that ask for it
        config.write_text(json.dumps({"webhooks": [
            {"url": receiver.base + "/hook?token=HOOKQUERYTOKEN", "secret": "w" * 24, "events": ["token.issued"]}]}))
        s = server_factory(database, "--config", str(config), "--otel-endpoint", receiver.base,
                           "--otel-sampling-ratio", "1", "--log-format", "json")
        client = s.gh.create_client(grant_types=["client_credentials"])

        header, trace_id, parent_id = traceparent()
        r = requests.post(s.gh.token_endpoint, data={"grant_type": "client_credentials"}, timeout=10,
                          headers={"Authorization": basic_auth(client["client_id"], client["client_secret"]),
                                   "traceparent": header})
        assert r.status_code == 200, r.text

        # The server span is the caller's child, named by the route template.
        def server_span():
            return next((sp for sp in receiver.trace(trace_id) if sp.kind == trace_pb2.Span.SPAN_KIND_SERVER), None)
        span = wait_until(server_span, "the token request's server span at the OTLP receiver", timeout=20)
        assert span.name == "POST /oauth2/token"
        assert span.parent_span_id.hex() == parent_id
        a = attrs(span)
        assert a["http.route"] == "/oauth2/token" and a["http.request.method"] == "POST"
        assert a["http.response.status_code"] == 200
        assert a["gatehouse.request_id"] == r.headers["X-Request-Id"]
        assert a["gatehouse.client_id"] == client["client_id"]
        # The access line of that request names the trace and the server span.
        line = wait_until(lambda: next((l for l in s.json_lines() if l.get("request_id") == r.headers["X-Request-Id"]
                                        and l.get("message") == "request"), None), "the access line", timeout=10)
        assert line["trace_id"] == trace_id and line["span_id"] == span.span_id.hex(), line
        resources = [res for sp, res in receiver.spans if sp.trace_id.hex() == trace_id]
        assert all(res.get("service.name") == "gatehouse" for res in resources), resources

        # The grant and the database calls are in the same trace, under the server span.
        def inner():
            spans = receiver.trace(trace_id)
            grant = [sp for sp in spans if sp.name == "oauth2.token client_credentials"]
            db = [sp for sp in spans if sp.name.startswith("db.")]
            return (grant, db) if grant and db else None
        grant, db = wait_until(inner, "the grant's and the database's spans", timeout=20)
        assert grant[0].parent_span_id == span.span_id
        assert attrs(grant[0])["oauth.grant_type"] == "client_credentials"
        assert all(attrs(d)["db.system"] in ("sqlite", "postgresql") for d in db)
        assert all(d.kind == trace_pb2.Span.SPAN_KIND_CLIENT for d in db)

        # The webhook for token.issued is delivered in that trace and carries traceparent to the hook.
        hooks = wait_until(lambda: receiver.seen("POST", "/hook?token=HOOKQUERYTOKEN"), "the webhook delivery", timeout=20)
        sent = hooks[0].get("traceparent") or hooks[0].get("Traceparent")
        assert sent and sent.split("-")[1] == trace_id, hooks[0]
        wait_until(lambda: [sp for sp in receiver.trace(trace_id) if sp.name == "webhook token.issued"],
                   "the webhook delivery's span", timeout=20)

        # An upstream provider call (token exchange asks the provider's who-am-I URL) carries traceparent too.
        p = s.gh.run("providers", "add", "--id", "up", "--kind", "oauth2", "--client-id", "ours", "--client-secret-stdin",
                     "--authorize-url", receiver.base + "/authorize", "--token-url", receiver.base + "/token",
                     "--userinfo-url", receiver.base + "/me", "--whoami-url", receiver.base + "/me",
                     "--allow-foreign-tokens", stdin="upstream-client-secret\n")
        assert p.returncode == 0, p.stderr
        exchanger = s.gh.cli("clients", "create", "--name", unique("x-"), "--grant-type", TOKEN_EXCHANGE)
        header2, trace2, _ = traceparent()
        r = requests.post(s.gh.token_endpoint, timeout=10, data={
            "grant_type": TOKEN_EXCHANGE, "subject_token": "upstream-token-123", "subject_token_type": ACCESS_TOKEN_TYPE,
            "subject_issuer": "up"},
            headers={"Authorization": basic_auth(exchanger["client_id"], exchanger["client_secret"]),
                     "traceparent": header2})
        assert r.status_code in (200, 400), r.text
        me = wait_until(lambda: receiver.seen("GET", "/me"), "the call to the provider", timeout=20)
        assert me[0].get("Authorization") == "Bearer upstream-token-123"
        assert (me[0].get("traceparent") or "").split("-")[1:2] == [trace2], me[0]
        upstream = wait_until(lambda: [sp for sp in receiver.trace(trace2) if sp.name == "HTTP GET"],
                              "the upstream call's client span", timeout=20)
        assert attrs(upstream[0])["server.address"] == "127.0.0.1"

        # Nothing secret and no query string in any span.
        with receiver.lock:
            everything = repr([(sp.name, attrs(sp)) for sp, _ in receiver.spans])
        for secret in (client["client_secret"], exchanger["client_secret"], "upstream-token-123",
                       "upstream-client-secret", "w" * 24, "HOOKQUERYTOKEN"):
            assert secret not in everything


def test_sampling_ratio_and_the_callers_sampled_flag(tmp_path, server_factory, receiver):
    with own_database(tmp_path) as database:
        s = server_factory(database, "--otel-endpoint", receiver.base + "/", "--otel-sampling-ratio", "0")
        # Ratio 0: new traces are not recorded, nor is a caller's trace marked not sampled...
        for _ in range(5):
            assert requests.get(s.gh.issuer + "/healthz", timeout=10).status_code == 200
        unsampled, unsampled_id, _ = traceparent(sampled=False)
        assert requests.get(s.gh.issuer + "/healthz", headers={"traceparent": unsampled}, timeout=10).status_code == 200
        # ...but a caller's sampled trace is (parent-based sampling).
        sampled, sampled_id, _ = traceparent(sampled=True)
        assert requests.get(s.gh.jwks_uri, headers={"traceparent": sampled}, timeout=10).status_code == 200
        got = wait_until(lambda: receiver.trace(sampled_id), "the sampled caller's span", timeout=20)
        assert got[0].name == "GET /.well-known/jwks.json"
        # Spans are exported in batches: the sampled one arrived, so the others would have too.
        with receiver.lock:
            traces = {sp.trace_id.hex() for sp, _ in receiver.spans}
        assert traces == {sampled_id}, traces
        assert not receiver.trace(unsampled_id)


def test_bad_tracing_settings_are_refused(tmp_path):
    for flags, message in [(["--otel-endpoint", "ftp://collector"], "--otel-endpoint"),
                           (["--otel-endpoint", "http://user:pw@collector:4318"], "--otel-endpoint"),
                           (["--otel-sampling-ratio", "1.5"], "--otel-sampling-ratio"),
                           (["--metrics", "false", "--metrics-port", "9464"], "--metrics-port")]:
        p = subprocess.run([str(BIN), "serve", "--database", f"sqlite://{tmp_path}/x.sqlite", *flags],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and message in p.stderr, (flags, p.stderr)
        assert "user:pw" not in p.stderr  # credentials in a URL are not echoed


def test_hostile_trace_headers_are_dropped_not_logged_or_forwarded(tmp_path, server_factory, receiver):
    """A malformed traceparent (swift-otel would log the request's headers in its warning) and a huge
    tracestate (it would ride on every outgoing call) are left out; one traceparent goes to the hook."""
    with own_database(tmp_path) as database:
        config = tmp_path / "gatehouse.json"
        config.write_text(json.dumps({"webhooks": [
            {"url": receiver.base + "/hook", "secret": "w" * 24, "events": ["token.issued"]}]}))
        s = server_factory(database, "--config", str(config), "--otel-endpoint", receiver.base,
                           "--otel-sampling-ratio", "1", "--log-format", "json")
        client = s.gh.create_client(grant_types=["client_credentials"])
        auth = basic_auth(client["client_id"], client["client_secret"])
        for bad in ["00-zzzz-bad", "00-" + "A" * 32 + "-" + "b" * 16 + "-01", "ff-" + "a" * 32 + "-" + "b" * 16 + "-01", ""]:
            r = requests.post(s.gh.token_endpoint, data={"grant_type": "client_credentials"}, timeout=10,
                              headers={"Authorization": auth, "traceparent": bad, "tracestate": "Vendor=x,,",
                                       "Cookie": "__Host-gatehouse_session=SESSIONCOOKIEVALUE"})
            assert r.status_code == 200, r.text
        header, trace_id, _ = traceparent()
        huge = ",".join(f"k{i}=v{i}" for i in range(3000))
        r = requests.post(s.gh.token_endpoint, data={"grant_type": "client_credentials"}, timeout=10,
                          headers={"Authorization": auth, "traceparent": header, "tracestate": huge})
        assert r.status_code == 200, r.text
        # Five token.issued deliveries, each with exactly one traceparent and no tracestate of the request's.
        wait_until(lambda: len(receiver.raw_headers) >= 5, "five webhook deliveries", timeout=30)
        with receiver.lock:
            deliveries = list(receiver.raw_headers)
        for headers in deliveries:
            names = [k.lower() for k, _ in headers]
            assert names.count("traceparent") == 1, headers
            assert "k2999=v2999" not in repr(headers)
        assert any(v.split("-")[1] == trace_id for h in deliveries for k, v in h if k.lower() == "traceparent")
        assert s.proc.poll() is None  # still serving
        log = s.text()
        assert "SESSIONCOOKIEVALUE" not in log and auth.split()[1] not in log and client["client_secret"] not in log
        assert "Failed to extract" not in log
