"""A tiny third-party API that trusts Gatehouse access tokens with nothing but PyJWT and the standard library.

It is the interop check "the other way round": a resource server that knows nothing about Gatehouse
except the issuer URL verifies our RFC 9068 JWT access tokens the way a careful Python API would.

    python pyjwt_api.py --issuer ISSUER_URL --audience AUD --port PORT [--host 127.0.0.1]

GET /healthz  200 without authentication.
GET /whoami   `Authorization: Bearer <token>` -> 200 {"sub", "client_id", "scope"}; otherwise 401 with an
              RFC 6750 challenge. Checks: header typ at+jwt; signature with the issuer's JWKS key named by
              `kid`, whose algorithm must be the header's and one of ALGORITHMS; iss; aud; exp and iat.
It prints `pyjwt-api listening on http://HOST:PORT` once it accepts connections.
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

ALGORITHMS = ["ES256", "RS256", "PS256", "ES384", "EdDSA"]


class Unauthorized(Exception):
    def __init__(self, error: str | None, detail: str):
        super().__init__(detail)
        self.error = error


def make_handler(issuer: str, audience: str):
    jwks = jwt.PyJWKClient(issuer.rstrip("/") + "/.well-known/jwks.json", timeout=10)

    def verify(authorization: str | None) -> dict:
        if not authorization:
            raise Unauthorized(None, "no Authorization header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("invalid_request", f"not a Bearer credential: {scheme!r}")
        try:
            header = jwt.get_unverified_header(token)
            if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
                raise Unauthorized("invalid_token", f"typ {header.get('typ')!r} is not at+jwt")
            key = jwks.get_signing_key_from_jwt(token)  # refetches the JWKS once for an unknown kid
            return jwt.decode(
                token, key, algorithms=ALGORITHMS, audience=audience, issuer=issuer,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.PyJWTError as e:  # includes PyJWKClientError (unknown kid, JWKS unreachable)
            raise Unauthorized("invalid_token", f"{type(e).__name__}: {e}") from None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self.send_json(200, {"status": "ok"})
            elif path == "/whoami":
                try:
                    claims = verify(self.headers.get("Authorization"))
                except Unauthorized as e:
                    self.log_message("401 %s", e)
                    challenge = 'Bearer realm="pyjwt-api"' + (f', error="{e.error}"' if e.error else "")
                    self.send_json(401, {"error": e.error or "unauthorized"}, {"WWW-Authenticate": challenge})
                    return
                self.send_json(200, {"sub": claims["sub"], "client_id": claims.get("client_id"),
                                     "scope": claims.get("scope")})
            else:
                self.send_json(404, {"error": "not_found"})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.issuer, args.audience))
    server.daemon_threads = True
    print(f"pyjwt-api listening on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
