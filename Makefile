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

CFN_GUARD := .tools/bin/cfn-guard
# apt-get as root (CI), or through sudo on a developer's machine.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ENV       ?=
DEPLOY_ARCH ?= arm64
ALARM_EMAIL ?=
# The suppliers' accounts and ExternalIds (and any other parameter), as sam's
# Key=Value pairs: SUPPLIER_PARAMS="AlmenpraksisAccountId=111122223333 AlmenpraksisExternalId=... ..."
SUPPLIER_PARAMS ?=

.PHONY: all build build-cli build-demo build-kit supplier-kit test-kit check-lean chaos demo test system-deps test-rust test-e2e test-infra bench bench-duckdb bench-publish bench-lambda lint fmt venv venv-build venv-deploy deploy destroy clean

all: build-cli

# The CLI (with the operator's --aws commands) and the function binaries, in the
# same release build the tests use (one feature set: nothing is built twice).
build-cli:
	$(CARGO) build $(PROFILE) --workspace --all-features --locked

# The embedded default only: the CLI without the AWS SDK, no functions, no tests, in
# the quick-to-build `demo` profile (README: "How long the first build takes").
DEMO_BIN := target/demo/naerdata
build-demo:
	$(CARGO) build --profile demo -p naerdata-cli --locked

## build: the Lambda zips (target/lambda/<function>/bootstrap.zip) with cargo-lambda.
## publish builds on its own: built together, cargo would unify features and link
## DataFusion into receive and process too.
build: venv-build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cargo-lambda lambda build \
	  --profile lambda-release --package naerdata-receive --package naerdata-process --package naerdata-monitor --output-format zip $(LAMBDA_ARCH_FLAG)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cargo-lambda lambda build \
	  --profile lambda-release --package naerdata-publish --output-format zip $(LAMBDA_ARCH_FLAG)

## demo: generate a week of synthetic deliveries, ingest them, print the summary
demo: build-demo
	rm -rf $(HOME_DEMO)
	$(DEMO_BIN) --home $(HOME_DEMO) demo

## test: unit and end-to-end tests, then an independent reader over a full run, then
## the supplier kit against the platform's receipts (its validator from the same
## build: CI compiles the library once; `make supplier-kit` builds the kit alone)
test: system-deps test-infra test-rust test-e2e test-kit

## system-deps: the OS packages the tests need (a C compiler, the Python venv module,
## Chromium and a font for the operator-page check, npm for the infra checkers), installed
## with apt-get when missing: only the missing ones (a machine with Node.js from elsewhere
## has npm already, and Debian's npm package conflicts with that nodejs)
system-deps:
	@missing=""; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	python3 -c 'import venv' 2>/dev/null || missing="$$missing python3-venv"; \
	command -v chromium >/dev/null || missing="$$missing chromium fonts-dejavu-core"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing OS packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The AWS tests start moto and read Parquet back with pyarrow from the venv.
test-rust: venv
	MOTO_SERVER="$(CURDIR)/$(VENV)/bin/moto_server" NAERDATA_PYTHON="$(CURDIR)/$(PY)" \
	  $(CARGO) test $(PROFILE) --workspace --all-features --locked

$(VENV)/.done: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

venv: $(VENV)/.done

# cfn-guard, installed beside the project (not in target/). AWS's own prebuilt binary
# comes in the npm package @cdklabs/cdk-validator-cfnguard (pinned: it carries cfn-guard
# 3.1.1), which saves compiling the tool from crates.io in every CI run; without npm, or
# on a machine that binary does not run on, it is built with cargo as before.
CFN_GUARD_NPM := @cdklabs/cdk-validator-cfnguard@0.0.62
$(CFN_GUARD):
	mkdir -p .tools/bin
	if command -v npm >/dev/null && npm install --silent --no-audit --no-fund --prefix .tools/npm $(CFN_GUARD_NPM) \
	   && .tools/npm/node_modules/@cdklabs/cdk-validator-cfnguard/bin/ubuntu/$$(uname -m)/cfn-guard --version >/dev/null 2>&1; then \
	  ln -sf "$(CURDIR)/.tools/npm/node_modules/@cdklabs/cdk-validator-cfnguard/bin/ubuntu/$$(uname -m)/cfn-guard" $@; \
	else \
	  $(CARGO) install cfn-guard --locked --quiet --root .tools; \
	fi

