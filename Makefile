# naerdata — one profile (release) and one target dir for everything, so CI builds once.
CARGO   ?= cargo
PROFILE := --release
BIN     := target/release/naerdata
VENV    := .venv
PY      := $(VENV)/bin/python
HOME_DEMO ?= .naerdata/demo

# Lambda builds: x86_64 builds on any machine; arm64 (the template's default, cheaper
# on Lambda) needs `rustup target add aarch64-unknown-linux-gnu` on the build machine.
ARCH    ?= x86_64
LAMBDA_ARCH_FLAG := $(if $(filter arm64,$(ARCH)),--arm64,--x86-64)

.PHONY: all build build-cli demo test test-rust test-e2e bench bench-lambda lint fmt venv venv-build clean

all: build-cli

# The CLI, the function binaries and the test binaries, in one release build.
build-cli:
	$(CARGO) build $(PROFILE) --workspace --locked

## build: the Lambda zips (target/lambda/<function>/bootstrap.zip) with cargo-lambda
build: venv-build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cargo-lambda lambda build \
	  --profile lambda --package naerdata-functions --output-format zip $(LAMBDA_ARCH_FLAG)

## demo: generate a week of synthetic deliveries, ingest them, print the summary
demo: build-cli
	rm -rf $(HOME_DEMO)
	$(BIN) --home $(HOME_DEMO) demo

## test: unit and end-to-end tests, then an independent reader over a full run
test: test-rust test-e2e

# The AWS tests start moto and read Parquet back with pyarrow from the venv.
test-rust: venv
	MOTO_SERVER="$(CURDIR)/$(VENV)/bin/moto_server" NAERDATA_PYTHON="$(CURDIR)/$(PY)" \
	  $(CARGO) test $(PROFILE) --workspace --locked

$(VENV)/.done: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

venv: $(VENV)/.done

$(VENV)/.build-done: $(VENV)/.done requirements-build.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-build.txt
	touch $@

venv-build: $(VENV)/.build-done

test-e2e: build-cli venv
	bash tests/e2e.sh $(BIN) $(PY)

## bench: process-step throughput and peak memory on 1M and 5M rows, then the
## Lambda functions' cold start and per-delivery figures on the 1M-row delivery
bench: build-cli venv
	$(BIN) bench --rows 1000000,5000000 --dir bench-data
	$(MAKE) bench-lambda

bench-lambda: build-cli venv
	test -f bench-data/almenpraksis/diagnose/2026-01-01/bench-1000000.csv || \
	  $(BIN) bench --rows 1000000 --runs 1 --bundles 0 --dir bench-data
	$(PY) bench/lambda_functions.py --bin-dir target/release \
	  --file bench-data/almenpraksis/diagnose/2026-01-01/bench-1000000.csv --runs 3

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(PROFILE) --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf target .naerdata bench-data $(VENV)
