"""The local stack stops on Ctrl-C or SIGTERM whichever thread the kernel hands the signal to."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A process shaped like `python -m devstack run`: busy threads besides the
# main one, which waits for the stop signal.
WAITER = """
import signal, sys, threading, time
from devstack.signals import StopSignal

stop = StopSignal()
for _ in range(4):
    threading.Thread(target=lambda: [time.sleep(0.01) for _ in iter(int, 1)], daemon=True).start()
if sys.argv[1] == "from-a-thread":
    # The kernel may pick any thread for a process-directed signal; make it
    # one the main thread is not.
    def deliver() -> None:
        time.sleep(0.2)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    threading.Thread(target=deliver).start()
print("waiting", flush=True)
print("stopped by", signal.Signals(stop.wait()).name, flush=True)
"""


def start(mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", WAITER, mode], cwd=ROOT, stdout=subprocess.PIPE,  # noqa: S603 (our interpreter, fixed code)
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "waiting\n"
    return proc


def finish(proc: subprocess.Popen[str]) -> str:
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return out


def test_a_signal_delivered_to_another_thread_still_stops_the_wait() -> None:
    assert finish(start("from-a-thread")) == "stopped by SIGINT\n"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_the_wait(signum: signal.Signals) -> None:
    proc = start("from-outside")
    proc.send_signal(signum)
    assert finish(proc) == f"stopped by {signum.name}\n"


def test_a_signal_before_the_wait_is_kept() -> None:
    from devstack.signals import StopSignal

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop = StopSignal()
        signal.raise_signal(signal.SIGTERM)
        assert stop.wait(poll_seconds=0.01) == signal.SIGTERM
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
