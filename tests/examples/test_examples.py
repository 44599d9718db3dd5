"""The three worked examples run as a user runs them: export, serve, check against torch."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from sensorium_export import PropertyError, export_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("script", "said"),
    [
        ("neuralpredictors_style.py", "window streams equal the torch module"),
        ("dwiseneuro_style.py", "answers 7 frames late, exactly"),
        ("causal_transformer.py", "the window stream (9 frames) equal the torch module"),
    ],
)
def test_example_serves_its_module_exactly(script: str, said: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--repository", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert said in result.stdout
    # Every comparison printed is within the tolerance (the script exits 1 otherwise).
    differences = [
        float(line.split()[-1])
        for line in result.stdout.splitlines()
        if "relative difference" in line
    ]
    assert differences
    assert max(differences) < 1e-4
    assert any((tmp_path).glob("*/1/manifest.json"))


@pytest.fixture
def transformer() -> Iterator[ModuleType]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield importlib.import_module("causal_transformer")
    finally:
        sys.path.remove(str(EXAMPLES))


def test_attention_one_frame_wider_than_declared_is_refused(
    transformer: ModuleType, tmp_path: Path
) -> None:
    module = transformer.CausalTransformer().eval()
    window = transformer.WINDOW
    with pytest.raises(PropertyError, match=f"declare window_frames >= {window}"):
        export_model(
            module,
            tmp_path,
            "t",
            "m",
            list(range(transformer.NEURONS)),
            causal=True,
            window_frames=window - 1,
        )
    assert not (tmp_path / "t" / "1").exists()
