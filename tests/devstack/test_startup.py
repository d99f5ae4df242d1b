"""`python -m devstack run` fails at start with one clear line on bad configuration."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_devstack(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "devstack", "run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def assert_one_line_failure(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("devstack: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_devstack({"PORT": str(port)})
    assert_one_line_failure(result, f"cannot listen on 127.0.0.1:{port}")


def test_unreadable_template(tmp_path: Path) -> None:
    assert_one_line_failure(run_devstack({"TEMPLATE": str(tmp_path / "missing.yaml")}), "cannot read template")


def test_reference_to_a_missing_table(tmp_path: Path) -> None:
    text = (ROOT / "template.yaml").read_text().replace(
        "POWERTOOLS_SERVICE_NAME: api", "POWERTOOLS_SERVICE_NAME: api\n          X_TABLE: !Ref NoSuchTable")
    path = tmp_path / "template.yaml"
    path.write_text(text.replace("CodeUri: functions/", f"CodeUri: {ROOT}/functions/").replace(
        "ContentUri: layers/", f"ContentUri: {ROOT}/layers/"))
    assert_one_line_failure(run_devstack({"TEMPLATE": str(path), "PORT": "0"}), "!Ref NoSuchTable")


def test_bad_port_value() -> None:
    assert_one_line_failure(run_devstack({"PORT": "http"}), "PORT must be a port number")


# `python -m devstack run`, whose Ctrl-C lands on one of its threads other
# than the main one, as the kernel may deliver a process-directed signal:
# a helper thread signals itself once the stack says it is ready.
RUN_WITH_CTRL_C_ON_A_THREAD = """
import signal, sys, threading
from devstack.__main__ import main

ready = threading.Event()


class Watch:
    def __init__(self, out):
        self.out = out

    def write(self, text):
        self.out.write(text)
        if "Ctrl-C stops." in text:
            ready.set()
        return len(text)

    def flush(self):
        self.out.flush()


def ctrl_c_on_this_thread():
    ready.wait()
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)


sys.stdout = Watch(sys.stdout)
threading.Thread(target=ctrl_c_on_this_thread, daemon=True).start()
sys.exit(main(["run"]))
"""


@pytest.mark.parametrize("target", ["process", "thread"])
def test_ctrl_c_stops_cleanly(target: str) -> None:
    import signal
    import time

    env = {**os.environ, "PORT": "0"}
    command = ["-m", "devstack", "run"] if target == "process" else ["-c", RUN_WITH_CTRL_C_ON_A_THREAD]
    # stderr (the stack's log) to a file, stdout read through its one reader to
    # the end: "stopping..." may come in the same pipe read as "Ctrl-C stops.",
    # and communicate() would miss what readline() had already buffered.
    errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env,  # noqa: S603 (our interpreter, fixed code)
                            stdout=subprocess.PIPE, stderr=errors, text=True)
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 120
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl-C stops." in line or not line:
                break
        assert any("ready in" in line for line in lines), lines
        assert any("curl -s http://127.0.0.1:" in line for line in lines)
        if target == "process":
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        out = proc.stdout.read()
        errors.seek(0)
        err = errors.read()
        assert proc.returncode == 0, err
        assert "stopping" in out
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errors.close()


def test_ready_only_once_the_seeded_catalog_is_projected() -> None:
    """"ready" means ready: the Fake's seeded catalog has gone through its
    webhooks, so the very first GET /v1/prices lists all of it."""
    import json
    import signal
    import time
    import urllib.request

    from devstack.fake_stripe.catalog import SEED_CATALOG

    seeded = sorted(key for _name, _desc, _features, prices in SEED_CATALOG for key, _amount, _interval in prices)
    proc = subprocess.Popen([sys.executable, "-m", "devstack", "run"], cwd=ROOT,
                            env={**os.environ, "PORT": "0"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 120
        api = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.strip().startswith("API:"):
                api = line.split("API:", 1)[1].strip()
            if "Ctrl-C stops." in line or not line:
                break
        assert api.startswith("http://127.0.0.1:"), "the stack never said it was ready"
        with urllib.request.urlopen(f"{api}/prices?limit=100", timeout=10) as answer:  # noqa: S310 (local)
            prices = json.loads(answer.read())["data"]
        assert sorted(p["lookup_key"] for p in prices) == seeded
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_not_ready_while_the_seeded_catalog_is_not_processed(tmp_path: Path) -> None:
    """A stack whose webhook stream hands the seed's records over without
    applying them (its filter drops every insert) drains at once: it must not
    call that ready, but say in one line what is missing."""
    text = (ROOT / "template.yaml").read_text()
    dropped = text.replace("""- Pattern: '{"eventName": ["INSERT"]}'""", """- Pattern: '{"eventName": ["REMOVE"]}'""")
    assert dropped != text
    path = tmp_path / "template.yaml"
    path.write_text(dropped.replace("CodeUri: functions/", f"CodeUri: {ROOT}/functions/").replace(
        "ContentUri: layers/", f"ContentUri: {ROOT}/layers/"))
    result = run_devstack({"TEMPLATE": str(path), "PORT": "0", "LOCAL_READY_TIMEOUT": "3"})
    assert "ready" not in result.stdout
    assert_one_line_failure(result, "the Fake's seeded catalog was not processed within 3s: 9 of 9 webhook events")
