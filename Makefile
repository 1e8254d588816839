VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test docs bench clean proto

$(PY):
	python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

# Each demo gets its own run directory, so a second `make demo` never touches the first.
demo: $(STAMP)
	$(VENV)/bin/medfed simulate --output-dir runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(PY) -m pytest -q

# The documentation site (mkdocs.yml, docs/); --strict fails on broken links and pages left out of the nav.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir build/site

# ruff (lint and format) and mypy, pinned in pyproject.toml; CI runs them before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy src

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) runs build/site

# Regenerates the committed gRPC code from proto/medfed.proto (needs grpcio-tools).
proto: $(STAMP)
	$(PY) -m pip install -q grpcio-tools
	$(PY) -m grpc_tools.protoc -Imedfed/transport/wire=proto --python_out=src --pyi_out=src \
		--grpc_python_out=src medfed/transport/wire/medfed.proto
