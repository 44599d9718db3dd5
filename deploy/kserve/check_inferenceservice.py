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


def main(source: str, pod_out: str) -> int:
    """Check the InferenceService; write its pod part; 1 on any problem."""
    isvc = yaml.safe_load(Path(source).read_text())
    problems = []
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
