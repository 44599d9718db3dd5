"""The server's malloc settings (glibc), in a fresh interpreter as the CLI applies them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = (
    "import json; from sensorium_server.memory import tune_malloc; print(json.dumps(tune_malloc()))"
)


def _applied(**env: str) -> dict[str, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_two_arenas_and_a_fixed_mmap_threshold_unless_the_environment_says_otherwise() -> None:
    assert _applied() == {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 1 << 20}
    assert _applied(MALLOC_ARENA_MAX="4") == {"MALLOC_MMAP_THRESHOLD_": 1 << 20}
