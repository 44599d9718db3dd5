"""How a client connects: target, TLS, credentials, retries, deadlines, limits."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from sensorium_client.messages import service_config

DEFAULT_TARGET = "localhost:8001"


def default_target() -> str:
    """``$SENSORIUM_SERVER`` or ``localhost:8001``."""
    return os.environ.get("SENSORIUM_SERVER", DEFAULT_TARGET)


@dataclass(frozen=True)
class Connection:
    """Settings shared by the sync and asyncio clients.

    Attributes:
        target: ``host:port``, or ``dns:///name:port`` to balance over every address
            the name resolves to (a headless Kubernetes Service).
        timeout: Default deadline of a unary call, in seconds.
        retries: Retries of a unary call that failed with UNAVAILABLE (nothing else),
            by the channel and again by the SDK (a large request, or a replica that
            went away mid-call).
        tls: Use TLS; ``root_certificates`` (PEM) overrides the system roots, and
            ``private_key`` with ``certificate_chain`` give a client certificate.
        token: Sent as ``authorization: Bearer <token>`` on every call.
        metadata: Extra metadata sent on every call.
        max_message_mb: Largest message sent or received.
        model_ttl_s: How long the description of a model's *latest* version (or of
            the only model, by empty name) is reused before it is asked again: a
            long-lived client follows a rollout to a new version within it. A
            numbered version's description never changes and is kept.
    """

    target: str = field(default_factory=default_target)
    timeout: float = 30.0
    retries: int = 3
    tls: bool = False
    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    token: str | None = None
    metadata: Sequence[tuple[str, str]] = ()
    max_message_mb: int = 128
    model_ttl_s: float = 30.0

    def options(self) -> list[tuple[str, object]]:
        """Channel arguments."""
        size = self.max_message_mb * 1024 * 1024
        return [
            ("grpc.max_receive_message_length", size),
            ("grpc.max_send_message_length", size),
            ("grpc.enable_retries", 1),
            # Keep a whole request for a retry (gRPC's default, 256 KiB, holds about 100
            # frames): a clip refused by a draining replica is retried on another.
            ("grpc.per_rpc_retry_buffer_size", size),
            ("grpc.service_config", service_config(self.retries)),
        ]

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or None for a plaintext channel."""
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(
            self.root_certificates, self.private_key, self.certificate_chain
        )

    def call_metadata(self, extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        """Metadata of one call: the token, the client's metadata, then ``extra``."""
        metadata = list(self.metadata) + list(extra)
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        return metadata

    def channel(self) -> grpc.Channel:
        """A synchronous channel."""
        credentials = self.credentials()
        if credentials is None:
            return grpc.insecure_channel(self.target, options=self.options())
        return grpc.secure_channel(self.target, credentials, options=self.options())

    def aio_channel(self) -> grpc.aio.Channel:
        """An asyncio channel."""
        credentials = self.credentials()
        if credentials is None:
            return grpc.aio.insecure_channel(self.target, options=self.options())
        return grpc.aio.secure_channel(self.target, credentials, options=self.options())