# asl-validator (npm, pinned): the state machines' Amazon States Language, offline.
ASL_VALIDATOR := .tools/asl/node_modules/.bin/asl-validator
$(ASL_VALIDATOR):
	npm install --silent --no-audit --no-fund --prefix .tools/asl asl-validator@4.0.0

## test-infra: the SAM template checked offline (transform, cfn-lint, checkov, cfn-guard,
## the state machines' ASL)
test-infra: venv $(CFN_GUARD) $(ASL_VALIDATOR)
	$(PY) infra/checks/check_template.py infra/template.yaml target/infra/template.json
	$(PY) infra/checks/check_asl.py target/infra/template.json target/infra/asl $(ASL_VALIDATOR)
	$(VENV)/bin/cfn-lint infra/template.yaml infra/catalog.yaml
	BC_SKIP_MAPPING=TRUE $(VENV)/bin/checkov --quiet --compact --framework cloudformation \
	  -f infra/template.yaml -f infra/catalog.yaml
	$(CFN_GUARD) validate --show-summary fail -r infra/rules/naerdata.guard -d target/infra/template.json
	@$(CFN_GUARD) test -r infra/rules/naerdata.guard -t infra/rules/tests/naerdata_tests.yaml \
	  > target/infra/guard-tests.log || { cat target/infra/guard-tests.log; exit 1; }
	@echo "cfn-guard rule tests: $$(grep -c '^Test Case' target/infra/guard-tests.log) cases as expected"

$(VENV)/.build-done: $(VENV)/.done requirements-build.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-build.txt
	touch $@

venv-build: $(VENV)/.build-done

# The SAM CLI pins its own dependencies: a venv of its own.
.venv-deploy/.done: requirements-deploy.txt
	python3 -m venv .venv-deploy
	.venv-deploy/bin/pip install --quiet --disable-pip-version-check -r requirements-deploy.txt
	touch $@

venv-deploy: .venv-deploy/.done venv-build

