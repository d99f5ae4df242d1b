"""The parts of template.yaml the local stack runs: tables, functions, routes,
stream mappings, schedules and EventBridge rules, read with SAM's Globals
merge rules. Resources with a false Condition are left out, as
CloudFormation leaves them out."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.cfn import Resolver, TemplateError, load_template

REGION = "us-east-1"
ROOT_LAYER = Path(__file__).resolve().parent.parent / "layers" / "common"
ACCOUNT = "123456789012"


@dataclass(frozen=True)
class ApiRoute:
    function: str
    method: str  # upper case, or ANY
    path: str  # the template path, e.g. /v1/customers/{id}
    auth: str  # AWS_IAM or NONE


@dataclass(frozen=True)
class StreamMapping:
    name: str
    function: str
    table: str  # logical id of the table whose stream feeds it
    batch_size: int
    batching_window_s: float
    filters: tuple[dict[str, Any], ...]
    report_batch_item_failures: bool
    maximum_retry_attempts: int  # -1: until the record expires
    bisect_on_error: bool
    on_failure: str | None  # destination ARN
    starting_position: str


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    function: str
    expression: str
    enabled: bool
    input: dict[str, Any] | None


@dataclass(frozen=True)
class RuleSpec:
    """An EventBridgeRule event: the bus it listens on, its pattern, and the
    asynchronous invocation's retries (the function's EventInvokeConfig)."""

    name: str
    function: str
    event_bus: str  # the bus's name
    pattern: dict[str, Any]
    maximum_retry_attempts: int  # Lambda's asynchronous retries (0-2; default 2)
    on_failure: str | None  # EventInvokeConfig's OnFailure destination ARN


@dataclass
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: int
    memory: int
    layer_dirs: list[Path]
    routes: list[ApiRoute] = field(default_factory=list)
    streams: list[StreamMapping] = field(default_factory=list)
    schedules: list[ScheduleSpec] = field(default_factory=list)
    rules: list[RuleSpec] = field(default_factory=list)


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    name: str
    properties: dict[str, Any]


def _merge_globals(globals_: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    """SAM's rule: maps merge, lists concatenate (globals first), scalars override."""
    merged = copy.deepcopy(globals_)
    for key, value in props.items():
        base = merged.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            merged[key] = _merge_globals(base, value)
        elif isinstance(base, list) and isinstance(value, list):
            merged[key] = base + value
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Stack:
    """A template read for local execution.

    Tables are named `<stack>-<LogicalId>` unless they set TableName; their
    stream ARNs are only known once the tables exist, so functions resolve in
    a second step (`functions(stream_arns)`).
    """

    def __init__(self, path: str | Path, stack_name: str = "billing-local",
                 parameters: dict[str, str] | None = None) -> None:
        self.path = Path(path).resolve()
        self.root = self.path.parent
        self.doc = load_template(self.path)
        self.stack_name = stack_name
        self.parameters = parameters or {}
        self.resources: dict[str, Any] = self.doc["Resources"]
        self._refs: dict[str, Any] = {}
        self._attrs: dict[tuple[str, str], Any] = {}
        for lid, res in self.resources.items():
            rtype = res.get("Type", "")
            props = res.get("Properties") or {}
            if rtype == "AWS::DynamoDB::Table":
                name = props.get("TableName") if isinstance(props.get("TableName"), str) else None
                name = name or f"{stack_name}-{lid}"
                self._refs[lid] = name
                self._attrs[(lid, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
                self._attrs[(lid, "StreamArn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}/stream/pending"
            elif rtype == "AWS::SQS::Queue":
                self._refs[lid] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{stack_name}-{lid}"
                self._attrs[(lid, "Arn")] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{stack_name}-{lid}"
                self._attrs[(lid, "QueueName")] = f"{stack_name}-{lid}"
            elif rtype == "AWS::SNS::Topic":
                self._refs[lid] = f"arn:aws:sns:{REGION}:{ACCOUNT}:{stack_name}-{lid}"
                self._attrs[(lid, "TopicArn")] = self._refs[lid]
            elif rtype == "AWS::Serverless::LayerVersion":
                self._refs[lid] = f"local-layer:{lid}"
            elif rtype == "AWS::Serverless::Function":
                self._refs[lid] = f"{stack_name}-{lid}"
                self._attrs[(lid, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{stack_name}-{lid}"
            else:
                # Anything else resolves to a recognisable placeholder: the
                # local stack never calls it, but a reference must not fail.
                self._refs[lid] = f"{stack_name}-{lid}"
                self._attrs[(lid, "Arn")] = f"arn:aws:local:{REGION}:{ACCOUNT}:{lid}"
        # Event buses are named by their Name property (an intrinsic, e.g.
        # !Sub "${AWS::StackName}-..."), resolved once the rest is known.
        for lid, res in self.resources.items():
            if res.get("Type") == "AWS::Events::EventBus":
                name = self.resolver().resolve((res.get("Properties") or {}).get("Name") or f"{stack_name}-{lid}")
                self._refs[lid] = str(name)
                self._attrs[(lid, "Arn")] = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"

    def resolver(self, stream_arns: dict[str, str] | None = None) -> Resolver:
        attrs = dict(self._attrs)
        for lid, arn in (stream_arns or {}).items():
            attrs[(lid, "StreamArn")] = arn
        return Resolver(self.doc, self.parameters, self._refs, attrs, REGION, ACCOUNT, self.stack_name)

    def tables(self) -> list[TableSpec]:
        resolver = self.resolver()
        out = []
        for lid, res in self.resources.items():
            if res.get("Type") == "AWS::DynamoDB::Table":
                if "Condition" in res and not resolver.condition(res["Condition"]):
                    continue
                props = resolver.resolve(res.get("Properties") or {})
                out.append(TableSpec(lid, self._refs[lid], props))
        return out

    def event_buses(self) -> dict[str, str]:
        """Name -> logical id of every event bus the stack creates (under its Condition)."""
        resolver = self.resolver()
        return {self._refs[lid]: lid for lid, res in self.resources.items()
                if res.get("Type") == "AWS::Events::EventBus"
                and ("Condition" not in res or resolver.condition(res["Condition"]))}

    def queues(self) -> dict[str, str]:
        """ARN -> logical id of every SQS queue (on-failure destinations)."""
        return {self._attrs[(lid, "Arn")]: lid for lid, res in self.resources.items()
                if res.get("Type") == "AWS::SQS::Queue"}

    def _default_auth(self, resolver: Resolver, api_lid: str | None) -> str:
        apis = [lid for lid, r in self.resources.items() if r.get("Type") == "AWS::Serverless::Api"]
        lid = api_lid or (apis[0] if apis else None)
        if lid is None:
            return "NONE"
        props = resolver.resolve(self.resources[lid].get("Properties") or {})
        return str((props.get("Auth") or {}).get("DefaultAuthorizer", "NONE"))

    def functions(self, stream_arns: dict[str, str] | None = None) -> list[FunctionSpec]:
        resolver = self.resolver(stream_arns)
        globals_ = (self.doc.get("Globals") or {}).get("Function") or {}
        table_by_stream = {arn: lid for lid, arn in (stream_arns or {}).items()}
        for (lid, attr), arn in self._attrs.items():
            if attr == "StreamArn":
                table_by_stream.setdefault(arn, lid)
        out: list[FunctionSpec] = []
        for lid, res in self.resources.items():
            if res.get("Type") != "AWS::Serverless::Function":
                continue
            if "Condition" in res and not resolver.condition(res["Condition"]):
                continue  # not created with these parameters
            raw = _merge_globals(globals_, res.get("Properties") or {})
            events = raw.pop("Events", None) or {}
            props = resolver.resolve(raw)
            code_uri = props.get("CodeUri")
            if not isinstance(code_uri, str):
                raise TemplateError(f"{lid}: the local stack needs CodeUri to be a local folder")
            layer_dirs = []
            for ref in props.get("Layers") or []:
                if isinstance(ref, str) and ref.startswith("local-layer:"):
                    layer_lid = ref.split(":", 1)[1]
                    content = self.resources[layer_lid]["Properties"]["ContentUri"]
                    layer_dirs.append((self.root / content).resolve())
            env = {k: str(v) for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()}
            spec = FunctionSpec(
                logical_id=lid,
                code_dir=(self.root / code_uri).resolve(),
                handler=str(props.get("Handler", "app.handler")),
                environment=env,
                timeout=int(props.get("Timeout", 3)),
                memory=int(props.get("MemorySize", 128)),
                layer_dirs=layer_dirs,
            )
            for ev_name, ev in events.items():
                etype = ev.get("Type")
                ep = resolver.resolve(ev.get("Properties") or {})
                if etype == "Api":
                    api_ref = (ev.get("Properties") or {}).get("RestApiId")
                    api_lid = api_ref.get("Ref") if isinstance(api_ref, dict) else None
                    auth = (ep.get("Auth") or {}).get("Authorizer") or self._default_auth(resolver, api_lid)
                    spec.routes.append(ApiRoute(lid, str(ep["Method"]).upper(), str(ep["Path"]), str(auth)))
                elif etype == "DynamoDB":
                    stream = str(ep["Stream"])
                    if stream not in table_by_stream:
                        raise TemplateError(f"{lid}.{ev_name}: stream {stream} is not a table's stream here")
                    patterns = tuple(
                        json.loads(f["Pattern"]) if isinstance(f.get("Pattern"), str) else f.get("Pattern", {})
                        for f in (ep.get("FilterCriteria") or {}).get("Filters") or []
                    )
                    dest = ((ep.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
                    spec.streams.append(StreamMapping(
                        name=f"{lid}.{ev_name}",
                        function=lid,
                        table=table_by_stream[stream],
                        batch_size=int(ep.get("BatchSize", 100)),
                        batching_window_s=float(ep.get("MaximumBatchingWindowInSeconds", 0)),
                        filters=patterns,
                        report_batch_item_failures="ReportBatchItemFailures" in (ep.get("FunctionResponseTypes") or []),
                        maximum_retry_attempts=int(ep.get("MaximumRetryAttempts", -1)),
                        bisect_on_error=bool(ep.get("BisectBatchOnFunctionError", False)),
                        on_failure=str(dest) if dest else None,
                        starting_position=str(ep.get("StartingPosition", "TRIM_HORIZON")),
                    ))
                elif etype == "EventBridgeRule":
                    invoke_config = props.get("EventInvokeConfig") or {}
                    dest = ((invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
                    spec.rules.append(RuleSpec(
                        name=f"{lid}.{ev_name}", function=lid,
                        event_bus=str(ep.get("EventBusName") or "default"),
                        pattern=dict(ep.get("Pattern") or {}),
                        maximum_retry_attempts=int(invoke_config.get("MaximumRetryAttempts", 2)),
                        on_failure=str(dest) if dest else None,
                    ))
                elif etype in ("Schedule", "ScheduleV2"):
                    expression = ep.get("Schedule") or ep.get("ScheduleExpression")
                    enabled = ep.get("Enabled", ep.get("State", "ENABLED") == "ENABLED")
                    raw_input = ep.get("Input")
                    spec.schedules.append(ScheduleSpec(
                        name=f"{lid}.{ev_name}", function=lid, expression=str(expression),
                        enabled=bool(enabled),
                        input=json.loads(raw_input) if isinstance(raw_input, str) else raw_input,
                    ))
            out.append(spec)
        return out
