"""Stripe object shapes the Fake builds its responses from.

shapes.json holds them, copied unchanged from the project's Stripe fixtures
(shared/stripe-fixtures/objects.json, itself taken from `openapi/fixtures3.json`
in Stripe's public OpenAPI repository, MIT licensed): data, kept in the
repository so the Fake reads nothing outside it at run time. The Fake
deep-copies one and overwrites what it knows, so every field a real response
has is present.
"""

import json
from pathlib import Path
from typing import Any, Final

SHAPES: Final[dict[str, dict[str, Any]]] = json.loads((Path(__file__).with_name("shapes.json")).read_text())
