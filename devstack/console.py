"""`make console STACK=<name>`: the operator console for a deployed stack,
served on the operator's own machine (DESIGN.md section 12).

The console's static files are served from console/, and every /v1/ call is
forwarded to the stack's API (its `ApiUrl` output) signed with SigV4 for
execute-api with the operator's own AWS credentials (the default chain:
environment, AWS_PROFILE, SSO, ...). IAM stays the only door: nothing is
deployed for the console, and a read-only role can browse but not act (the
API answers its writes 403, shown as they came).

It listens on 127.0.0.1 only and refuses any request another web page could
make through the operator's browser (a foreign Origin, or a Host that is not
this server's: DNS rebinding): the proxy signs with the operator's identity.

Development tooling: never shipped in the layer.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devstack import console_files

log = logging.getLogger("devstack.console")

# What the browser may pass on to the API; everything else (cookies, the
# browser's own headers) stays on this machine.
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "Idempotency-Key", "If-Match")
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "ETag", "Retry-After", "Idempotent-Replayed")
MAX_BODY = 10 * 1024 * 1024
EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


def api_url_from_stack(cloudformation: Any, stack_name: str) -> str:
    """The stack's `ApiUrl` output (raises ValueError naming what is missing)."""
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    for output in stacks[0].get("Outputs", []) if stacks else []:
        if output["OutputKey"] == "ApiUrl":
            return str(output["OutputValue"]).rstrip("/")
    raise ValueError(f"stack {stack_name} has no ApiUrl output")


def region_of(api_url: str, default: str | None) -> str:
    found = EXECUTE_API_HOST.match(urlsplit(api_url).hostname or "")
    if found:
        return found.group(1)
    if not default:
        raise ValueError(f"cannot tell the region of {api_url}: give --region")
    return default


@dataclass
class Upstream:
    """Where calls go and who signs them. `credentials` is called per request:
    refreshable credentials (SSO, assumed roles) stay fresh."""

    api_url: str
    region: str
    credentials: Any  # () -> botocore Credentials (frozen or refreshable)
    timeout: float = 30.0

    def forward(self, method: str, path_and_query: str, headers: dict[str, str],
                body: bytes) -> tuple[int, dict[str, str], bytes]:
        url = self.api_url + path_and_query
        request = AWSRequest(method=method, url=url, data=body or None, headers=headers)
        creds = self.credentials()
        if creds is None:
            raise PermissionError("no AWS credentials (set AWS_PROFILE, run aws sso login, or export keys)")
        frozen = creds.get_frozen_credentials() if hasattr(creds, "get_frozen_credentials") else creds
        SigV4Auth(Credentials(frozen.access_key, frozen.secret_key, frozen.token), "execute-api",
                  self.region).add_auth(request)
        prepared = request.prepare()
        # Sent exactly as signed; a redirect would need a new signature.
        resp = requests.request(method, prepared.url, data=prepared.body or None,
                                headers=dict(prepared.headers.items()), timeout=self.timeout, allow_redirects=False)
        return resp.status_code, dict(resp.headers.items()), resp.content


class ConsoleServer:
    def __init__(self, upstream: Upstream, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.upstream = upstream
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "billing-console"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                log.debug("%s %s", self.address_string(), format % args)

            def _serve(self) -> None:
                server.handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def own_hosts(self) -> set[str]:
        port = self.httpd.server_address[1]
        return {f"127.0.0.1:{port}", f"localhost:{port}"}

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        path = urlsplit(req.path).path or "/"
        origin = req.headers.get("Origin")
        if req.headers.get("Host") not in self.own_hosts() or (
                origin is not None and urlsplit(origin).netloc not in self.own_hosts()):
            self._send(req, 403, "forbidden", "only the console's own pages may call through this proxy")
            return
        if path == "/":
            req.send_response(302)
            req.send_header("Location", "/console/")
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        if console_files.is_console(path):
            console_files.serve(req, path)
            return
        if not path.startswith("/v1/"):
            self._send(req, 404, "not_found", f"no route for {req.command} {path}")
            return
        length = int(req.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(req, 413, "payload_too_large", "request body over 10 MB")
            return
        body = req.rfile.read(length) if length else b""
        headers = {k: v for k in FORWARDED_REQUEST_HEADERS if (v := req.headers.get(k)) is not None}
        try:
            status, answer_headers, data = self.upstream.forward(req.command, req.path, headers, body)
        except PermissionError as exc:
            self._send(req, 401, "no_credentials", str(exc))
            return
        except (requests.RequestException, OSError) as exc:
            log.warning("upstream unreachable: %s", type(exc).__name__)
            self._send(req, 502, "upstream_unreachable", f"the stack's API did not answer ({type(exc).__name__})")
            return
        req.send_response(status)
        lowered = {k.lower(): v for k, v in answer_headers.items()}
        for key in FORWARDED_RESPONSE_HEADERS:
            if key.lower() in lowered:
                req.send_header(key, lowered[key.lower()])
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(data)

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, type_: str, message: str) -> None:
        data = json.dumps({"error": {"type": type_, "message": message, "details": {}}}).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(data)

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make console", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", help="the CloudFormation stack whose ApiUrl output is called")
    parser.add_argument("--api-url", help="call this API URL instead of the stack's output")
    parser.add_argument("--region", help="default: the API URL's, else the profile's")
    parser.add_argument("--profile", help="an AWS profile (default: AWS_PROFILE or the default chain)")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if not (args.stack or args.api_url):
        parser.error("give STACK=<name> (or --api-url)")
    import boto3

    session = boto3.Session(profile_name=args.profile, region_name=args.region)
    api_url = args.api_url or api_url_from_stack(session.client("cloudformation"), args.stack)
    upstream = Upstream(api_url.rstrip("/"), region_of(api_url, session.region_name), session.get_credentials)
    server = ConsoleServer(upstream, port=args.port)
    print(f"console: {server.url}/console/ -> {api_url} (signed as your AWS identity); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
