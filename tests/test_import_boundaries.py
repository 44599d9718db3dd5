"""The client never loads torch or onnxruntime; the server never loads torch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module({package!r})
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})))
"""


def loaded_forbidden(package: str, forbidden: set[str]) -> list[str]:
    code = PROBE.format(package=package, forbidden=sorted(forbidden))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("sensorium_client", {"torch", "onnxruntime"}),
        ("sensorium_api", {"torch", "onnxruntime"}),
        ("sensorium_data", {"torch", "onnxruntime"}),
        ("sensorium_server", {"torch"}),
    ],
)
def test_package_does_not_load(package: str, forbidden: set[str]) -> None:
    installed = {name for name in forbidden if importlib.util.find_spec(name) is not None}
    if not installed:
        pytest.skip(f"none of {sorted(forbidden)} installed: the check would be vacuous")
    assert loaded_forbidden(package, forbidden) == []


def test_probe_detects_a_forbidden_import() -> None:
    """The probe itself works: a package that imports numpy is caught."""
    assert loaded_forbidden("sensorium_data", {"numpy"}) != []
