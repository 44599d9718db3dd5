"""torch -> ONNX export (whole-clip and streaming step graphs) into a model repository.

Bring your own model: :func:`export_model` (one mouse) and :func:`export_mice` export any
PyTorch module that maps raw inputs to responses; ``sensorium-export onnx`` imports
ONNX graphs you already have. Both check what they are told before writing.
"""

from sensorium_export.custom import MouseModule, export_mice, export_model
from sensorium_export.graphs import ExportError
from sensorium_export.properties import PropertyError

__all__ = ["ExportError", "MouseModule", "PropertyError", "export_mice", "export_model"]
