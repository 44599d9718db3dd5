"""One typed settings object for the server, from flags and ``SENSORIUM_*`` env vars.

Every flag ``--some-name`` has the env var ``SENSORIUM_SOME_NAME``; a flag given on
the command line wins over the env var, which wins over the default. Nothing is
parsed at import time.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path


def default_repository() -> Path:
    """The embedded default model's repository.

    ``models/`` of a source checkout, else the copy installed with the package
    (``sensorium_models``), else ``./models``.
    """
    checkout = Path(__file__).resolve().parents[2] / "models"
    if checkout.is_dir():
        return checkout
    try:
        from sensorium_models import repository
    except ImportError:  # an install without the embedded model
        return Path("models")
    return repository()


@dataclass(frozen=True)
class Settings:
    """Everything the server can be told."""

    model_repository: Path = Path("models")
    host: str = "[::]"
    port: int = 8001
    metrics_port: int = 8002  # -1: no metrics endpoint
    http_port: int = 8000  # the KServe v2 REST API (Triton's port); -1: none
    versions: str = "latest:1"  # "all", "latest:N" or "specific:1,3"
    # Triton's model control: "none" (read once), "poll" (every repository_poll_s),
    # "explicit" (RepositoryModelLoad/Unload); "" : poll when repository_poll_s > 0.
    model_control: str = ""
    repository_poll_s: float = 0.0  # poll interval of --model-control poll (0: off)
    providers: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    workers: int = 2  # inference threads of the step lane (stream steps)
    clip_workers: int = 1  # inference threads of the clip lane (Predict clips and chunks)
    # OS priority of the clip lane's threads and of ONNX Runtime's threads for clips:
    # "idle" (SCHED_IDLE: clips only use CPU that stream steps leave), "low" (nice 19)
    # or "normal" (the same as steps).
    clip_priority: str = "idle"
    intra_op_threads: int = 1  # ONNX Runtime threads per streaming step (small, latency-bound)
    # Step streams with a version's ring graph where it has one (state updated in place).
    ring: bool = True
    clip_threads: int = 0  # ONNX Runtime threads per whole-clip inference (0: one per core)
    # Clips longer than this run as chunks of the step graph (exact): for the default
    # model, 1.4 instead of 3.7 GB peak per 300-frame clip and no slower (0: always
    # the whole-clip graph).
    clip_chunk_frames: int = 100
    max_queue: int = 64  # inferences waiting or running before RESOURCE_EXHAUSTED
    max_sessions: int = 256  # open stream sessions
    max_clip_frames: int = 3000  # frames of one Predict call
    max_batch_size: int = 8  # clips of one OIP ModelInfer with a leading batch axis
    max_step_frames: int = 300  # frames of one stream message
    max_message_mb: int = 128  # gRPC receive and send limit (3,000 frames x 8,000 neurons)
    # A stream silent this long, or whose replies go unread this long, is closed; a
    # stream whose connection broke is kept this long for a resume.
    idle_timeout_s: float = 60.0
    drain_delay_s: float = 1.0  # SIGTERM: NOT_SERVING this long before refusing calls
    drain_grace_s: float = 20.0  # SIGTERM: then open calls get this long to finish
    # Connections are recycled so load rebalances: new calls move to new connections,
    # open streams run on (0: never recycle).
    max_connection_age_s: float = 300.0
    tls_cert: str = ""  # PEM certificate chain: serve TLS instead of plaintext
    tls_key: str = ""  # PEM private key of tls_cert
    tls_client_ca: str = ""  # PEM CA: require client certificates signed by it (mTLS)
    # NAME:SHA256_HEX lines: calls must carry "authorization: Bearer <token>" ("": open)
    auth_tokens_file: str = ""
    reflection: bool = True  # gRPC server reflection (needs a token when tokens are set)
    metrics_host: str = ""  # where /metrics listens ("": the gRPC host); TLS like gRPC
    # Freed C heap memory is handed back to the OS this often (0: never; glibc only).
    heap_trim_s: float = 30.0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        """Check values that would otherwise fail later and obscurely."""
        for name in (
            "workers",
            "clip_workers",
            "intra_op_threads",
            "max_queue",
            "max_sessions",
            "max_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name, zero in (("clip_chunk_frames", "never"), ("clip_threads", "one per core")):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 ({zero}) or more, got {getattr(self, name)}")
        if self.clip_priority not in ("idle", "low", "normal"):
            raise ValueError(
                f"clip_priority must be idle, low or normal, got {self.clip_priority!r}"
            )
        if self.providers not in ("auto", "cpu", "cuda"):
            raise ValueError(f"providers must be auto, cpu or cuda, got {self.providers!r}")
        parse_version_policy(self.versions)
        if self.model_control not in ("", "none", "poll", "explicit"):
            raise ValueError(
                f"model_control must be none, poll or explicit, got {self.model_control!r}"
            )
        if self.repository_poll_s < 0:
            raise ValueError(
                f"repository_poll_s must be 0 (off) or more, got {self.repository_poll_s}"
            )
        if self.model_control == "poll" and self.repository_poll_s <= 0:
            raise ValueError("model_control poll needs repository_poll_s > 0")
        if self.model_control in ("none", "explicit") and self.repository_poll_s > 0:
            raise ValueError(
                f"repository_poll_s {self.repository_poll_s} polls, but model_control is "
                f"{self.model_control}: use poll, or leave repository_poll_s at 0"
            )
        if self.heap_trim_s < 0:
            raise ValueError(f"heap_trim_s must be 0 (never) or more, got {self.heap_trim_s}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("tls_client_ca needs tls_cert and tls_key")

    @property
    def effective_model_control(self) -> str:
        """``none``, ``poll`` or ``explicit``: ``model_control``, else poll when polling."""
        return self.model_control or ("poll" if self.repository_poll_s > 0 else "none")


# What ``sensorium-server --help`` says of each flag.
HELP = {
    "model_repository": "model repository: <model>/<version>/manifest.json and graphs",
    "host": "address the gRPC port binds",
    "port": "gRPC port (0: any free port)",
    "metrics_port": "Prometheus /metrics port (-1: none)",
    "versions": "versions served per model: all, latest:N or specific:1,3",
    "model_control": "none (read the repository once), poll (every --repository-poll-s) or "
    "explicit (RepositoryModelLoad/Unload); default: poll when --repository-poll-s > 0",
    "repository_poll_s": "seconds between repository polls: new versions load while the "
    "old serve, removed ones retire (0: off)",
    "providers": "ONNX Runtime providers: auto (CUDA when present), cpu or cuda",
    "workers": "inference threads for stream steps",
    "clip_workers": "inference threads for Predict clips and clip chunks",
    "clip_priority": "OS priority of clip threads: idle (SCHED_IDLE), low (nice 19), normal",
    "intra_op_threads": "ONNX Runtime threads per stream step",
    "ring": "step streams with a version's ring graph where it has one (state written in "
    "place; --no-ring: the step graph)",
    "clip_threads": "ONNX Runtime threads per clip (0: one per core)",
    "clip_chunk_frames": "clips longer than this run through the step graph in chunks (0: never)",
    "max_queue": "inferences waiting or running per lane before RESOURCE_EXHAUSTED",
    "max_sessions": "open stream sessions at most",
    "max_clip_frames": "frames of one Predict call at most",
    "http_port": "port of the KServe v2 REST API (0: any free port; -1: no REST)",
    "max_batch_size": "clips of equal length in one OIP ModelInfer (leading batch axis) at most",
    "max_step_frames": "frames of one stream message at most",
    "max_message_mb": "largest gRPC message received or sent, MB",
    "idle_timeout_s": "a stream silent (or its replies unread) this long is closed; a broken "
    "one is kept this long for a resume",
    "drain_delay_s": "on SIGTERM: NOT_SERVING this long before new calls are refused",
    "drain_grace_s": "on SIGTERM: then open calls get this long to finish",
    "max_connection_age_s": "recycle connections after this long so load rebalances; open "
    "streams run on (0: never)",
    "tls_cert": "PEM certificate chain: serve TLS (metrics too)",
    "tls_key": "PEM private key of --tls-cert",
    "tls_client_ca": "PEM CA: require client certificates signed by it (mutual TLS)",
    "auth_tokens_file": "NAME:SHA256_HEX lines: require 'authorization: Bearer <token>' "
    "(health stays open)",
    "reflection": "gRPC server reflection",
    "metrics_host": "address /metrics binds (default: --host)",
    "heap_trim_s": "hand freed C heap memory back to the OS every this many seconds, so "
    "resident memory does not creep over hours (0: never)",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
}


def parse_version_policy(text: str) -> tuple[str, list[int]]:
    """``"all"``, ``"latest:N"`` or ``"specific:1,3"`` -> (kind, numbers)."""
    kind, _, rest = text.partition(":")
    try:
        numbers = [int(n) for n in rest.split(",") if n.strip()]
    except ValueError:
        numbers = []
    if kind == "all" and not rest:
        return kind, []
    if kind in ("latest", "specific") and numbers and min(numbers) >= 1:
        return kind, numbers
    raise ValueError(f"versions policy {text!r}: expected 'all', 'latest:N' or 'specific:1,2'")


def _boolean(text: str) -> bool:
    """An env var's truth value: 1/true/yes/on or 0/false/no/off."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build :class:`Settings` from command-line flags and the environment."""
    environ = os.environ if environ is None else environ
    defaults = Settings(model_repository=default_repository())
    parser = argparse.ArgumentParser(
        prog="sensorium-server",
        description="Serve Sensorium models over gRPC (sensorium.v1.Predictor).",
        epilog="Every flag can also be set by its env var, e.g. SENSORIUM_PORT=9001.",
    )
    for spec in fields(Settings):
        value = getattr(defaults, spec.name)
        kind = type(value)
        env = "SENSORIUM_" + spec.name.upper()
        if env in environ:
            try:
                value = _boolean(environ[env]) if kind is bool else kind(environ[env])
            except ValueError:
                parser.error(f"{env}={environ[env]!r} is not a valid {kind.__name__}")
        if kind is bool:
            parser.add_argument(
                _flag(spec.name),
                action=argparse.BooleanOptionalAction,
                default=value,
                help=f"{HELP.get(spec.name, '')} (env {env}=1/0; default: %(default)s)",
            )
            continue
        parser.add_argument(
            _flag(spec.name),
            type=kind,
            default=value,
            help=f"{HELP.get(spec.name, '')} (env {env}; default: %(default)s)",
        )
    args = parser.parse_args(argv)
    try:
        return Settings(**vars(args))
    except ValueError as err:
        parser.error(str(err))
