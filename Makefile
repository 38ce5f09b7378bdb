# rf: Reward Forcing. `make help` lists the targets. Every target creates ./.venv on first use.
#
# Torch: TORCH defaults to the pinned release (on the project's CPU machines a local CPU build).
# On a GPU box pick your own build, e.g.
#   make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# or reuse the torch already installed in your Python with SYSTEM_SITE=1.

PYTHON     ?= python3
VENV       ?= .venv
TORCH      ?= torch==2.13.0
SYSTEM_SITE ?= 0
ARGS       ?=
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.rf-installed

experiment ?=
ckpt       ?=
prompt     ?=
seconds    ?=
out        ?=
model      ?=
prompts    ?=
videos     ?=
runs       ?=
port       ?=

.DEFAULT_GOAL := help
.PHONY: help install test demo demo-scratch train generate serve eval bench lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: experiment=NAME model=NAME ckpt=PATH prompt=\"...\" prompts=FILE videos=DIR runs=a,b seconds=N out=PATH port=N ARGS='...'"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(if $(filter 1,$(SYSTEM_SITE)),--system-site-packages,) $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	@$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install rf with its dependencies

test: $(STAMP) ## run the test suite (CPU, tiny configs, no downloads)
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(ARGS)

demo: $(STAMP) ## a 30-s stream from the shipped toy student with a prompt switch, then every stage briefly from the shipped weights
	HF_HUB_OFFLINE=1 $(PY) -m rf.demo $(ARGS)

demo-scratch: $(STAMP) ## the whole chain from scratch on the CPU (teacher, ODE pairs, ODE init, Re-DMD): a smoke test
	HF_HUB_OFFLINE=1 $(PY) -m rf.demo --scratch $(ARGS)

train: $(STAMP) ## train: make train experiment=toy_re_dmd [ARGS='-m method.beta=0.25,0.5,1']
	HF_HUB_OFFLINE=1 $(PY) -m rf.train $(if $(experiment),experiment=$(experiment),) $(ARGS)

generate: $(STAMP) ## stream a video: make generate [ckpt=PATH] prompt="..." seconds=30 (no ckpt: the shipped toy student)
	HF_HUB_OFFLINE=1 $(PY) -m rf.generate $(if $(experiment),experiment=$(experiment),) $(if $(model),model=$(model),) \
		$(if $(ckpt),ckpt=$(ckpt),$(if $(model)$(experiment),,model=toy_large ckpt=shipped)) $(if $(prompt),'prompt="$(prompt)"',) \
		$(if $(seconds),seconds=$(seconds),) $(if $(out),out=$(out),) $(ARGS)

serve: $(STAMP) ## a live page that streams and takes prompts mid-stream: make serve [model=NAME ckpt=PATH port=8000]
	HF_HUB_OFFLINE=1 $(PY) -m rf.serve $(if $(experiment),experiment=$(experiment),) $(if $(model),model=$(model),) \
		$(if $(ckpt),ckpt=$(ckpt),) $(if $(prompt),'prompt="$(prompt)"',) $(if $(port),port=$(port),) $(ARGS)

eval: $(STAMP) ## evaluate: make eval ckpt=PATH [prompts=FILE seconds=N] | videos=DIR | runs=a,b,c (side by side)
	HF_HUB_OFFLINE=1 $(PY) -m rf.evaluate $(if $(experiment),experiment=$(experiment),) $(if $(model),model=$(model),) \
		$(if $(ckpt),ckpt=$(ckpt),) $(if $(prompts),prompts=$(prompts),) $(if $(videos),videos=$(videos),) \
		$(if $(runs),'runs=[$(runs)]',) $(if $(seconds),seconds=$(seconds),) $(if $(out),out=$(out),) $(ARGS)

bench: $(STAMP) ## FPS, first frame, memory: plain vs exact vs approximate fast path on this GPU (CPU: ARGS='model=toy')
	HF_HUB_OFFLINE=1 $(PY) -m rf.bench $(if $(model),model=$(model),) $(ARGS)

lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

clean: ## remove caches (keeps .venv and runs/)
	rm -rf .pytest_cache .ruff_cache src/*.egg-info
