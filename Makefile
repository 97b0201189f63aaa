# The README's two commands: `make demo` and `make test`. Both start from nothing but Python 3.11 and git.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
EXTRAS ?= dev,deepspeed
OUT    ?= report

.PHONY: setup cjk-font demo test test-notebooks test-pytest export clean-nbs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes in first and exactly pinned (constraints.txt); everything after is installed under the same constraints.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed cjk-font

# Chinese plot labels need a CJK font: installed where the package manager allows it (root and apt-get), else a note says how.
cjk-font:
	@fc-list 2>/dev/null | grep -qiE 'wenquanyi|noto sans cjk|source han' && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q fonts-wqy-microhei >/dev/null 2>&1 || echo "note: could not install fonts-wqy-microhei: Chinese plot labels will show as boxes"; \
	else echo "note: no CJK font found: Chinese plot labels will show as boxes (sudo apt-get install fonts-wqy-microhei)"; fi

demo: setup
	$(BIN)/knowlm-nb pipeline --out $(OUT)
	@echo "report written to $(OUT)/report.md"

test-notebooks: setup
	$(BIN)/nbdev-test

test-pytest: setup
	$(BIN)/python -m pytest -q

test: test-notebooks test-pytest

export: setup
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean

bench: setup
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info $(OUT)
