"""What a client stream remembers so that it survives a broken connection or a drain.

Shared by the sync and asyncio SDKs (they do the I/O; this decides). A stream whose
connection breaks (UNAVAILABLE) reattaches to its session on the same replica
(``resume``); a stream told that its replica drains continues from the state it was
handed (``snapshot``), on whichever replica takes it. Either way the request that
was not answered is sent again: frames carry their ``frame_index``, so frames the
server had already stepped are answered from its replay buffer, once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_client import messages
from sensorium_client.errors import UnavailableError
from sensorium_client.messages import ServerTiming, StreamInfo

# Seconds a client keeps trying to reattach or move a stream, at most (the server's
# resume window caps it too).
RECOVERY_S = 10.0
# An open, resume or handoff waits at least this long for ``opened`` (a loaded server
# can take seconds), however little of the recovery deadline is left.
OPEN_FLOOR_S = 5.0


class StreamLostError(UnavailableError):
    """A stream's connection broke and its session could not be reattached in time."""


@dataclass
class Recovery:
    """The session's identity and position, and how often it had to recover."""

    model: str
    version: int
    mouse: str
    dtype: str | np.dtype
    recovery_s: float = RECOVERY_S
    info: StreamInfo | None = None
    next_frame: int = 0
    trial_count: int = 1
    resumes: int = 0
    handoffs: int = 0
    trial_before: int = 1
    history: list[str] = field(default_factory=list)
    timing: ServerTiming | None = None  # of the last step answered

    def open_request(self) -> pb.StreamPredictRequest:
        """The first message of a new session."""
        return messages.open_request(self.model, self.version, self.mouse, self.dtype)

    def resume_request(self) -> pb.StreamPredictRequest:
        """Reattach to the session after its connection broke."""
        assert self.info is not None
        return messages.open_request(
            self.info.model, self.info.version, self.info.mouse, self.dtype, self.info.session_id
        )

    def handoff_request(self, snapshot: pb.StateSnapshot) -> pb.StreamPredictRequest:
        """Continue the handed-over state on another replica."""
        return messages.open_request(
            snapshot.model, snapshot.version, snapshot.mouse, self.dtype, snapshot=snapshot
        )

    def opened(self, reply: pb.StreamPredictResponse) -> StreamInfo:
        """Take the position the server reports."""
        self.info = messages.stream_info(reply)
        self.next_frame, self.trial_count = self.info.next_frame, self.info.trial_count
        if self.info.origin != "new":
            self.history.append(f"{self.info.origin} on replica {self.info.replica_id}")
        return self.info

    def frames(
        self, arrays: tuple[np.ndarray, np.ndarray, np.ndarray], frame_index: int | None
    ) -> pb.StreamPredictRequest:
        """A frames message that always says where it is in the trial."""
        return messages.frames_request(
            arrays, self.next_frame if frame_index is None else frame_index
        )

    def answered(self, reply: pb.StreamPredictResponse) -> None:
        """Follow the trial: frames move it on, a reset starts a new one."""
        kind = reply.WhichOneof("kind")
        if kind == "responses":
            self.timing = messages.server_timing(reply.responses)
            # A model that answers late (window streaming) says where the trial is.
            sent = reply.responses.frame_index + reply.responses.responses.shape[0]
            self.next_frame = reply.responses.next_frame or sent
        elif kind == "reset":
            self.next_frame, self.trial_count = 0, reply.reset.trial_count

    def again(self, request: pb.StreamPredictRequest) -> pb.StreamPredictResponse | None:
        """After recovering: the reply a pending request already has, or None to send it."""
        if request.WhichOneof("kind") == "reset" and self.trial_count > self.trial_before:
            return pb.StreamPredictResponse(reset=pb.StreamResetDone(trial_count=self.trial_count))
        return None

    def sending(self) -> None:
        """Remember where the trial was when a request left."""
        self.trial_before = self.trial_count

    def deadline(self) -> float:
        """Monotonic time after which recovering gives up."""
        window = self.info.resume_window_s if self.info and self.info.resume_window_s else 0
        return time.monotonic() + (min(self.recovery_s, window) if window else self.recovery_s)

    def lost(self, error: BaseException | None) -> StreamLostError:
        """The error raised when recovering failed."""
        session = self.info.session_id if self.info else "?"
        return StreamLostError(
            f"UNAVAILABLE: stream session {session} could not be reattached or moved within "
            f"{self.recovery_s:g} s; its state is lost (last error: {error})",
            grpc.StatusCode.UNAVAILABLE,
        )


def recoverable(error: grpc.RpcError, first: pb.StreamPredictRequest | None = None) -> bool:
    """A broken connection, or a replica that cannot take the stream now.

    A handoff (``first`` opens from a snapshot) also tries on past a replica that
    serves another model version (FAILED_PRECONDITION): during a rollout another
    replica may still serve the snapshot's version.
    """
    code = error.code()
    if first is not None and first.open.HasField("snapshot"):
        return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION)
    return bool(code == grpc.StatusCode.UNAVAILABLE)


def backoff(attempt: int) -> float:
    """Seconds before the next recovery attempt."""
    return float(min(0.02 * 2**attempt, 0.5))


def recovery_pause(attempt: int) -> float:
    """Seconds between a stream's failed recovery attempt ``attempt`` (0 on) and the next.

    None after the first: a handoff that a load-balanced target sends back to the
    draining replica is refused within a millisecond or two, and the next call goes
    to another replica (20 ms of waiting there was half the gap a rig saw at a
    handoff). Then :func:`backoff`.
    """
    return 0.0 if attempt == 0 else backoff(attempt - 1)
