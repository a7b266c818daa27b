# agentstream: `make run` starts the local stack, `make test` runs every test.
# Both set everything up on a fresh clone (a virtualenv in .venv from the pinned requirements).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
PORT   ?= 8000
STAGE  ?= dev
user   ?= alice
AUTH   ?= dev

.PHONY: install lint test unit integration loadtest run token chat upload clean openapi diagram

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
## JOBS processes (pytest-xdist), each taking whole files: a module's fixtures and stack stay in one process.
JOBS ?= 2
test: lint chromium
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

## Bounded load test of the local stack (not part of `make test`): every turn whole, exactly once.
loadtest: install
	$(BIN)/python -m tests.load.loadtest --connections 200 --turns 3 --slow 2

## The local stack on ws://127.0.0.1:$(PORT): API Gateway, DynamoDB, SQS and Bedrock, offline.
## AUTH=cognito: sign-in through a Cognito user pool (moto's) with RS256 tokens checked via its JWKS.
run: install
	PORT=$(PORT) AUTH=$(AUTH) $(BIN)/python -m devserver

## A token (last line) for user=NAME. Without STAGE: one the local stack accepts; AUTH=cognito: from the
## pool of the `make run AUTH=cognito` stack on $(PORT) (the user is created there if needed).
## With STAGE=NAME on the command line: an access token from that deployed stage's Cognito user pool
## (python -m infra.signin, AWS credentials): the user is created if needed and a generated password is
## set and shown once; an existing user needs TOKEN_PASSWORD=... (theirs) or RESET_PASSWORD=1; STACK_NAME=... names the
## CloudFormation path's stack if not agentstream-$(STAGE). docs/deploy.md, "After deploying".
token: install
ifeq ($(origin STAGE),command line)
	@$(if $(filter command line,$(origin AUTH)),$(error make token: STAGE=$(STAGE) signs in to a deployed stage, AUTH=$(AUTH) to the local stack; give one of them))
	@$(BIN)/python -m infra.signin --stage $(STAGE) $(if $(filter command line environment,$(origin STACK_NAME)),--stack-name $(STACK_NAME)) $(user)
else
	@$(BIN)/python -m devserver.tokens --auth $(AUTH) --port $(PORT) $(user)
endif

## Chat with the running local stack from the terminal.
chat: install
	@$(BIN)/python -m client --url ws://127.0.0.1:$(PORT) --token "$$($(BIN)/python -m devserver.tokens --auth $(AUTH) --port $(PORT) $(user) | tail -n 1)"

## Upload a document (file=PATH: .txt .md .html .htm .pdf .docx) to the running local stack as user=NAME and
## print its statuses until it is analysed (python -m client upload; its exit codes, --timeout 600 s).
upload: install
	@$(if $(file),,$(error make upload: name the document, e.g. make upload file=notes.md user=$(user)))
	@$(BIN)/python -m client --url ws://127.0.0.1:$(PORT) --token "$$($(BIN)/python -m devserver.tokens --auth $(AUTH) --port $(PORT) $(user) | tail -n 1)" upload "$(file)"

clean:
	rm -rf $(VENV) build .pytest_cache

# Packaging and deployment targets live beside this file.
include deploy.mk

# Benchmarks (make bench): run by hand, results in docs/benchmarks.md.
-include bench.mk

# Web client and browser tests (Debian's chromium via apt, never a downloaded browser).
include clients.mk

## docs/openapi.json, the REST API's description generated from the routes and the wire schema (a test checks it is current).
openapi: install
	$(BIN)/python -m infra.openapi

## docs/documents.md's picture of the document pipeline, drawn from infra/documents.asl.json (a test checks it is current).
diagram: install
	$(BIN)/python -m infra.asl_diagram
