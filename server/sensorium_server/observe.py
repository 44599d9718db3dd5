"""Counting, timing and error mapping of one RPC, shared by every servicer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from sensorium_server.metrics import Metrics
from sensorium_server.status import status_of

UNREACHABLE = "unreachable: the call either returned or was aborted"


@dataclass
class Call:
    """What a handler learns while it runs: the model it served, its final code."""

    rpc: str
    model: str
    code: str = "OK"


@contextlib.asynccontextmanager
async def observe(
    metrics: Metrics,
    context: grpc.aio.ServicerContext,
    rpc: str,
    model: str,
    unary: bool = True,
) -> AsyncIterator[Call]:
    """Count the call, time it, and turn a raised error into the call's status."""
    call, started, failure = Call(rpc, model), time.perf_counter(), None
    try:
        yield call
    except asyncio.CancelledError:
        call.code = "CANCELLED"
        raise
    except grpc.aio.AbortError:  # the gate aborted a malformed request of a stream
        call.code = _code_name(context)
        raise
    except Exception as err:  # every error leaves through status_of
        code, message = status_of(err, rpc)
        call.code, failure = code.name, (code, message)
    finally:
        metrics.count(rpc, call.model, call.code)
        if unary:
            metrics.latency.labels(rpc, metrics.model_label(call.model)).observe(
                time.perf_counter() - started
            )
    if failure is not None:
        await context.abort(*failure)


def _code_name(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
