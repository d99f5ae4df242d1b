"""`python -m bench` (make bench): every benchmark module, one table.

Each module in MODULES has `run() -> list[dict]`, rows of {benchmark, metric,
value, unit}. Add a module by adding its name here. Benchmarks print
figures; they never assert timings (DESIGN.md section 7).
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any

MODULES = ["bench.imports", "bench.metering", "bench.webhooks", "bench.eventbridge", "bench.billing", "bench.mcp",
           "bench.reconciliation", "bench.renewals"]


def _table(rows: list[dict[str, Any]]) -> str:
    headers = ("benchmark", "metric", "value", "unit")
    cells = [[str(r.get(h, "")) for h in headers] for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    for c in cells:
        out.append("  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1]), c[2].rjust(widths[2]),
                              c[3].ljust(widths[3])]))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """Run every module (or those named on the command line, e.g. `metering`)."""
    wanted = [m if m.startswith("bench.") else f"bench.{m}" for m in argv] or MODULES
    rows: list[dict[str, Any]] = []
    for name in wanted:
        started = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(importlib.import_module(name).run())
        print(f"  {name} took {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
