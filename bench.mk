# Benchmarks, run by hand and never by `make test`: `make bench` measures agentstream's relay
# against a post-once and a post-per-delta relay, cold start, memory, package size and the local
# stack's capacity, then rewrites docs/benchmarks.md (between its bench: markers) and its plot.
# Uses the Makefile's $(VENV), $(BIN) and $(STAMP). BENCH_ARGS passes options (python -m bench --help),
# e.g. `make bench BENCH_ARGS=--quick` for a smoke run; `make bench-scale` runs only "one worker, many turns".

BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-$(shell cat bench/requirements.txt | cksum | cut -d' ' -f1)

.PHONY: bench bench-scale

bench: install $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-scale: install $(BENCH_STAMP)
	$(BIN)/python -m bench --only scale $(BENCH_ARGS)

# The bench's own extra (the plot), on top of the dev requirements `install` put in the venv.
$(BENCH_STAMP): bench/requirements.txt $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	rm -f $(VENV)/.bench-*
	touch $@
