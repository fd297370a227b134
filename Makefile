# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install as needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and only when the environment has none, so a CUDA, ROCm or Ascend (torch_npu)
# build already in $(VENV) is kept; override TORCH_SPEC to pick another build.
TORCH_SPEC ?= torch==2.13.0
DEMO := demo-output

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[all,test]"
	touch $@

demo: install
	rm -rf $(DEMO)
	HF_HUB_OFFLINE=1 $(BIN)/voxport make-tiny csm $(DEMO)/tiny-csm
	HF_HUB_OFFLINE=1 $(BIN)/voxport tts "Hello from voxport." --model $(DEMO)/tiny-csm \
		--output $(DEMO)/hello.wav --codes-out $(DEMO)/hello-codes.npy --max-tokens 25 --seed 0 --device cpu
	HF_HUB_OFFLINE=1 $(BIN)/voxport make-tiny covo $(DEMO)/tiny-covo
	HF_HUB_OFFLINE=1 $(BIN)/voxport chat --model $(DEMO)/tiny-covo --mode a2ta --audio $(DEMO)/hello.wav \
		--audio $(DEMO)/hello.wav --max-new-tokens 24 --seed 0 --device cpu --output-dir $(DEMO)/replies \
		--json > $(DEMO)/chat.json
	HF_HUB_OFFLINE=1 $(BIN)/voxport run-all --model $(DEMO)/tiny-csm --device cpu --dtype bfloat16 \
		--out $(DEMO)/report-csm --configs short_16t,long_32t --iterations 2
	HF_HUB_OFFLINE=1 $(BIN)/voxport run-all --model $(DEMO)/tiny-covo --device cpu --dtype bfloat16 \
		--out $(DEMO)/report-covo --configs short_16t,long_32t --iterations 2
	@echo "demo done: speech in $(DEMO)/hello.wav (codes in $(DEMO)/hello-codes.npy);"
	@echo "a two-round spoken chat about it: transcript and timings in $(DEMO)/chat.json, replies in $(DEMO)/replies/;"
	@echo "port reports (CPU bfloat16 against CPU float32): $(DEMO)/report-csm/summary.md, $(DEMO)/report-covo/summary.md"
	@echo "(tiny random weights, so the audio is noise and the replies gibberish; every step of the real pipelines ran)"

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