## deploy: sam build + sam deploy of infra/template.yaml as stack naerdata-$(ENV)
deploy: venv-deploy
	@test -n "$(ENV)" || { echo "usage: make deploy ENV=dev SUPPLIER_PARAMS='AlmenpraksisAccountId=... AlmenpraksisExternalId=... (x5)' [DEPLOY_ARCH=arm64|x86_64] [ALARM_EMAIL=ops@example.org]"; exit 2; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true \
	  .venv-deploy/bin/sam build --beta-features --template-file infra/template.yaml --build-dir target/sam \
	  --parameter-overrides Architecture=$(DEPLOY_ARCH)
	.venv-deploy/bin/sam deploy --template-file target/sam/template.yaml --stack-name naerdata-$(ENV) \
	  --resolve-s3 --capabilities CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset \
	  --parameter-overrides EnvironmentName=$(ENV) Architecture=$(DEPLOY_ARCH) AlarmEmail=$(ALARM_EMAIL) $(SUPPLIER_PARAMS)

## destroy: delete the stack; buckets, ledger, key and secret are retained (README)
destroy: venv-deploy
	@test -n "$(ENV)" || { echo "usage: make destroy ENV=dev"; exit 2; }
	.venv-deploy/bin/sam delete --stack-name naerdata-$(ENV) --no-prompts

test-e2e: build-cli venv
	bash tests/e2e.sh $(BIN) $(PY)

# The suppliers' validator on its own: built alone, so cargo does not unify in the
# features the workspace build turns on (DataFusion, the AWS SDK). Same profile and
# target dir; only the library is compiled again with fewer features.
KIT_BIN := target/release/naerdata-validate
build-kit:
	$(CARGO) build $(PROFILE) -p naerdata-validate --locked

## supplier-kit: target/supplier-kit/naerdata-supplier-kit.zip (validator, contracts,
## guides, receipt schema, examples), checked against the platform's own receipts
supplier-kit: build-cli build-kit venv
	bash tests/supplier-kit.sh $(KIT_BIN) $(BIN) $(PY)

# The same checks on the workspace build's validator (same code, the workspace's
# features); what it would link is read from its own dependency graph.
test-kit: build-cli venv
	bash tests/supplier-kit.sh --workspace-build $(KIT_BIN) $(BIN) $(PY)

## check-lean: the receive, process and monitor functions and the suppliers' validator
## type-checked with their own, smaller feature sets (no DataFusion), as `make build`
## and the kit compile them; the workspace build unifies features and cannot see code
## that needs `analytics` without saying so. Not in `make test` (a second dependency
## graph to check).
check-lean:
	$(CARGO) check $(PROFILE) --locked -p naerdata-receive -p naerdata-process -p naerdata-monitor -p naerdata-validate

## bench: process-step throughput and peak memory on 1M and 5M rows at 1 and 2 threads,
## against DuckDB on the same job, publish for a
## 1M-person population (whole, and one more day merged after 1 and 30 days), then the Lambda functions' cold start and per-delivery
## figures on the 1M-row delivery
bench: build-cli venv
	$(BIN) bench --rows 1000000,5000000 --dir bench-data
	$(BIN) bench-files --days 30 --dir bench-data
	$(BIN) bench-hostile --case endless
	$(BIN) bench-hostile --case nested
	$(MAKE) bench-duckdb
	$(MAKE) bench-publish
	$(MAKE) bench-lambda

## bench-duckdb: the 1M-row delivery through naerdata and through DuckDB (pinned in
## bench/requirements.txt) doing the same job in SQL (bench/duckdb_process.sql), at 1
## and 2 threads, after a check that both keep the same rows
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.done: bench/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

bench-duckdb: build-cli $(BENCH_VENV)/.done
	test -f bench-data/almenpraksis/diagnose/2026-01-01/bench-1000000.csv || \
	  $(BIN) bench --rows 1000000 --runs 1 --bundles 0 --threads 1 --dir bench-data
	$(BENCH_VENV)/bin/python bench/compare_duckdb.py --naerdata $(BIN) \
	  --file bench-data/almenpraksis/diagnose/2026-01-01/bench-1000000.csv --runs 3 --work bench-data/compare

## bench-publish: publish (time, peak memory) for a generated 1M-person population; then
## one more day merged into the current tables after 1 and after 30 days of history,
## against a full rebuild of the same state (the marts timed apart, with bytes scanned)
bench-publish: build-cli
	$(BIN) bench-publish --persons 1000000 --dir bench-data
	$(BIN) bench-publish --persons 1000000 --history 1,30 --dir bench-data

## chaos: the reliability campaign in full: every write point of the workload faulted
## (an error, then a crash), retried, and compared with a fault-free run — on the
## embedded platform and through the functions on moto — then a burst of 1,000
chaos: build-cli venv
	MOTO_SERVER="$(CURDIR)/$(VENV)/bin/moto_server" NAERDATA_PYTHON="$(CURDIR)/$(PY)" NAERDATA_CHAOS=full \
	  $(CARGO) test $(PROFILE) --workspace --all-features --locked --test integration chaos -- --nocapture --test-threads 1
	MOTO_SERVER="$(CURDIR)/$(VENV)/bin/moto_server" NAERDATA_PYTHON="$(CURDIR)/$(PY)" NAERDATA_BURST=1000 \
	  $(CARGO) test $(PROFILE) --workspace --all-features --locked --test integration burst -- --nocapture

bench-lambda: build-cli venv
	test -f bench-data/almenpraksis/diagnose/2026-01-01/bench-1000000.csv || \
	  $(BIN) bench --rows 1000000 --runs 1 --bundles 0 --threads 1 --dir bench-data
	$(PY) bench/lambda_functions.py --bin-dir target/release \
	  --file bench-data/almenpraksis/diagnose/2026-01-01/bench-1000000.csv --runs 3

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(PROFILE) --workspace --all-targets --all-features --locked -- -D warnings
	$(CARGO) clippy $(PROFILE) -p naerdata-cli --locked -- -D warnings
	$(CARGO) clippy $(PROFILE) -p naerdata-validate --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf target .naerdata bench-data $(VENV) .venv-deploy .tools
