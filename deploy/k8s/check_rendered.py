"""Checks on the rendered overlays that schemas cannot express.

    python deploy/k8s/check_rendered.py build/k8s/cpu.yaml build/k8s/gpu.yaml

Exits 1 naming every broken rule: the grace period covers preStop, drain delay and
drain grace; the probes are native gRPC probes on the gRPC port (exec probes running
sensorium-healthcheck under TLS); a shipped adapter rule is used by the HPA; the pod runs
non-root with a read-only root file system; selectors match; the gpu overlay asks
for a GPU and tolerates GPU taints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml


def _problems(path: Path) -> list[str]:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(path.read_text())}
    deployment = docs[("Deployment", "sensorium-serve")]
    pod = deployment["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == "server")
    config_name = server["envFrom"][0]["configMapRef"]["name"]
    config = docs[("ConfigMap", config_name)]["data"]
    problems = []
    if config_name == "sensorium-serve":
        problems.append(
            "the ConfigMap is not generated (no content hash): edits would not roll pods"
        )
    if "replicas" in deployment["spec"] and ("HorizontalPodAutoscaler", "sensorium-serve") in docs:
        problems.append("the Deployment sets replicas beside an HPA: every apply resets the scale")
    keys = {t.get("topologyKey") for t in pod.get("topologySpreadConstraints", [])}
    if not {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys:
        problems.append("no topology spread over nodes and zones")
    memory = server["resources"]["requests"]["memory"]
    if _mebibytes(memory) < 1.25 * 1024:
        problems.append(f"memory request {memory} is below the measured steady RSS (1.25 GiB)")
    for (kind, name), doc in docs.items():
        if kind == "PodMonitor" and not doc["metadata"].get("labels"):
            problems.append(f"PodMonitor/{name} has no labels for the operator's selector")
    needed = (
        server["lifecycle"]["preStop"]["sleep"]["seconds"]
        + float(config["SENSORIUM_DRAIN_DELAY_S"])
        + float(config["SENSORIUM_DRAIN_GRACE_S"])
    )
    if pod["terminationGracePeriodSeconds"] <= needed:
        problems.append(
            f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} "
            f"<= preStop + drain delay + drain grace ({needed:g})"
        )
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if "SENSORIUM_TLS_CERT" in config:  # native gRPC probes speak plaintext only
            if server.get(probe, {}).get("exec", {}).get("command") != ["sensorium-healthcheck"]:
                problems.append(f"{probe}: under TLS it must run sensorium-healthcheck")
        elif server.get(probe, {}).get("grpc", {}).get("port") != 8001:
            problems.append(f"{probe} is not a gRPC probe on port 8001")
    if ("ConfigMap", "sensorium-serve-adapter-rules") in docs:
        metrics = docs[("HorizontalPodAutoscaler", "sensorium-serve")]["spec"]["metrics"]
        names = [m.get("pods", {}).get("metric", {}).get("name") for m in metrics]
        if "sensorium_active_sessions" not in names:
            problems.append("adapter rules shipped but the HPA does not scale on streams")
    container_security: dict[str, Any] = server["securityContext"]
    if not pod["securityContext"].get("runAsNonRoot"):
        problems.append("pod does not set runAsNonRoot")
    if not container_security.get("readOnlyRootFilesystem"):
        problems.append("server container root file system is writable")
    if container_security.get("allowPrivilegeEscalation") is not False:
        problems.append("server container allows privilege escalation")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for kind, name in docs:
        selector = docs[(kind, name)].get("spec", {}).get("selector")
        if kind in ("Service", "PodDisruptionBudget") and selector is not None:
            wanted = selector.get("matchLabels", selector)
            if any(labels.get(k) != v for k, v in wanted.items()):
                problems.append(f"{kind}/{name} selector {wanted} does not match the pods")
    if docs[("Service", "sensorium-serve-headless")]["spec"].get("clusterIP") != "None":
        problems.append("the headless Service has a cluster IP")
    if "gpu" in path.name:
        if server["resources"]["limits"].get("nvidia.com/gpu") != "1":
            problems.append("gpu overlay does not request nvidia.com/gpu")
        if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
            problems.append("gpu overlay does not tolerate nvidia.com/gpu taints")
        if config["SENSORIUM_PROVIDERS"] != "cuda":
            problems.append("gpu overlay does not select the CUDA provider")
    return [f"{path}: {p}" for p in problems]


def _mebibytes(quantity: str) -> float:
    units = {"Mi": 1.0, "Gi": 1024.0, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def main(paths: list[str]) -> int:
    """Check every rendered file; print problems; 1 if any."""
    problems = [p for path in paths for p in _problems(Path(path))]
    print("\n".join(problems) or f"rendered manifests pass: {', '.join(paths)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
