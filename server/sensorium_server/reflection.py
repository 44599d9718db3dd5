"""Server reflection under both names clients ask: ``grpc.reflection.v1`` and ``v1alpha``.

grpcio-reflection serves only ``grpc.reflection.v1alpha.ServerReflection``; current
grpcurl and Postman ask ``grpc.reflection.v1`` first. The two protocols are the same
messages under another package (field for field), so the same servicer answers
both: its v1alpha messages are registered under the v1 method name too, and the v1
file (v1alpha's, renamed) is in the pool so that clients can describe either.
"""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as alpha_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

ALPHA = reflection.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1_PACKAGE = "grpc.reflection.v1"
V1 = f"{V1_PACKAGE}.ServerReflection"


def v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, made from the v1alpha file."""
    alpha = reflection_pb2.DESCRIPTOR
    proto = descriptor_pb2.FileDescriptorProto.FromString(alpha.serialized_pb)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = V1_PACKAGE
    old, new = f".{alpha.package}.", f".{V1_PACKAGE}."
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # messages and enums only
                field.type_name = field.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    return proto


def enable(
    server: grpc.aio.Server, services: list[str], pool: descriptor_pool.DescriptorPool
) -> None:
    """Serve reflection of ``services`` (and of itself, both versions) from ``pool``."""
    pool.Add(v1_file())
    servicer = ReflectionServicer([*services, ALPHA, V1], pool=pool)
    alpha_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    handlers = {"ServerReflectionInfo": method}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1, handlers),))
