"""Triton's extensions that tools ask for: ModelConfig, ModelStatistics, RepositoryIndex.

perf_analyzer reads a model's configuration before anything else (inputs, outputs,
``max_batch_size``, whether it takes sequences); dashboards and scripts read the
statistics and the repository index. What these say is derived from what is served
(see :mod:`sensorium_server.oip_convert` for the OIP model names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sensorium_api.inference import grpc_predict_v2_pb2 as oip
from sensorium_server.oip_convert import OUTPUT, oip_names
from sensorium_server.repository import list_versions
from sensorium_server.runtime import LoadedModel, ModelStore, MouseRuntime
from sensorium_server.settings import Settings, parse_version_policy
from sensorium_server.statistics import Duration, Statistics, VersionStatistics

if TYPE_CHECKING:
    from sensorium_server.dataplane import DataPlane

Control = oip.ModelSequenceBatching.Control


def version_policy(policy: str) -> Any:
    """``--versions`` as Triton's ``ModelVersionPolicy``."""
    kind, numbers = parse_version_policy(policy)
    if kind == "latest":
        return oip.ModelVersionPolicy(latest=oip.ModelVersionPolicy.Latest(num_versions=numbers[0]))
    if kind == "specific":
        return oip.ModelVersionPolicy(specific=oip.ModelVersionPolicy.Specific(versions=numbers))
    return oip.ModelVersionPolicy(all=oip.ModelVersionPolicy.All())


def model_config(name: str, model: LoadedModel, mouse: MouseRuntime, settings: Settings) -> Any:
    """``ModelConfig`` of one OIP model (one mouse of a model version).

    Inputs are time first after the batch axis (up to ``--max-batch-size`` clips of
    equal length; requests without one are taken too); ``video`` is declared UINT8,
    the natural and 4x smaller type (FP32 in 0..255 is taken too). Sequences are
    Triton's sequence parameters (``sequence_id``, ``sequence_start``,
    ``sequence_end``); a sequence idle for ``--idle-timeout-s`` ends.
    """
    h, w = model.frame_shape
    kind = oip.ModelInstanceGroup.KIND_GPU
    if mouse.stepper is None or getattr(mouse.stepper, "device", "cpu") == "cpu":
        kind = oip.ModelInstanceGroup.KIND_CPU
    config = oip.ModelConfig(
        name=name,
        platform="onnxruntime_onnx",
        backend="onnxruntime",
        version_policy=version_policy(settings.versions),
        max_batch_size=settings.max_batch_size,
        input=[
            oip.ModelInput(name="video", data_type=oip.TYPE_UINT8, dims=[-1, h, w]),
            oip.ModelInput(name="behavior", data_type=oip.TYPE_FP32, dims=[-1, 2]),
            oip.ModelInput(name="pupil_center", data_type=oip.TYPE_FP32, dims=[-1, 2]),
        ],
        output=[
            oip.ModelOutput(name=OUTPUT, data_type=oip.TYPE_FP32, dims=[-1, mouse.neuron_count])
        ],
        instance_group=[oip.ModelInstanceGroup(name=name, count=settings.workers, kind=kind)],
    )
    if mouse.stepper is not None:  # it streams: sequences
        config.sequence_batching.CopyFrom(
            oip.ModelSequenceBatching(
                max_sequence_idle_microseconds=int(settings.idle_timeout_s * 1e6),
                control_input=[
                    _control("START", Control.CONTROL_SEQUENCE_START),
                    _control("END", Control.CONTROL_SEQUENCE_END),
                    oip.ModelSequenceBatching.ControlInput(
                        name="CORRID",
                        control=[
                            Control(kind=Control.CONTROL_SEQUENCE_CORRID, data_type=oip.TYPE_UINT64)
                        ],
                    ),
                ],
                direct=oip.ModelSequenceBatching.StrategyDirect(),
            )
        )
    return config


def _control(name: str, kind: Any) -> Any:
    return oip.ModelSequenceBatching.ControlInput(
        name=name, control=[Control(kind=kind, int32_false_true=[0, 1])]
    )


def _duration(value: Duration) -> Any:
    return oip.StatisticDuration(count=value.count, ns=value.ns)


def _entry(name: str, version: int, stats: VersionStatistics) -> Any:
    return oip.ModelStatistics(
        name=name,
        version=str(version),
        last_inference=stats.last_inference_ms,
        inference_count=stats.inferences,
        execution_count=stats.executions,
        inference_stats=oip.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_infer=_duration(stats.compute),
        ),
        batch_stats=[
            oip.InferBatchStatistics(batch_size=size, compute_infer=_duration(value))
            for size, value in sorted(stats.by_batch.items())
        ],
    )


def statistics(store: ModelStore, counters: Statistics, name: str, version: int) -> Any:
    """``ModelStatisticsResponse``: every served version (``name`` empty) or one OIP model's.

    Counters are per model version, so every OIP name of a model (one per mouse)
    reports the model's; with ``name`` empty each model version is listed once.
    """
    if name:
        model_name = oip_names(store)[name][0]
        chosen = [(name, v) for n, v in sorted(store.models) if n == model_name]
        if version:
            chosen = [(name, version)]
        keys = [(label, model_name, v) for label, v in chosen]
    else:
        keys = [(n, n, v) for n, v in sorted(store.models)]
    return oip.ModelStatisticsResponse(
        model_stats=[
            _entry(label, number, counters.versions.get((model, number), VersionStatistics()))
            for label, model, number in keys
        ]
    )


def repository_index(plane: DataPlane, ready_only: bool) -> Any:
    """``RepositoryIndexResponse``: every version folder, served (READY) or not, and why."""
    store, settings = plane.store, plane.settings
    names = oip_names(store)
    models = []
    index = oip.RepositoryIndexResponse.ModelIndex
    for name, (model, _) in sorted(names.items()):
        for served, number in sorted(store.models):
            if served == model:
                models.append(index(name=name, version=str(number), state="READY"))
    if not ready_only:
        unloaded = plane.live.unloaded if plane.live is not None else set()
        served_paths = {str(m.version.path) for m in store.models.values()}
        for path in list_versions(settings.model_repository):
            if str(path) in served_paths:
                continue
            reason = f"not selected by --versions {settings.versions}"
            if path.parent.name in unloaded:
                reason = "unloaded (RepositoryModelUnload)"
            reason = store.failures.get(str(path), reason)
            models.append(
                index(name=path.parent.name, version=path.name, state="UNAVAILABLE", reason=reason)
            )
    return oip.RepositoryIndexResponse(models=models)
