"""The session's log guard can fail: it finds each kind of leak in a log."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import forbidden_log_fragments, scan_function_log


@pytest.mark.parametrize("leak", forbidden_log_fragments())
def test_scan_finds_each_forbidden_fragment(tmp_path: Path, leak: str) -> None:
    log = tmp_path / "f.log"
    log.write_text('{"level":"INFO","message":"ok"}\n' + f'{{"level":"ERROR","message":"x {leak} y"}}\n')
    assert len(scan_function_log(log)) == 1


def test_scan_passes_clean_logs(tmp_path: Path) -> None:
    log = tmp_path / "f.log"
    log.write_text('{"level":"INFO","message":"customer created","customer_id":"cust_1"}\n')
    assert scan_function_log(log) == []
