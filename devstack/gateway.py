"""An HTTP gateway that behaves like API Gateway's REST proxy integration.

Each request is matched against the routes template.yaml declares (method and
path template, `{param}` and `{proxy+}`), turned into the proxy event Lambda
receives, and handed to that function; the proxy result becomes the HTTP
response. Local control routes (`/_local/...`) are served by the stack itself,
and the operator console's static files under `/console/`.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devstack import console_files
from devstack.runtime import FunctionError
from devstack.template import ACCOUNT, ApiRoute

log = logging.getLogger("devstack.gateway")

# API Gateway REST APIs refuse payloads over 10 MB before any function runs.
MAX_PAYLOAD = 10 * 1024 * 1024


@dataclass(frozen=True)
class LocalRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


LocalHandler = Callable[[LocalRequest, dict[str, str]], tuple[int, Any]]


class _CompiledRoute:
    def __init__(self, route: ApiRoute) -> None:
        self.route = route
        pattern, self.static_segments = "", 0
        for segment in route.path.strip("/").split("/"):
            if segment.startswith("{") and segment.endswith("+}"):
                pattern += f"/(?P<{segment[1:-2]}>.+)"
            elif segment.startswith("{") and segment.endswith("}"):
                pattern += f"/(?P<{segment[1:-1]}>[^/]+)"
            else:
                pattern += "/" + re.escape(segment)
                self.static_segments += 1
        self.regex = re.compile(f"^{pattern or '/'}$")
        self.greedy = "+}" in route.path

    def sort_key(self) -> tuple[int, int, int]:
        # API Gateway prefers the most specific resource: static segments,
        # then plain parameters, greedy proxies last; a method beats ANY.
        return (-self.static_segments, int(self.greedy), int(self.route.method == "ANY"))


class Router:
    def __init__(self, routes: list[ApiRoute]) -> None:
        self.routes = sorted((_CompiledRoute(r) for r in routes), key=_CompiledRoute.sort_key)
        self.local: list[tuple[str, re.Pattern[str], LocalHandler]] = []

    def add_local(self, method: str, path: str, handler: LocalHandler) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")
        self.local.append((method.upper(), regex, handler))

    def match(self, method: str, path: str) -> tuple[ApiRoute, dict[str, str]] | str | None:
        """The route and its path parameters; "method" if the path exists for other methods only."""
        path_seen = False
        for compiled in self.routes:
            m = compiled.regex.match(path)
            if not m:
                continue
            path_seen = True
            if compiled.route.method in (method, "ANY"):
                return compiled.route, {k: unquote(v) for k, v in m.groupdict().items()}
        return "method" if path_seen else None


def build_proxy_event(route: ApiRoute, params: dict[str, str], method: str, raw_path: str,
                      query: dict[str, list[str]], headers: dict[str, list[str]], body: bytes,
                      source_ip: str, stage: str = "local") -> dict[str, Any]:
    """API Gateway REST (v1) proxy event, as Lambda receives it."""
    try:
        text: str | None = body.decode("utf-8") if body else None
        is_b64 = False
    except UnicodeDecodeError:
        # Without binary media types API Gateway cannot pass raw bytes as text.
        text, is_b64 = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    single_headers = {k: v[-1] for k, v in headers.items()}
    return {
        "resource": route.path,
        "path": raw_path,
        "httpMethod": method,
        "headers": single_headers or None,
        "multiValueHeaders": headers or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": params or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": route.path,
            "httpMethod": method,
            "extendedRequestId": uuid.uuid4().hex[:16],
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{stage}{raw_path}",
            "accountId": ACCOUNT,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now * 1000),
            "requestId": str(uuid.uuid4()),
            "identity": {
                "cognitoIdentityPoolId": None, "accountId": None, "cognitoIdentityId": None,
                "caller": None, "sourceIp": source_ip, "principalOrgId": None, "accessKey": None,
                "cognitoAuthenticationType": None, "cognitoAuthenticationProvider": None,
                "userArn": None, "userAgent": single_headers.get("User-Agent"), "user": None,
            },
            "domainName": "localhost",
            "apiId": "local",
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }


class _Server(ThreadingHTTPServer):
    # The stdlib listens with a backlog of 5: a burst of connections (a
    # duplicate storm, a client's connection pool opening at once) overflows
    # it and some are reset. API Gateway takes bursts; so must the gateway.
    request_queue_size = 128


class Gateway:
    def __init__(self, routes: list[ApiRoute], invoke: Callable[[str, dict[str, Any]], Any],
                 host: str = "127.0.0.1", port: int = 3000) -> None:
        self.router = Router(routes)
        self.invoke = invoke
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "billing-devstack"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                log.debug("%s %s", self.address_string(), format % args)

            def _serve(self) -> None:
                gateway.handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        # Raises OSError (EADDRINUSE) here, before anything else starts.
        self.server = _Server((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    def set_routes(self, routes: list[ApiRoute]) -> None:
        local = self.router.local
        self.router = Router(routes)
        self.router.local = local

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        # shutdown() waits for serve_forever(), which never ran if start() didn't.
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
        self.server.server_close()

    # -- one request ------------------------------------------------------------

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        split = urlsplit(req.path)
        path = split.path or "/"
        method = req.command.upper()
        length = int(req.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD:
            self._send(req, 413, {"message": "Request Too Long"}, close=True)
            return
        body = req.rfile.read(length) if length else b""
        query = parse_qs(split.query, keep_blank_values=True)
        headers: dict[str, list[str]] = {}
        for key, value in req.headers.items():
            headers.setdefault(key, []).append(value)

        if console_files.is_console(path):
            console_files.serve(req, path)
            return

        if path.startswith("/_local/"):
            self._local(req, method, path, query, headers, body)
            return

        matched = self.router.match(method, path)
        if matched is None or matched == "method":
            # API Gateway answers an unknown resource or method without
            # calling any function.
            status, type_ = (404, "not_found") if matched is None else (405, "method_not_allowed")
            self._send(req, status, {"error": {"type": type_, "message": f"no route for {method} {path}",
                                               "details": {}}})
            return
        assert not isinstance(matched, str)
        route, params = matched
        event = build_proxy_event(route, params, method, path, query, headers, body, req.client_address[0])
        try:
            result = self.invoke(route.function, event)
        except FunctionError as exc:
            log.error("function %s failed: %s", route.function, exc)
            self._send(req, 502, {"message": "Internal server error"})
            return
        self._send_proxy_result(req, route, result)

    def _local(self, req: BaseHTTPRequestHandler, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, list[str]], body: bytes) -> None:
        for m, regex, handler in self.router.local:
            found = regex.match(path)
            if found and m == method:
                request = LocalRequest(method, path, query, {k: v[-1] for k, v in headers.items()}, body)
                try:
                    status, payload = handler(request, found.groupdict())
                except (ValueError, KeyError, TypeError) as exc:
                    status, payload = 400, {"error": {"type": "bad_request", "message": str(exc), "details": {}}}
                self._send(req, status, payload)
                return
        self._send(req, 404, {"error": {"type": "not_found", "message": f"no local route {method} {path}",
                                        "details": {}}})

    def _send_proxy_result(self, req: BaseHTTPRequestHandler, route: ApiRoute, result: Any) -> None:
        if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
            log.error("function %s returned a malformed proxy response", route.function)
            self._send(req, 502, {"message": "Internal server error"})
            return
        raw = result.get("body") or ""
        data = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
        merged: dict[str, list[str]] = {}
        for key, value in (result.get("headers") or {}).items():
            merged[key] = [str(value)]
        for key, values in (result.get("multiValueHeaders") or {}).items():
            merged[key] = [str(v) for v in values]
        self._write(req, result["statusCode"], merged, data)

    def _send(self, req: BaseHTTPRequestHandler, status: int, payload: Any, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        self._write(req, status, {"Content-Type": ["application/json"]}, data, close)

    @staticmethod
    def _write(req: BaseHTTPRequestHandler, status: int, headers: dict[str, list[str]], data: bytes,
               close: bool = False) -> None:
        req.send_response(status)
        for key, values in headers.items():
            if key.lower() in ("content-length", "connection", "transfer-encoding"):
                continue
            for value in values:
                req.send_header(key, value)
        req.send_header("Content-Length", str(len(data)))
        if close:
            req.send_header("Connection", "close")
            req.close_connection = True
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(data)
