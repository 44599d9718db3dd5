"""The embedded default model repository (``sensorium/1``), shipped inside the package.

``sensorium-server`` serves it when no ``--model-repository`` is given, from any
folder: :func:`repository` is its path. In a source checkout it is ``models/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def repository() -> Path:
    """The folder holding the embedded model repository."""
    return Path(str(resources.files(__name__)))
