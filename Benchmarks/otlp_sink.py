"""A minimal OTLP/HTTP receiver for Benchmarks/observability.sh: accepts POST /v1/traces, counts the
exports and bytes (written to the file given), answers 200 with an empty protobuf body. Loopback only.

Usage: python3 Benchmarks/otlp_sink.py PORT COUNT_FILE"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, count_file = int(sys.argv[1]), sys.argv[2]
exports = 0
received = 0


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        global exports, received
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        exports += 1
        received += len(body)
        with open(count_file, "w") as f:
            f.write(f"{exports} exports, {received} bytes\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()
