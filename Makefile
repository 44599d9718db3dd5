# Set-up and checks. Every target creates its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/ci.txt
BUF_VERSION := 1.75.0
DEMO_DIR := build/demo

.PHONY: help venv run deploy-check image-check image image-smoke synth-small bench-serving bench-scoring bench-soak bench-mixed bench-window bench-ab fuzz synth-default default-model bench-streaming test lint format protos protos-check buf-lint client-only ci clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[server,train,dev]'
	$(BIN)/pip check
	touch $@

venv: $(BIN)/.installed  ## create .venv with every extra (pinned by constraints/ci.txt)

run: venv  ## the main job: serve the embedded default model, predict and stream the sample clip
	BIN=$(BIN) scripts/demo.sh

synth-small: venv  ## a small synthetic mouse, written, validated, its noise ceiling printed
	$(BIN)/sensorium-synth --small --out $(DEMO_DIR) --overwrite
	$(BIN)/client inspect --validate $(DEMO_DIR)

synth-default: venv  ## the full-scale synthetic mouse (8,000 neurons, 700 trials) in build/synth
	$(BIN)/sensorium-synth --out build/synth --overwrite

default-model: venv  ## reproduce models/sensorium from scratch (synthetic mouse, train, export, evaluate; < 60 min)
	$(BIN)/sensorium-synth --out build/synth --overwrite --no-progress
	$(BIN)/sensorium-train --data build/synth --out build/default --steps 8000 --batch 4 --lr 6e-3 \
		--window 90 --frame-stride 2 --eval-every 2000 --time-limit 46 --no-progress
	rm -rf build/models
	$(BIN)/sensorium-export --checkpoint build/default/checkpoint.pt --repository build/models \
		--name sensorium --version 1
	$(BIN)/sensorium-evaluate --checkpoint build/default/checkpoint.pt --data build/synth \
		--json build/default/quality.json | tee build/default/quality.md
	rm -rf models/sensorium && cp -r build/models/sensorium models/sensorium

bench-streaming: venv  ## budgets of the default architecture (state, step latency, ratios)
	$(BIN)/python bench/streaming_budget.py

bench-serving: venv  ## the served figures: latency, overhead, 30 Hz streams, memory, Predict vs eager
	$(BIN)/python bench/serving.py

MINUTES ?= 10

bench-soak: venv  ## rig streams for MINUTES (default 10) under clip load, churn and a drain each minute
	$(BIN)/python bench/soak.py --minutes $(MINUTES)

bench-mixed: venv  ## 8 rig streams while clips loop on the same server (streams before clips; 2 min)
	$(BIN)/python bench/soak.py --mixed --minutes 2

bench-window: venv  ## per-frame cost of streaming by window (clip-only models) vs by step graph
	$(BIN)/python bench/window_cost.py

bench-ab: venv  ## is step graph B faster than A? make bench-ab A=old/step.onnx B=new/step.onnx
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make bench-ab A=old/step.onnx B=new/step.onnx"; exit 2; }
	$(BIN)/python bench/graph_ab.py "$(A)" "$(B)"

bench-scoring: venv  ## scoring throughput through the server vs PyTorch eager (needs build/synth)
	$(BIN)/python bench/scoring.py

fuzz: venv  ## 20,000 malformed requests over every surface; prints the status codes seen
	SENSORIUM_FUZZ_CASES=2500 $(BIN)/pytest tests/server/test_fuzz.py -q -s

test: venv  ## run the test suite
	$(BIN)/pytest

lint: venv  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

protos: venv  ## regenerate the gRPC stubs from proto/
	$(BIN)/python proto/generate_stubs.py

protos-check: venv  ## fail when the committed stubs are stale
	$(BIN)/python proto/generate_stubs.py --check

.tools/node_modules/.bin/buf:
	npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@$(BUF_VERSION)

buf-lint: .tools/node_modules/.bin/buf  ## lint the .proto files with buf
	.tools/node_modules/.bin/buf lint

client-only:  ## install with no extras into a fresh venv: client --help, no torch/onnxruntime
	rm -rf .venv-client
	$(PYTHON) -m venv .venv-client
	.venv-client/bin/pip install -q -c $(CONSTRAINTS) .
	.venv-client/bin/pip check
	.venv-client/bin/client --help > /dev/null
	.venv-client/bin/python -c "import sensorium_client.cli, sensorium_api, sys; \
	bad = {'torch', 'onnxruntime'} & set(sys.modules); assert not bad, bad"
	@echo "client-only install: ok"

deploy-check: venv  ## hadolint, yamllint, render and validate the Kubernetes overlays
	BIN=$(BIN) deploy/check.sh

image-check: venv  ## the Dockerfile's install script in a fresh venv, then health, predict, drain
	PYTHON=$(BIN)/python deploy/docker/check.sh

image: venv  ## build the image with podman/buildah from a local Debian base (no registry)
	PYTHON=$(BIN)/python deploy/docker/image.sh build

image-smoke: venv  ## run the built image's filesystem in a chroot: entrypoint, HEALTHCHECK, client predict, drain
	PYTHON=$(BIN)/python deploy/docker/image.sh smoke

ci: lint protos-check buf-lint test client-only deploy-check image-check  ## everything CI runs

clean:  ## remove environments and build outputs
	rm -rf $(VENV) .venv-client .tools build dist *.egg-info
