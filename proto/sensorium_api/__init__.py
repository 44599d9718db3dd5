"""The gRPC API contract of sensorium-serve (package ``sensorium.v1``).

The generated stubs live in :mod:`sensorium_api.v1`; :mod:`sensorium_api.tensors`
converts between numpy arrays and the wire's ``Tensor`` message.
"""

from sensorium_api.v1 import predictor_pb2, predictor_pb2_grpc

__all__ = ["predictor_pb2", "predictor_pb2_grpc"]
