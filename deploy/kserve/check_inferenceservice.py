"""Validate the KServe InferenceService offline.

    python deploy/kserve/check_inferenceservice.py deploy/kserve/inferenceservice.yaml OUT.yaml

KServe's CRD schema is not available offline, so: the InferenceService's own fields
are checked here, and its predictor's pod fields (containers, volumes, security
context, grace period) are written out as a Pod to ``OUT.yaml`` for
kubernetes-validate to check against the Kubernetes schemas.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

POD_FIELDS = ("containers", "volumes", "securityContext", "terminationGracePeriodSeconds")


def _serving_rules(isvc: dict, docs: list[dict]) -> list[str]:  # type: ignore[type-arg]
    """Drain timing, autoscaling fields, memory, and a PodDisruptionBudget for the pods."""
    problems = []
    predictor = isvc.get("spec", {}).get("predictor", {})
    annotations = isvc.get("metadata", {}).get("annotations", {})
    if "serving.kserve.io/metric" in annotations or "scaleMetric" not in predictor:
        problems.append("autoscaling by annotations; KServe documents scaleMetric/scaleTarget")
    container = (predictor.get("containers") or [{}])[0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    missing = [k for k in ("SENSORIUM_DRAIN_DELAY_S", "SENSORIUM_DRAIN_GRACE_S") if k not in env]
    if missing:
        problems.append(f"no drain settings {missing}")
    else:
        pre_stop = (
            container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        )
        needed = (
            pre_stop + float(env["SENSORIUM_DRAIN_DELAY_S"]) + float(env["SENSORIUM_DRAIN_GRACE_S"])
        )
        if predictor.get("terminationGracePeriodSeconds", 30) <= needed:
            problems.append(
                f"terminationGracePeriodSeconds <= preStop + drain delay + grace ({needed:g})"
            )
    if not env.get("SENSORIUM_CLIP_CHUNK_FRAMES"):
        problems.append("no clip chunking: two concurrent whole clips outgrow the memory limit")
    name = isvc.get("metadata", {}).get("name")
    pdbs = [
        d
        for d in docs
        if d.get("kind") == "PodDisruptionBudget"
        and d["spec"]["selector"].get("matchLabels", {}).get("serving.kserve.io/inferenceservice")
        == name
    ]
    if not pdbs:
        problems.append("no PodDisruptionBudget selecting the predictor pods")
    return problems


def main(source: str, pod_out: str) -> int:
    """Check the InferenceService; write its pod part; 1 on any problem."""
    docs = list(yaml.safe_load_all(Path(source).read_text()))
    isvc = next((d for d in docs if d.get("kind") == "InferenceService"), {})
    problems = _serving_rules(isvc, docs)
    if (isvc.get("apiVersion"), isvc.get("kind")) != (
        "serving.kserve.io/v1beta1",
        "InferenceService",
    ):
        problems.append("not a serving.kserve.io/v1beta1 InferenceService")
    predictor = isvc.get("spec", {}).get("predictor", {})
    containers = predictor.get("containers", [])
    if [c.get("name") for c in containers] != ["kserve-container"]:
        problems.append("a custom predictor needs exactly one container named kserve-container")
    ports = {p.get("name"): p.get("containerPort") for c in containers for p in c.get("ports", [])}
    if ports.get("h2c") != 8001:
        problems.append("the gRPC port must be named h2c (KServe's gRPC routing) and be 8001")
    if not 1 <= predictor.get("minReplicas", 1) <= predictor.get("maxReplicas", 1):
        problems.append("minReplicas must be between 1 and maxReplicas")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": isvc["metadata"]["name"]},
        "spec": {k: predictor[k] for k in POD_FIELDS if k in predictor},
    }
    Path(pod_out).write_text(yaml.safe_dump(pod))
    print("\n".join(problems) or f"{source}: InferenceService fields pass; pod part in {pod_out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
