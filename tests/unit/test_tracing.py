"""Tracing as the DetailedTracing parameter asks (billing.core.tracing; DESIGN.md
section 9: no response body, customer field or payload in traces).

Each case runs in a fresh interpreter with a function's template environment
and the variables Lambda sets (LAMBDA_TASK_ROOT: Powertools traces only in
Lambda), since what a cold start imports is decided once per process.
- Off (the default): no module of the X-Ray SDK is imported, and the
  handlers' decorators still run.
- On: what the X-Ray SDK emits (captured by an emitter in place of the UDP
  one) holds the handler's subsegment, never its response nor an exception's
  message, and a failure is still raised to Lambda, marked as a fault by type.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.template import Stack

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "common"
TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
EMAIL = "jane.doe@example.com"


def _environment(logical_id: str, **extra: str) -> dict[str, str]:
    spec = next(f for f in Stack(ROOT / "template.yaml").functions({}) if f.logical_id == logical_id)
    return {"PATH": "/usr/bin:/bin", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_LAMBDA_FUNCTION_NAME": logical_id, "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "POWERTOOLS_METRICS_DISABLED": "true", **spec.environment, **extra}


# What Lambda passes a handler, as far as Powertools' decorators read it.
_PRELUDE = """
import sys
sys.path[:0] = [{code!r}, {layer!r}]
from types import SimpleNamespace
context = SimpleNamespace(function_name={name!r}, memory_limit_in_mb=512, aws_request_id="req-1",
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:{name}")
"""


def _run(logical_id: str, script: str, **extra: str) -> dict[str, Any]:
    """`script` in a fresh interpreter with the function's folder and the layer on
    sys.path and a Lambda `context`; it prints one JSON object, returned."""
    spec = next(f for f in Stack(ROOT / "template.yaml").functions({}) if f.logical_id == logical_id)
    prelude = _PRELUDE.format(code=str(spec.code_dir), layer=str(LAYER), name=logical_id)
    out = subprocess.run([sys.executable, "-c", prelude + script],  # noqa: S603 - this interpreter
                         env=_environment(logical_id, **extra), capture_output=True, text=True, timeout=120,
                         check=False, cwd=spec.code_dir)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_the_template_defaults_to_tracing_off() -> None:
    for spec in Stack(ROOT / "template.yaml").functions({}):
        assert spec.environment["DETAILED_TRACING"] == "false", spec.logical_id
    on = Stack(ROOT / "template.yaml", parameters={"DetailedTracing": "true"}).functions({})
    assert {spec.environment["DETAILED_TRACING"] for spec in on} == {"true"}


@pytest.mark.parametrize("logical_id", ["ApiFunction", "WebhookFunction", "WebhookProcessorFunction",
                                        "MeterReporterFunction", "MeterSweeperFunction"])
def test_tracing_off_imports_no_xray_module(logical_id: str) -> None:
    result = _run(logical_id, """
import json, sys
import app
print(json.dumps({"xray": sorted(m for m in sys.modules if m.startswith("aws_xray_sdk")),
                  "tracer": type(app.tracer).__name__}))
""")
    assert result == {"xray": [], "tracer": "Tracer"}


def test_tracing_off_the_decorated_handlers_still_answer() -> None:
    health = json.loads((ROOT / "events" / "api" / "health.json").read_text())
    api = _run("ApiFunction", f"""
import json, sys
import app
response = app.handler(json.loads({json.dumps(health)!r}), context)
print(json.dumps({{"status": response["statusCode"], "body": json.loads(response["body"]),
                   "xray": "aws_xray_sdk" in sys.modules}}))
""")
    assert api == {"status": 200, "body": {"status": "ok"}, "xray": False}
    # The webhook refuses an oversized body before any AWS call.
    webhook = _run("WebhookFunction", """
import json, sys
import app
response = app.handler({"body": "x" * (300 * 1024), "headers": {}}, context)
print(json.dumps({"status": response["statusCode"], "xray": "aws_xray_sdk" in sys.modules}))
""")
    assert webhook == {"status": 413, "xray": False}


# What the X-Ray SDK would send to the daemon, kept instead.
_CAPTURE = """
import json, sys
from aws_xray_sdk.core import xray_recorder

class Capture:
    def __init__(self):
        self.sent = []
    def send_entity(self, entity):
        self.sent.append(entity.serialize())
    def set_daemon_address(self, address):
        pass

capture = Capture()
"""


# Handlers and a method that return and raise what a trace must never hold,
# traced by TRACER; prints what the callers got and what the SDK emitted.
_TRACED = _CAPTURE + f"""
TRACER
xray_recorder.configure(emitter=capture)

@tracer.capture_lambda_handler
def answers(event, context):
    return {{"statusCode": 200, "body": json.dumps({{"email": {EMAIL!r}, "name": "Jane Doe"}})}}

# Asking for the response and the error changes nothing.
@tracer.capture_lambda_handler(capture_response=True, capture_error=True)
def fails(event, context):
    raise ValueError("refused " + {EMAIL!r})

@tracer.capture_method(capture_response=True)
def lookup(customer):
    if customer is None:
        raise KeyError({EMAIL!r})
    return {{"email": {EMAIL!r}}}

response = answers({{}}, None)
try:
    fails({{}}, None)
    raised = None
except ValueError as error:
    raised = str(error)
found = lookup("cus_1")
try:
    lookup(None)
except KeyError:
    pass
print(json.dumps({{"tracer": type(tracer).__name__, "response": response, "raised": raised, "found": found,
                   "sent": [json.loads(doc) for doc in capture.sent]}}))
"""


def test_tracing_on_records_the_handler_but_never_its_response_or_its_error() -> None:
    result = _run("WebhookFunction", _TRACED.replace("TRACER", "from billing.core.observability import tracer"),
                  DETAILED_TRACING="true", _X_AMZN_TRACE_ID=TRACE_ID)
    assert result["tracer"] == "PrivateTracer"
    # The callers get exactly what they would untraced.
    assert json.loads(result["response"]["body"])["email"] == EMAIL
    assert result["raised"] == f"refused {EMAIL}"
    assert result["found"] == {"email": EMAIL}
    sent = {doc["name"]: doc for doc in result["sent"]}
    assert {"## answers", "## fails"} <= set(sent)
    method = next(doc for name, doc in sent.items() if name.endswith("lookup"))
    assert method["annotations"] == {"error_type": "KeyError"}  # the second call (the first succeeded)
    # Traced, annotated, the failure marked by its type, and nothing of what went through.
    assert sent["## answers"]["annotations"]["ColdStart"] is True
    assert sent["## fails"]["annotations"]["error_type"] == "ValueError"
    assert sent["## fails"].get("fault") is True
    for doc in result["sent"]:
        text = json.dumps(doc)
        assert EMAIL not in text and "Jane Doe" not in text and "refused" not in text, doc
        assert "cause" not in doc and "metadata" not in doc, doc


def test_the_capture_sees_what_powertools_defaults_would_record() -> None:
    # The same handlers under Powertools' own Tracer: the response and the
    # exception's message reach the trace, so the check above can fail.
    result = _run("WebhookFunction", _TRACED.replace("TRACER", "from aws_lambda_powertools import Tracer; "
                                                     "tracer = Tracer()"),
                  DETAILED_TRACING="true", _X_AMZN_TRACE_ID=TRACE_ID)
    sent = {doc["name"]: json.dumps(doc) for doc in result["sent"]}
    assert EMAIL in sent["## answers"]
    assert f"refused {EMAIL}" in sent["## fails"]


def test_tracing_on_the_api_handler_answers_and_its_body_stays_out_of_the_trace() -> None:
    health = json.loads((ROOT / "events" / "api" / "health.json").read_text())
    result = _run("ApiFunction", _CAPTURE + f"""
import app
xray_recorder.configure(emitter=capture)
response = app.handler(json.loads({json.dumps(health)!r}), context)
print(json.dumps({{"status": response["statusCode"], "sent": [json.loads(doc) for doc in capture.sent]}}))
""", DETAILED_TRACING="true", _X_AMZN_TRACE_ID=TRACE_ID)
    assert result["status"] == 200
    handler = next(doc for doc in result["sent"] if doc["name"] == "## handler")
    assert handler["annotations"] == {"ColdStart": True, "Service": "api"}
    assert "metadata" not in handler


def test_the_switch_reads_the_templates_spelling_and_names_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    from billing.core import settings
    from billing.core.errors import ConfigurationError

    for raw, expected in (("true", True), ("False", False), ("TRUE", True)):
        monkeypatch.setenv("DETAILED_TRACING", raw)
        settings.load.cache_clear()
        assert settings.load(settings.ObservabilitySettings).detailed_tracing is expected
    monkeypatch.delenv("DETAILED_TRACING")
    settings.load.cache_clear()
    assert settings.load(settings.ObservabilitySettings).detailed_tracing is False
    monkeypatch.setenv("DETAILED_TRACING", "yes")
    settings.load.cache_clear()
    with pytest.raises(ConfigurationError, match="DETAILED_TRACING must be one of true, false"):
        settings.load(settings.ObservabilitySettings)
    settings.load.cache_clear()
