"""The deployed topology on one machine: DynamoDB (moto or DynamoDB Local) with
the template's tables, SSM parameters for the Stripe secrets, one warm runtime
per function, stream pollers, schedules, EventBridge's stand-in (the stack's
bus and the Stripe partner source) and the HTTP gateway."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

from devstack.cfn import TemplateError, check_parameters, parse_parameter_overrides
from devstack.dynamodb import EmbeddedMoto, client, create_tables
from devstack.eventbridge import API_PATH as EVENTBRIDGE_PATH
from devstack.eventbridge import EventBridgeStandIn
from devstack.fake_stripe import RPC_PATH, FakeStripe
from devstack.gateway import Gateway, LocalRequest
from devstack.runtime import FunctionError, FunctionRuntime
from devstack.schedules import ScheduleRunner
from devstack.streams import OnFailureLog, StreamSupervisor
from devstack.template import FunctionSpec, Stack

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("devstack")
# The partner event source the local stack pretends a Stripe event
# destination created (StripeEventSourceName), so the inbound EventBridge
# path runs locally: `make trigger VIA=eventbridge` delivers to it.
LOCAL_STRIPE_EVENT_SOURCE = "aws.partner/stripe.com/ed_test_local"


class StartupError(Exception):
    """The stack cannot start; the message is the one line to show."""


@dataclass
class Settings:
    port: int = 3000
    host: str = "127.0.0.1"
    template: Path = ROOT / "template.yaml"
    stripe_api_key: str | None = None
    # With the key: a Stripe-compatible server (stripe-mock, localstripe) instead of
    # api.stripe.com, handed to every function as STRIPE_API_BASE (and
    # STRIPE_METER_EVENTS_BASE for the v2 meter event stream, default the same server).
    stripe_api_base: str | None = None
    stripe_meter_events_base: str | None = None
    webhook_secrets: str = "whsec_local_dev"
    meter_api: str = "v1"
    dynamodb_endpoint: str | None = None
    concurrency: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    function_log: Path | None = None  # set: every function's output goes to this file
    # Tables, queues and rules are named after it. Embedded moto servers of one
    # process share one backend, so a second stack in the same process needs
    # its own name, or it replaces the first one's tables.
    stack_name: str = "billing-local"
    # StripeEventSourceName; "" leaves the inbound EventBridge path out, as deployed without it.
    stripe_event_source: str = LOCAL_STRIPE_EVENT_SOURCE
    # Other template parameters (e.g. EventsPollMinAgeSeconds), as `sam deploy --parameter-overrides`
    # (PARAMETER_OVERRIDES); checked against the template's declarations at start.
    parameters: dict[str, str] = field(default_factory=dict)
    # How long start() waits for the Fake's seeded catalog to be processed before it gives up.
    ready_timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        raw_port = env.get("PORT", "3000")
        if not raw_port.isdigit() or not 0 <= int(raw_port) < 65536:
            raise StartupError(f"PORT must be a port number, got {raw_port!r}")
        try:
            parameters = parse_parameter_overrides(env.get("PARAMETER_OVERRIDES", ""))
        except TemplateError as exc:
            raise StartupError(str(exc)) from None
        # The older variables name two parameters too; given both ways, they must agree.
        meter_api = _one_of(env, "METER_API", parameters, "MeterApi", "v1")
        if meter_api not in ("v1", "v2"):
            raise StartupError(f"METER_API must be v1 or v2, got {meter_api!r}")
        event_source = _one_of(env, "STRIPE_EVENT_SOURCE_NAME", parameters, "StripeEventSourceName",
                               LOCAL_STRIPE_EVENT_SOURCE)
        return cls(
            port=int(raw_port),
            template=Path(env.get("TEMPLATE", str(ROOT / "template.yaml"))),
            stripe_api_key=env.get("STRIPE_API_KEY") or None,
            stripe_api_base=_base_url(env, "STRIPE_API_BASE"),
            stripe_meter_events_base=_base_url(env, "STRIPE_METER_EVENTS_BASE"),
            webhook_secrets=env.get("STRIPE_WEBHOOK_SECRET") or "whsec_local_dev",
            meter_api=meter_api,
            dynamodb_endpoint=env.get("DYNAMODB_ENDPOINT_URL") or None,
            concurrency=int(env.get("LOCAL_CONCURRENCY", "4")),
            stripe_event_source=event_source,
            parameters=parameters,
            ready_timeout=float(env.get("LOCAL_READY_TIMEOUT", "60")),
        )


def _one_of(env: Mapping[str, str], variable: str, parameters: dict[str, str], parameter: str, default: str) -> str:
    """A parameter the stack also takes from its own variable: from either (and
    out of `parameters`, which LocalStack fills from the settings' field)."""
    overridden = parameters.pop(parameter, None)
    value = env.get(variable)
    if value is not None and overridden is not None and value != overridden:
        raise StartupError(f"{variable}={value!r} and PARAMETER_OVERRIDES {parameter}={overridden!r} disagree")
    return value if value is not None else overridden if overridden is not None else default


def _base_url(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    if value and not value.startswith(("http://", "https://")):
        raise StartupError(f"{name} must be an http(s) URL, got {value!r}")
    return value.rstrip("/") or None


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:
            self.stack = Stack(settings.template, stack_name=settings.stack_name,
                               parameters={**settings.parameters, "MeterApi": settings.meter_api,
                                           "StripeEventSourceName": settings.stripe_event_source})
            # What CloudFormation refuses, refused here (names and allowed values);
            # the two the stack always sets count only where the template declares them.
            declared = self.stack.doc.get("Parameters") or {}
            check_parameters(self.stack.doc, {k: v for k, v in self.stack.parameters.items()
                                              if k in declared or k in settings.parameters})
        except TemplateError as exc:
            raise StartupError(str(exc)) from None
        self.moto: EmbeddedMoto | None = None
        self.gateway: Gateway | None = None
        self.runtimes: dict[str, FunctionRuntime] = {}
        self.functions: list[FunctionSpec] = []
        self.stream_arns: dict[str, str] = {}
        self.services: list[Any] = []  # things with start()/stop(): pollers, schedules
        self.on_failure = OnFailureLog()
        self.streams: StreamSupervisor | None = None
        self.schedules: ScheduleRunner | None = None
        self.eventbridge: EventBridgeStandIn | None = None
        # Without a Stripe key every function shares the stack's one Fake.
        self.fake_stripe = None if settings.stripe_api_key else FakeStripe()
        self.ddb_endpoint = ""

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> LocalStack:
        s = self.settings
        # Bind the port first: a port in use must fail before anything starts.
        try:
            self.gateway = Gateway([], self.invoke, s.host, s.port)
        except OSError as exc:
            raise StartupError(f"cannot listen on {s.host}:{s.port}: {exc.strerror}") from None
        try:
            self._start()
        except (TemplateError, RuntimeError, FunctionError, ValueError) as exc:
            self.stop()
            raise StartupError(exc.message if isinstance(exc, FunctionError) else str(exc)) from None
        return self

    def _start(self) -> None:
        assert self.gateway is not None
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.moto = EmbeddedMoto()
        self.moto.start()
        self.ddb_endpoint = self.settings.dynamodb_endpoint or self.moto.url
        self.stream_arns = create_tables(self.ddb_endpoint, self.stack.tables())
        self._put_parameters()
        self.functions = self.stack.functions(self.stream_arns)
        env = self.function_env()
        for spec in self.functions:
            self.runtimes[spec.logical_id] = FunctionRuntime(
                spec, env, self.settings.concurrency,
                str(self.settings.function_log) if self.settings.function_log else None,
                fake_processor_url=self.fake_processor_url)
        self.gateway.set_routes([r for f in self.functions for r in f.routes])
        self._register_local_routes()
        self.eventbridge = EventBridgeStandIn(self.stack.event_buses(), [r for f in self.functions for r in f.rules],
                                              self.invoke, self.on_failure)
        self.eventbridge.register(self.gateway.router)
        if self.fake_stripe is not None:
            self.fake_stripe.register(self.gateway.router)
            # Events the Fake raises (meter error reports) reach the webhook
            # route signed with the first configured secret, as Stripe's would.
            self.fake_stripe.deliver_webhooks_to(self.gateway.url + "/v1/webhooks/stripe",
                                                 self.settings.webhook_secrets.split(",")[0].strip())
        with ThreadPoolExecutor(max_workers=len(self.runtimes) or 1) as pool:
            for error in [f.exception() for f in [pool.submit(r.warm) for r in self.runtimes.values()]]:
                if error is not None:
                    raise error
        self._start_services()
        self.gateway.start()
        if self.fake_stripe is not None:
            # The Fake's events (its seeded catalog first) reach the webhook
            # route from now on; the catalog is projected before start returns.
            seeded = [str(e["id"]) for e in self.fake_stripe.fake.events_since(0)]
            self.fake_stripe.start_delivery()
            self._wait_processed(seeded, self.settings.ready_timeout)

    def _wait_processed(self, event_ids: list[str], timeout: float) -> None:
        """Until every one of these events has its outcome on its webhook_events
        row (RuntimeError naming the rest after `timeout`). The rows, not the
        streams: a drained stream says its records were handed over (or
        filtered out), not that they were applied, and a stream's tail can
        lag the write (DynamoDB Local)."""
        deadline = time.monotonic() + timeout
        self.settle(timeout=timeout)
        if "WebhookEventsTable" not in self.stack.resources:
            return
        table = str(self.stack.resolver().resolve({"Ref": "WebhookEventsTable"}))
        ddb = client(self.ddb_endpoint)
        waiting = dict.fromkeys(event_ids, "not stored")
        while waiting:
            for event_id in list(waiting):
                item = ddb.get_item(TableName=table, Key={"pk": {"S": event_id}}, ConsistentRead=True).get("Item")
                status = item["status"]["S"] if item else "not stored"
                if status in ("processed", "ignored", "stale"):
                    del waiting[event_id]
                else:
                    waiting[event_id] = status
            if not waiting:
                return
            if time.monotonic() >= deadline:
                shown = ", ".join(f"{e} {s}" for e, s in list(waiting.items())[:3])
                raise RuntimeError(f"the Fake's seeded catalog was not processed within {timeout:g}s: "
                                   f"{len(waiting)} of {len(event_ids)} webhook events are not ({shown})")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.fake_stripe is not None:
            self.fake_stripe.stop_delivery()
        for service in reversed(self.services):
            service.stop()
        self.services.clear()
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        for runtime in self.runtimes.values():
            runtime.close()
        if self.moto is not None:
            self.moto.stop()
            self.moto = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- wiring ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    @property
    def fake_processor_url(self) -> str | None:
        """Where function workers reach the shared Fake (None: real Stripe).
        Handed to each FunctionRuntime, which installs it in every worker."""
        if self.fake_stripe is None:
            return None
        assert self.gateway is not None
        return self.gateway.url + RPC_PATH

    def function_env(self) -> dict[str, str]:
        """What the stack adds to each function's template environment."""
        assert self.moto is not None
        env = {
            # boto3 and botocore honour service-specific endpoint variables,
            # so the deployed code reaches the local services unchanged.
            "AWS_ENDPOINT_URL_DYNAMODB": self.ddb_endpoint,
            "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": self.ddb_endpoint,
            "AWS_ENDPOINT_URL_SSM": self.moto.url,
            "AWS_ENDPOINT_URL_SQS": self.moto.url,
            # The stack's EventBridge stand-in, served by the gateway (devstack.eventbridge).
            "AWS_ENDPOINT_URL_EVENTBRIDGE": self.url + EVENTBRIDGE_PATH,
            # No X-Ray daemon and no CloudWatch agent on a laptop.
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            # Lets the Fake's client end a worker on a scripted crash.
            "BILLING_LOCAL_STACK": "1",
        }
        if self.settings.stripe_api_key and self.settings.stripe_api_base:
            # The layer's StripeSettings reads these (billing.processor.get_processor).
            env["STRIPE_API_BASE"] = self.settings.stripe_api_base
            env["STRIPE_METER_EVENTS_BASE"] = (self.settings.stripe_meter_events_base
                                               or self.settings.stripe_api_base)
        env.update(self.settings.extra_env)
        return env

    def _put_parameters(self) -> None:
        assert self.moto is not None
        ssm = client(self.moto.url, "ssm")
        resolver = self.stack.resolver()
        names = {p: resolver.resolve({"Ref": p}) for p in ("StripeWebhookSecretsParameter", "StripeApiKeyParameter")
                 if p in (self.stack.doc.get("Parameters") or {})}
        if "StripeWebhookSecretsParameter" in names:
            ssm.put_parameter(Name=names["StripeWebhookSecretsParameter"], Value=self.settings.webhook_secrets,
                              Type="SecureString", Overwrite=True)
        if self.settings.stripe_api_key and "StripeApiKeyParameter" in names:
            ssm.put_parameter(Name=names["StripeApiKeyParameter"], Value=self.settings.stripe_api_key,
                              Type="SecureString", Overwrite=True)

    def _start_services(self) -> None:
        """Stream pollers and schedules for every mapping the template declares."""
        assert self.moto is not None
        invokers = {lid: runtime.invoke for lid, runtime in self.runtimes.items()}
        self.streams = StreamSupervisor(self.functions, self.stream_arns, invokers, self.ddb_endpoint,
                                        sqs_endpoint_url=self.moto.url, on_failure_log=self.on_failure)
        self.streams.start()
        self.services.append(self.streams)
        self.schedules = ScheduleRunner(self.functions, invokers, stack_name=self.stack.stack_name)
        self.schedules.start()
        self.services.append(self.schedules)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every stream record written so far was delivered or dead-lettered."""
        return self.streams is None or self.streams.drain_all(timeout)

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until the Fake delivered every event it recorded so far and the
        stream pollers applied them (what a test waits for before asserting
        the outcome of a change Stripe reports by webhook)."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        fake = self.fake_stripe
        for _ in range(5):
            if fake is not None and not fake.wait_delivered(left()):
                return False
            # Twice: applying an event can re-drive deferred ones, which are new stream records.
            if not (self.drain(left()) and self.drain(left())):
                return False
            if fake is None or fake.wait_delivered(0.0):
                return True
        return False

    def _register_local_routes(self) -> None:
        assert self.gateway is not None
        self.gateway.router.add_local("GET", "/_local/functions", self._list_functions)
        self.gateway.router.add_local("GET", "/_local/on-failure", self._on_failure_records)
        self.gateway.router.add_local("POST", "/_local/schedules/{name}/trigger", self._trigger_schedule)
        self.gateway.router.add_local("POST", "/_local/settle", self._settle)
        self.gateway.router.add_local("POST", "/_local/dynamodb/faults", self._dynamodb_faults)
        self.gateway.router.add_local("GET", "/_local/dynamodb/faults", self._dynamodb_faults)
        self.gateway.router.add_local("DELETE", "/_local/dynamodb/faults", self._dynamodb_faults)

    def _settle(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        settled = self.settle()
        return (200 if settled else 504), {"settled": settled}

    def _on_failure_records(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        return 200, {"data": self.on_failure.records()}

    def _dynamodb_faults(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        """Script DynamoDB faults (POST {"operation", "error", "times", "table"?}), read them
        (GET) or drop the pending ones (DELETE).

        Only the embedded moto server takes faults; against
        DYNAMODB_ENDPOINT_URL (DynamoDB Local) there is nothing to script."""
        if self.moto is None or self.settings.dynamodb_endpoint:
            return 409, {"error": {"type": "conflict", "message": "DynamoDB faults need the embedded moto server "
                                   "(DYNAMODB_ENDPOINT_URL is set)", "details": {}}}
        if request.method == "GET":
            return 200, self.moto.faults()
        if request.method == "DELETE":
            return 200, self.moto.clear_faults()
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("operation"), str):
            raise ValueError('give {"operation": "TransactWriteItems", "error": "ThrottlingException", "times": N}')
        fault = {"operation": body["operation"], "error": str(body.get("error", "ThrottlingException")),
                 "times": int(body.get("times", 1))}
        if body.get("table") is not None:
            fault["table"] = str(body["table"])
        try:
            return 200, self.moto.faults(**fault)
        except HTTPError as exc:  # the injector refused the fault: say why
            raise ValueError(json.loads(exc.read() or b"{}").get("error", "invalid fault")) from None

    def _trigger_schedule(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        assert self.schedules is not None
        return 200, {"result": self.schedules.trigger(params["name"])}

    def _list_functions(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        return 200, {"data": [
            {"function": f.logical_id, "routes": [f"{r.method} {r.path}" for r in f.routes],
             "streams": [m.name for m in f.streams], "schedules": [s.name for s in f.schedules],
             "rules": [r.name for r in f.rules],
             "invocations": self.runtimes[f.logical_id].invocations}
            for f in self.functions]}

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        return self.runtimes[function].invoke(event)
