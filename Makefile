# The README's two commands: `make demo` and `make test`. Both start from nothing but Python 3.11 and git.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
EXTRAS ?= dev,deepspeed
# torch's CPU build from PyTorch's CPU wheel index where no NVIDIA GPU answers `nvidia-smi -L` (PyPI's Linux torch is the CUDA build,
# with GBs of nvidia packages); with a GPU, PyPI's CUDA build. An extra index, so a local wheel folder or mirror still serves the pin;
# `make setup TORCH_INDEX=` uses no index of PyTorch's at all.
TORCH_INDEX ?= $(if $(shell nvidia-smi -L 2>/dev/null | grep -q GPU && echo gpu),,https://download.pytorch.org/whl/cpu)
# an unreachable index then costs seconds, not pip's 5 retries with back-off for torch and each of its dependencies
TORCH_PIP_NET ?= --timeout 30 --retries 2
OUT    ?= report

.PHONY: setup cjk-font lab demo test test-notebooks test-pytest run-notebooks docs readme export clean-nbs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes in first and exactly pinned (constraints.txt); everything after is installed under the same constraints.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX) $(TORCH_PIP_NET)) torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed cjk-font

# JupyterLab on the notebooks: the `lab` extra on top of `make setup`, then `jupyter lab nbs/` (step through them in order).
$(VENV)/.lab-installed: $(VENV)/.installed
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS),lab]"
	touch $@

lab: setup $(VENV)/.lab-installed
	$(BIN)/jupyter lab nbs/

# Chinese plot labels need a CJK font: installed where the package manager allows it (root and apt-get), else a note says how.
cjk-font:
	@fc-list 2>/dev/null | grep -qiE 'wenquanyi|noto sans cjk|source han' && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q fonts-wqy-microhei >/dev/null 2>&1 || echo "note: could not install fonts-wqy-microhei: Chinese plot labels will show as boxes"; \
	else echo "note: no CJK font found: Chinese plot labels will show as boxes (sudo apt-get install fonts-wqy-microhei)"; fi

demo: setup
	$(BIN)/knowlm-nb pipeline --out $(OUT)
	@echo "report written to $(OUT)/report.md"

# Parallel workers share the cores (the thread rule in the README): NB_JOBS notebooks at a time, cores/NB_JOBS threads each.
NB_JOBS    ?= 2
NB_THREADS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); t=$$((n / $(NB_JOBS))); [ $$t -ge 1 ] && echo $$t || echo 1)

test-notebooks: setup
	OMP_NUM_THREADS=$(NB_THREADS) MKL_NUM_THREADS=$(NB_THREADS) $(BIN)/nbdev-test --n-workers $(NB_JOBS)

test-pytest: setup
	$(BIN)/python -m pytest -q

test: test-notebooks test-pytest

# Every notebook as Run All in a real Jupyter kernel (flagged cells included), executed copies in _build/executed/.
$(VENV)/.docs-installed: $(VENV)/.installed
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS),docs]"
	touch $@

run-notebooks: setup $(VENV)/.docs-installed
	$(BIN)/python tools/run_notebooks.py --jobs $(NB_JOBS)

# The documentation website, offline, into _docs/ (npm fetches the widget renderer once into the knowlm_nb cache).
docs: run-notebooks
	$(BIN)/python tools/build_docs.py site
	@echo "site written to _docs/ (python -m http.server -d _docs)"

# README.md is generated from nbs/index.ipynb (CI checks it is not stale).
readme:
	python3 tools/build_docs.py readme

export: setup
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean

bench: setup
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info $(OUT) _build _docs
