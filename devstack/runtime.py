"""Runs each function the way Lambda does: its own interpreter(s), its own
environment (the template's variables, nothing leaked from the developer's
shell but PATH and friends), `app.handler` imported from its CodeUri with the
layer on sys.path. Several warm workers per function serve concurrent calls.

Without a Stripe key the stack hands each runtime the URL of its shared Fake:
every worker installs a client of it (billing.processor.set_processor) before
it imports the handler, so the layer, which builds only the StripeProcessor,
never learns the Fake exists.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from devstack.template import ACCOUNT, REGION, FunctionSpec

_KEEP_FROM_HOST = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT", "VIRTUAL_ENV")


class FunctionError(Exception):
    """The handler raised, timed out or its process died: Lambda's function error."""

    def __init__(self, error_type: str, message: str, trace: str = "") -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.trace = trace


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline_ms: float
    function_version: str = "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{os.getpid()}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.deadline_ms - time.time() * 1000))


# -- inside the worker process ---------------------------------------------------

_handler: Any = None
_init_error: str | None = None
_name = ""
_memory = 128


def install_fake_processor(url: str) -> None:
    """Make this process's functions use the stack's shared Fake at `url`.

    Called with the layer on sys.path, before the handler is imported. The
    client (devstack.fake_stripe) also carries the scripted crash: it ends this
    worker process, as a Lambda killed mid-invocation."""
    from billing.processor import set_processor
    from devstack.fake_stripe.remote import RemoteFakeProcessor

    set_processor(RemoteFakeProcessor(url))


def _worker_init(code_dir: str, layer_dirs: list[str], handler: str, env: dict[str, str],
                 name: str, memory: int, log_path: str | None = None,
                 fake_processor_url: str | None = None) -> None:
    global _handler, _init_error, _name, _memory
    if log_path:
        # Everything the function prints, at the descriptor level (what
        # CloudWatch Logs would receive), appended to one file the tests scan.
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    kept = {k: os.environ[k] for k in _KEEP_FROM_HOST if k in os.environ}
    os.environ.clear()
    os.environ.update(kept)
    os.environ.update(env)
    # Layer content lands in /opt/python on Lambda; the function's code dir is
    # the task root and comes first.
    for path in reversed([code_dir, *layer_dirs]):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    module_name, _, attr = handler.rpartition(".")
    _name, _memory = name, memory
    try:
        if fake_processor_url:
            install_fake_processor(fake_processor_url)
        module = importlib.import_module(module_name)
        _handler = getattr(module, attr)
    except Exception as exc:  # noqa: BLE001 - reported as Lambda reports an init error
        # Keep the worker alive so the stack can say why, in one line.
        _init_error = f"{type(exc).__name__}: {exc}"


def _worker_invoke(event: Any, timeout_s: int) -> tuple[str, Any, float]:
    """(status, payload, seconds the handler ran): the time Lambda would bill,
    not the time the invocation waited for a free worker."""
    if _init_error is not None:
        return "error", {"errorType": "Runtime.ImportModuleError", "errorMessage": _init_error, "stackTrace": ""}, 0.0
    context = LambdaContext(
        function_name=_name,
        memory_limit_in_mb=_memory,
        invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{_name}",
        aws_request_id=str(uuid.uuid4()),
        deadline_ms=time.time() * 1000 + timeout_s * 1000,
    )
    started = time.monotonic()
    try:
        return "ok", _handler(event, context), time.monotonic() - started
    except Exception as exc:  # noqa: BLE001 - every handler failure is a function error
        return "error", {
            "errorType": type(exc).__name__,
            "errorMessage": str(exc),
            "stackTrace": traceback.format_exc(),
        }, time.monotonic() - started


def _worker_ping() -> str | None:
    return _init_error


# -- in the local stack -------------------------------------------------------------


class FunctionRuntime:
    """A pool of warm workers for one function; thread-safe `invoke`."""

    def __init__(self, spec: FunctionSpec, extra_env: dict[str, str], concurrency: int = 4,
                 log_path: str | None = None, *, fake_processor_url: str | None = None) -> None:
        self.spec = spec
        self.log_path = log_path
        # Set: the stack's shared Fake, installed in every worker (install_fake_processor).
        self.fake_processor_url = fake_processor_url
        self.name = spec.environment.get("AWS_LAMBDA_FUNCTION_NAME", spec.logical_id)
        self.env = {
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            **spec.environment,
            **extra_env,
        }
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self.invocations = 0
        self.worker_exits = 0  # invocations whose process died (Runtime.ExitError)
        # Seconds the handler ran, summed (the benchmarks' GB-second estimate).
        self.busy_seconds = 0.0

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.concurrency,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_worker_init,
                    initargs=(str(self.spec.code_dir), [str(p) for p in self.spec.layer_dirs],
                              self.spec.handler, self.env, self.name, self.spec.memory, self.log_path,
                              self.fake_processor_url),
                )
            return self._pool

    def warm(self) -> None:
        """Start one worker and import the handler (a cold start), or raise."""
        try:
            error = self._executor().submit(_worker_ping).result(timeout=60)
        except BrokenProcessPool:
            self._reset()
            raise FunctionError("InitError", f"{self.spec.logical_id}: its worker process died at start") from None
        if error is not None:
            self._reset()
            raise FunctionError("InitError", f"{self.spec.logical_id} failed to start: {error}")

    def _reset(self, broken: ProcessPoolExecutor | None = None) -> None:
        """Drop the pool; with `broken`, only if it is still the current one
        (concurrent invocations of a pool whose worker died all land here,
        and must not discard the fresh pool the first of them made room for)."""
        with self._lock:
            if broken is not None and self._pool is not broken:
                return
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def invoke(self, event: Any) -> Any:
        self.invocations += 1
        pool = self._executor()
        try:
            future: Future[tuple[str, Any, float]] = pool.submit(_worker_invoke, event, self.spec.timeout)
            status, payload, seconds = future.result(timeout=self.spec.timeout + 5)
        except FutureTimeout:
            # A worker stuck past its timeout cannot be reclaimed from a pool:
            # replace the pool, as Lambda replaces a timed-out environment.
            self._reset(pool)
            raise FunctionError("TimeoutError", f"Task timed out after {self.spec.timeout} seconds") from None
        except BrokenProcessPool:
            self.worker_exits += 1
            self._reset(pool)
            raise FunctionError("Runtime.ExitError", "the function's process exited during the invocation") from None
        self.busy_seconds += seconds
        if status == "error":
            raise FunctionError(payload["errorType"], payload["errorMessage"], payload["stackTrace"])
        return payload

    def close(self) -> None:
        self._reset()
