"""Keep in a function's pins only what the common layer does not hold
(`make lock`): the function's zip carries those, the layer the rest."""

import re
import sys
from pathlib import Path

NAME = re.compile(r"^([A-Za-z0-9_.-]+)==")


def names(path: Path) -> set[str]:
    return {m.group(1).lower().replace("_", "-") for line in path.read_text().splitlines() if (m := NAME.match(line))}


def main(function_pins: str, layer_pins: str) -> None:
    path = Path(function_pins)
    layer = names(Path(layer_pins))
    kept = [line for line in path.read_text().splitlines()
            if not ((m := NAME.match(line)) and m.group(1).lower().replace("_", "-") in layer)]
    path.write_text("\n".join(kept) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
