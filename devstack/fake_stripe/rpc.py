"""Serve one FakeProcessor to many processes.

In the local stack each Lambda function runs in its own process, yet they must
share one Fake Stripe: a customer created through the API has to exist when
the webhook processor re-fetches it, and the `/_local/fake-stripe/...` routes
must inspect what every function sent. The stack owns the Fake and exposes
`dispatch` over HTTP; functions reach it through RemoteFakeProcessor.

Wire format, one POST per call:
    request  {"method": "create_customer", "args": [...], "kwargs": {...}}
    response 200 {"result": ...}          the call returned (None for send_meter_events)
             200 {"error": {...}}         the call raised ProcessorFailure (its fields)
             200 {"crash": true}          the call took effect and a scripted crash
                                          follows: the caller's process must exit
             400 {"error": {"type": "rpc_error", ...}}   not a valid call
             500 {"error": {"type": "api_error", ...}}   the Fake itself crashed
A processor failure is a normal outcome of the call, hence 200: only a
malformed request or a bug is an HTTP error.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from billing.processor.base import PROCESSOR_METHODS, JSONDict
from billing.processor.errors import ProcessorFailure
from devstack.fake_stripe.faults import ProcessCrash
from devstack.fake_stripe.processor import FakeProcessor

logger = logging.getLogger(__name__)

RPC_ERROR = "rpc_error"
MAX_REQUEST_BYTES = 5 * 1024 * 1024


def _rpc_error(message: str) -> tuple[int, JSONDict]:
    return HTTPStatus.BAD_REQUEST, {"error": {"type": RPC_ERROR, "message": message}}


def dispatch(fake: FakeProcessor, request: object) -> tuple[int, JSONDict]:
    """Execute one Processor call on `fake`. Only interface methods are callable:
    the controls (add_fault, reset, raise_meter_error) stay with the stack."""
    if not isinstance(request, dict):
        return _rpc_error("the request must be a JSON object")
    method = request.get("method")
    args = request.get("args", [])
    kwargs = request.get("kwargs", {})
    if not isinstance(method, str) or method not in PROCESSOR_METHODS:
        return _rpc_error(f"unknown method {str(method)[:64]!r}")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return _rpc_error("args must be a list and kwargs an object")
    function = getattr(fake, method)
    try:
        # Bind first, so a wrong argument is the caller's error and a
        # TypeError raised inside the Fake is still reported as a crash.
        inspect.signature(function).bind(*args, **kwargs)
    except TypeError as exc:
        return _rpc_error(f"{method}: {exc}")
    try:
        result = function(*args, **kwargs)
    except ProcessorFailure as failure:
        return HTTPStatus.OK, {"error": failure.to_dict()}
    except ProcessCrash:
        # The Fake runs in the stack's process, which must not die: the
        # caller's process does (RemoteFakeProcessor), like a Lambda worker
        # killed between the Stripe call and the DynamoDB write.
        return HTTPStatus.OK, {"crash": True}
    except ValueError as exc:  # e.g. retrieve_object with an unsupported type
        return _rpc_error(f"{method}: {exc}")
    except Exception as exc:
        logger.exception("fake processor crashed in %s", method)
        message = f"fake processor crashed in {method}: {type(exc).__name__}"
        return HTTPStatus.INTERNAL_SERVER_ERROR, {"error": {"type": "api_error", "message": message}}
    return HTTPStatus.OK, {"result": result}


class _Handler(BaseHTTPRequestHandler):
    server: FakeProcessorServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._reply(*_rpc_error("request too large"))
            return
        try:
            request = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            self._reply(*_rpc_error("the body is not JSON"))
            return
        self._reply(*dispatch(self.server.fake, request))

    def _reply(self, status: int, body: JSONDict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        logger.debug("fake processor rpc: " + format, *args)


class FakeProcessorServer(ThreadingHTTPServer):
    """An HTTP server for one Fake: POST / with the wire format above."""

    daemon_threads = True

    def __init__(self, fake: FakeProcessor, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.fake = fake
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> FakeProcessorServer:
        """Serve in a daemon thread; returns self (for `url`)."""
        # A short poll interval: stop() (shutdown) waits for one poll.
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-processor-rpc", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
