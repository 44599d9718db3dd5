"""The client side of sensorium-serve: the SDK, the ``client`` CLI and offline scoring.

Installs with no extras (grpcio, protobuf, numpy, pyarrow) and never imports torch
or onnxruntime, so a rig can install it alone.
"""

__version__ = "0.1.0"
