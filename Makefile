# Two commands on a fresh machine: `make serve` and `make test`. Everything else is their set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev
DEFAULT_MODEL := models/digits/1/model.onnx

.PHONY: install install-dev model serve test screenshots lint bench bench-models image image-cuda clean

# Two stamps: what training and serving need (make serve), and the test and lint tools on top.
install: $(INSTALLED)
install-dev: $(INSTALLED_DEV)

# constraints.txt pins torch's version, not its build: pip takes whatever build its indexes offer. The
# development machines have 2.13.0's CPU wheel on disk (pip's find-links); where pip reaches only PyPI,
# its Linux x86-64 torch is the multi-GB CUDA build. TORCH_INDEX=https://download.pytorch.org/whl/cpu
# installs torch (and its few dependencies) from that index first, so the rest finds it there.
# Empty (the default): torch comes with the rest, from pip's own indexes.
TORCH_INDEX ?=
$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/pip install --quiet -c constraints.txt --index-url '$(TORCH_INDEX)' torch)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[train,serve,client]'
	touch $@

# All extras in one resolve, so the dev tools' pins (tritonclient wants protobuf<7) hold for the rest.
$(INSTALLED_DEV): $(INSTALLED)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[train,serve,client,dev]'
	touch $@

# The default model: digits read row by row, trained (seeded) and exported if absent.
model: $(DEFAULT_MODEL)

$(DEFAULT_MODEL): | $(INSTALLED)
	$(BIN)/lstmserve train --dataset digits --out checkpoints/digits.pt --force
	$(BIN)/lstmserve export checkpoints/digits.pt --repository models --name digits --version 1

# The service on the default model, on 127.0.0.1:50051 (Ctrl-C stops it gracefully).
serve: model
	$(BIN)/lstmserve serve --repository models

# The benchmark's models: digits and a 2x128 stack of 28 inputs, fp32 (v1) and int8 (v2).
bench-models: bench-models/lstm2x128/2/model.onnx

bench-models/lstm2x128/2/model.onnx: | $(DEFAULT_MODEL)
	$(BIN)/python -m lstmserve.benchmarks.make_models bench-models

# Every scenario against the floors; writes bench-results/bench.json and bench.png (about 9 minutes).
# The [bench] extra (matplotlib) comes with the dev stamp.
bench: bench-models $(INSTALLED_DEV)
	$(BIN)/lstmserve bench --repository bench-models --models lstm2x128:1 lstm2x128:2 digits:1 digits:2

# The serving image (no torch), with models/ baked in. CONTAINER=docker works too.
CONTAINER ?= podman
# podman builds the OCI format by default, which has no HEALTHCHECK (podman drops it, with a warning);
# its docker format keeps it. docker builds only that format and has no --format flag.
BUILD_FORMAT := $(if $(filter podman,$(notdir $(CONTAINER))),--format docker)
image: model
	$(CONTAINER) build $(BUILD_FORMAT) -t lstmserve:0.1.0 .

# The same image on onnxruntime-gpu and NVIDIA's PyPI runtime wheels, serving with --device cuda (on
# the CPU, with one warning, where the host has no GPU). About 3 GB.
image-cuda: model
	$(CONTAINER) build $(BUILD_FORMAT) --build-arg REQUIREMENTS=deploy/requirements-serve-cuda.txt --build-arg DEVICE=cuda \
		-t lstmserve:0.1.0-cuda .

test: $(INSTALLED_DEV) model
	$(BIN)/python -m pytest

# The console's screenshots in README.md and docs/console.md, taken by its browser tests (needs chromium).
screenshots: $(INSTALLED_DEV) model
	LSTMSERVE_SCREENSHOTS=docs/images $(BIN)/python -m pytest tests/browser -q

lint: $(INSTALLED_DEV)
	$(BIN)/ruff check .
	$(BIN)/mypy lstmserve model imports export server client benchmarks
	$(BIN)/python proto/generate.py --check

clean:
	rm -rf $(VENV) models checkpoints bench-models bench-results .pytest_cache .hypothesis
