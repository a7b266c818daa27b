# agentstream: `make run` starts the local stack, `make test` runs every test.
# Both set everything up on a fresh clone (a virtualenv in .venv from the pinned requirements).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
PORT   ?= 8000
STAGE  ?= dev
user   ?= alice

.PHONY: install lint test unit integration loadtest run token chat clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

## ruff (pyflakes, bugbear, blind excepts) and mypy over the app, the local stack, the clients and
## infra; settings in pyproject.toml. Zero findings.
lint: install
	$(BIN)/ruff check app.py chalicelib devserver client infra
	$(BIN)/mypy

## Lint, then every test: unit, local-stack integration, emulators, deploy artefacts, CLI and the web
## page in Debian's chromium (installed by apt the first time). pytest's "no tests ran" (exit 5) fails too.
test: lint chromium
	$(BIN)/python -m pytest

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

## Bounded load test of the local stack (not part of `make test`): every turn whole, exactly once.
loadtest: install
	$(BIN)/python -m tests.load.loadtest --connections 200 --turns 3 --slow 2

## The local stack on ws://127.0.0.1:$(PORT): API Gateway, DynamoDB, SQS and Bedrock, offline.
run: install
	PORT=$(PORT) $(BIN)/python -m devserver

## A token the local stack accepts (last line), for user=NAME.
token: install
	@$(BIN)/python -m devserver.tokens $(user)

## Chat with the running local stack from the terminal.
chat: install
	@$(BIN)/python -m client --url ws://127.0.0.1:$(PORT) --token "$$($(BIN)/python -m devserver.tokens $(user) | tail -n 1)"

clean:
	rm -rf $(VENV) build .pytest_cache

# Packaging and deployment targets live beside this file.
include deploy.mk

# Benchmarks (make bench): run by hand, results in docs/benchmarks.md.
-include bench.mk

# Web client and browser tests (Debian's chromium via apt, never a downloaded browser).
include clients.mk
