"""The client side of sensorium-serve: the SDK, the ``client`` CLI and offline scoring.

Installs with no extras (grpcio, protobuf, numpy, pyarrow) and never imports torch
or onnxruntime, so a rig can install it alone.
"""

from sensorium_client.aio import AsyncClient, AsyncStreamSession
from sensorium_client.errors import (
    AuthenticationError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    SensoriumError,
    ServerError,
    UnavailableError,
)
from sensorium_client.messages import ModelInfo, MouseInfo, ServerTiming, StreamInfo
from sensorium_client.sdk import Client, StreamSession

__version__ = "0.1.0"
__all__ = [
    "AsyncClient",
    "AsyncStreamSession",
    "AuthenticationError",
    "Client",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "ModelInfo",
    "MouseInfo",
    "NotFoundError",
    "ResourceExhaustedError",
    "SensoriumError",
    "ServerError",
    "ServerTiming",
    "StreamInfo",
    "StreamSession",
    "UnavailableError",
    "__version__",
]
