# agentstream: `make run` starts the local stack, `make test` runs every test.
# Both set everything up on a fresh clone (a virtualenv in .venv from the pinned requirements).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
PORT   ?= 8000
STAGE  ?= dev
user   ?= alice

.PHONY: install test unit integration run token chat clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

## Every test: unit, local-stack integration, emulators. pytest's "no tests ran" (exit 5) fails too.
test: install
	$(BIN)/python -m pytest

unit: install
	$(BIN)/python -m pytest tests/unit

clean:
	rm -rf $(VENV) build .pytest_cache
