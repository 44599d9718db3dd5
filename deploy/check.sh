#!/bin/sh
# CI checks of the deployment recipe, offline: hadolint on the Dockerfile, yamllint on
# the manifests, both overlays rendered with kustomize (kubectl's) and validated
# against the Kubernetes schemas, then the rules of deploy/k8s/check_rendered.py.
set -eu
bin=${BIN:-.venv/bin}
"$bin/hadolint" Dockerfile
"$bin/yamllint" --strict deploy .yamllint.yaml
mkdir -p build/k8s
for overlay in cpu gpu cpu-tls-streams; do
    "$bin/kubectl" kustomize "deploy/k8s/overlays/$overlay" >"build/k8s/$overlay.yaml"
    for version in 1.30.0 1.33.0 1.37.0; do
        # PodMonitor is a Prometheus Operator CRD: no schema offline (a warning).
        "$bin/kubernetes-validate" --strict --quiet -k "$version" "build/k8s/$overlay.yaml"
    done
done
"$bin/python" deploy/k8s/check_rendered.py build/k8s/cpu.yaml build/k8s/gpu.yaml \
    build/k8s/cpu-tls-streams.yaml
# KServe's InferenceService: its own fields checked by us, its pod part by the schemas.
"$bin/python" deploy/kserve/check_inferenceservice.py deploy/kserve/inferenceservice.yaml \
    build/k8s/kserve-pod.yaml
"$bin/kubernetes-validate" --strict --quiet -k 1.33.0 build/k8s/kserve-pod.yaml
echo "deployment recipe checks passed"
