"""Kubernetes feature gates for every component, as `--feature-gates` spells them.

Optional DRA features are alpha in one release and on by default a few
releases later, so what a driver can rely on depends on the release the
cluster runs. The cluster takes one map of gates and hands the same map to
every Kubernetes component, as kind's `featureGates` does: a gate the API
server enables but the scheduler does not would half-enable the feature.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Gate names are Go identifiers in UpperCamelCase (e.g. DRAConsumableCapacity).
_GATE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_BOOLEANS = {"true": True, "false": False}


class FeatureGateError(ValueError):
    """A feature gate setting is malformed."""


def parse(text: str) -> dict[str, bool]:
    """`Name=true,Other=false` (the components' own syntax) as a map; "" is no gates."""
    gates: dict[str, bool] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, separator, value = item.partition("=")
        name = name.strip()
        if not separator or value.strip().lower() not in _BOOLEANS:
            raise FeatureGateError(f"feature gate setting {item!r} is not NAME=true or NAME=false")
        if not _GATE_NAME.match(name):
            raise FeatureGateError(f"feature gate name {name!r} is not a gate name")
        if name in gates:
            raise FeatureGateError(f"feature gate {name} is set twice")
        gates[name] = _BOOLEANS[value.strip().lower()]
    return gates


def render(gates: Mapping[str, bool]) -> str:
    """The map in `--feature-gates` syntax, sorted so equal maps give equal text."""
    return ",".join(f"{name}={str(enabled).lower()}" for name, enabled in sorted(gates.items()))


def flags(gates: Mapping[str, bool]) -> list[str]:
    """The command-line flag for components configured by flags; none without gates."""
    return [f"--feature-gates={render(gates)}"] if gates else []


def config_fields(gates: Mapping[str, bool]) -> dict[str, dict[str, bool]]:
    """The `featureGates` field of a component configuration file; none without gates."""
    return {"featureGates": dict(gates)} if gates else {}
