# naerdata — one profile (release) and one target dir for everything, so CI builds once.
CARGO   ?= cargo
PROFILE := --release
BIN     := target/release/naerdata
VENV    := .venv
PY      := $(VENV)/bin/python
HOME_DEMO ?= .naerdata/demo

.PHONY: all build demo test test-rust test-e2e bench lint fmt venv clean

all: build

build:
	$(CARGO) build $(PROFILE) --workspace --locked

## demo: generate a week of synthetic deliveries, ingest them, print the summary
demo: build
	rm -rf $(HOME_DEMO)
	$(BIN) --home $(HOME_DEMO) demo

## test: unit and end-to-end tests, then an independent reader over a full run
test: test-rust test-e2e

test-rust:
	$(CARGO) test $(PROFILE) --workspace --locked

$(VENV)/.done: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

venv: $(VENV)/.done

test-e2e: build venv
	bash tests/e2e.sh $(BIN) $(PY)

## bench: process-step throughput and peak memory on 1M and 5M rows
bench: build
	$(BIN) bench --rows 1000000,5000000 --dir bench-data

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(PROFILE) --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf target .naerdata bench-data $(VENV)
