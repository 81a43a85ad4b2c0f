# Two entry points on a fresh machine: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: Debian's browser for the back office's Playwright tests (Playwright may not download its own).
CHROMIUM := /usr/bin/chromium
SOURCES := pyproject.toml Cargo.toml core_rs/Cargo.toml $(wildcard core_rs/src/*.rs core_rs/src/*/*.rs)

.PHONY: run test install test-python test-rust lint bench mutation clean

run: $(STAMP)  ## the server on 127.0.0.1:8000, SQLite under ./var/, demo store seeded
	$(BIN)/pos-ledger serve --demo

test: $(STAMP) $(CHROMIUM) test-rust test-python  ## every test: cargo test + pytest (needs PostgreSQL and Redis up)

install: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 'maturin>=1.9,<2'
	$(BIN)/maturin develop --release --extras dev
	touch $(STAMP)

$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi

test-rust:
	cargo test --manifest-path core_rs/Cargo.toml

test-python: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pos_ledger api projections hardware_bridge tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest pos_ledger._core
	cargo clippy --manifest-path core_rs/Cargo.toml --all-targets -- -D warnings

bench: $(STAMP)  ## peer-vs-us benchmarks (slow; prints ratios measured in the same run)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/bench_verify.py
	$(BIN)/python benchmarks/bench_qr.py
	$(BIN)/python benchmarks/bench_fold.py

mutation: $(STAMP)  ## mutmut + cargo-mutants over the rule modules and core_rs (~20 min; not in .ci/run)
	$(BIN)/pip install --quiet 'mutmut>=3.8,<4'
	command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
	$(BIN)/python tools/mutation.py $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) target var
