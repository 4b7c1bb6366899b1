# tokenbench: `make bench` measures, `make test` checks. Everything installs into .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install proto test lint format bench bench-quick bench-full clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -c "import proto; proto.build(force=True)"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install tokenbench with its test tools

proto: $(STAMP)  ## regenerate the gRPC stubs from proto/tokens.proto
	$(BIN)/python -c "import proto; proto.build(force=True)"

test: $(STAMP)  ## the test suite (real servers on port 0, real clients)
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache proto/*_pb2*.py proto/*_pb2.pyi
