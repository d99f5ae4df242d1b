"""`python -m devstack run` fails at start with one clear line on bad configuration."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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
    proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env,  # noqa: S603 (our interpreter, fixed code)
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopping" in out
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
