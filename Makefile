# The documented commands: `make demo` and `make test`. Both build .venv from scratch when
# needed (core with its Redis extra, every plugin under plugins/, test tools) with the versions
# in constraints.txt.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# hybridrec-news stays out: it is the example of a third-party scenario plugin, installed on
# demand (`.venv/bin/hybridrec install plugins/hybridrec-news`; make demo then shows it too);
# tests/test_news_plugin.py installs it into an environment of its own
PLUGINS := $(filter-out plugins/hybridrec-news/,$(sort $(dir $(wildcard plugins/*/pyproject.toml))))
STAMP := $(VENV)/.installed

export FEAST_USAGE := False
export OPENBLAS_NUM_THREADS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt $(wildcard plugins/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,redis]' $(addprefix -e ,$(PLUGINS))
	touch $@

demo: install
	$(BIN)/python demo/run_demo.py

test: install
	$(BIN)/python -m pytest -ra --durations=20

test-fast: install
	$(BIN)/python -m pytest -ra -m "not slow"

lint: install
	$(BIN)/ruff check --no-cache .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .demo bundles feature_repo/data
