# billing-functions: developer and CI entry points (GNU make).
#
# Everything a target needs is built by the target itself, from a clean
# checkout: the two virtual environments come from the pinned requirements,
# the layer is cross-built for the Lambda runtime by `sam build`.
# `make help` lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules --no-print-directory

# ----------------------------------------------------------------- Python 3.13
# PYTHON: an interpreter of Python 3.13 that venvs are made from. Override with
# `make PYTHON=/path/to/python3.13`. Otherwise, in order: `python3.13` on PATH
# if it runs (a pyenv shim may not, without PYENV_VERSION); the newest 3.13 that
# pyenv knows; one under $PYENV_ROOT (or ~/.pyenv) even if pyenv is not on PATH;
# one that uv manages. It resolves to the real interpreter, never a shim.
PY313_OK := import sys; sys.exit(sys.version_info[:2] != (3, 13))
PY_REAL  := import sys; print(sys.executable)
define FIND_PYTHON313
ok() { [ -n "$$1" ] && "$$1" -c '$(PY313_OK)' >/dev/null 2>&1 && "$$1" -c '$(PY_REAL)'; }; \
p=$$(command -v python3.13 2>/dev/null) && ok "$$p" && exit 0; \
if command -v pyenv >/dev/null 2>&1; then \
  v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$$' | sort -V | tail -n 1 || true); \
  [ -n "$$v" ] && ok "$$(pyenv prefix "$$v" 2>/dev/null)/bin/python3.13" && exit 0; \
fi; \
for p in $$(ls -d "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/3.13*/bin/python3.13 2>/dev/null | sort -V -r || true); do \
  ok "$$p" && exit 0; \
done; \
command -v uv >/dev/null 2>&1 && ok "$$(uv python find 3.13 2>/dev/null)" && exit 0; \
exit 0
endef

ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell $(FIND_PYTHON313))
endif

# One clear line, then stop: used by every recipe that needs the interpreter.
define require_python313
@if [ -z "$(PYTHON)" ]; then \
	  echo "error: Python 3.13 not found (no working python3.13 on PATH, none under pyenv or uv); install it or run make PYTHON=/path/to/python3.13" >&2; exit 1; \
	elif ! "$(PYTHON)" -c '$(PY313_OK)' >/dev/null 2>&1; then \
	  echo "error: PYTHON=$(PYTHON) is not a working Python 3.13" >&2; exit 1; \
	fi
endef

# --------------------------------------------------------------- environments
VENV      := .venv
VENV_SAM  := .venv-sam
VENV_CHECKOV := .venv-checkov
VENV_DOCS := .venv-docs
DEV_STAMP := $(VENV)/.installed-dev
SAM_STAMP := $(VENV_SAM)/.installed-sam
CHECKOV_STAMP := $(VENV_CHECKOV)/.installed-checkov
DOCS_STAMP := $(VENV_DOCS)/.installed-docs
BIN       := $(VENV)/bin
SAM_BIN   := $(CURDIR)/$(VENV_SAM)/bin

# make_venv(dir, requirements): (re)create dir from $(PYTHON) unless it already
# is a working 3.13 venv, then bring it to the pins. uv, not pip, resolves:
# pip backtracks for minutes on this dependency set.
define make_venv
	$(require_python313)
	@if ! "$(1)/bin/python" -c '$(PY313_OK)' >/dev/null 2>&1; then \
	  echo "creating $(1) with $(PYTHON)"; rm -rf "$(1)"; "$(PYTHON)" -m venv "$(1)"; \
	fi
	"$(1)/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip uv
	"$(1)/bin/uv" pip install --quiet --python "$(1)/bin/python" -r "$(2)"
	@touch "$@"
endef

$(DEV_STAMP): requirements/dev.txt
	$(call make_venv,$(VENV),requirements/dev.txt)

$(SAM_STAMP): requirements/sam.txt
	$(call make_venv,$(VENV_SAM),requirements/sam.txt)

$(CHECKOV_STAMP): requirements/checkov.txt
	$(call make_venv,$(VENV_CHECKOV),requirements/checkov.txt)

$(DOCS_STAMP): requirements/docs.txt
	$(call make_venv,$(VENV_DOCS),requirements/docs.txt)

.PHONY: venv .venv .venv-sam .venv-checkov
venv: .venv .venv-sam .venv-checkov ## the three virtual environments
.venv: $(DEV_STAMP) ## the dev environment (tests, linters, local stack), from requirements/dev.txt
.venv-sam: $(SAM_STAMP) ## the SAM CLI and cfn-lint, from requirements/sam.txt
.venv-checkov: $(CHECKOV_STAMP) ## checkov (IaC scanner), from requirements/checkov.txt
.PHONY: .venv-docs
.venv-docs: $(DOCS_STAMP) ## MkDocs and the Material theme, from requirements/docs.txt

# ----------------------------------------------------------------------- SAM
# No telemetry; never wait on the EC2 metadata service for credentials.
# Nothing here needs AWS credentials but `deploy`.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true
SAM     := $(SAM_ENV) $(SAM_BIN)/sam
REGION  ?= us-east-1
ENV     ?= default

# sam build's python_pip workflow wants `python3.13` on PATH, and the layer's
# Makefile wants uv: the SAM venv has both (its python is a 3.13), and the
# base interpreter's folder follows.
SAM_BUILD_PATH = $(SAM_BIN):$(dir $(PYTHON)):$(PATH)
LAYER_BUILD    := .aws-sam/build/CommonLayer/python

# ------------------------------------------------------------------- targets
.PHONY: help
help: ## this list
	@echo "usage: make TARGET   (Python 3.13: $(or $(PYTHON),NOT FOUND))"
	@grep -hE '^[.a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

.PHONY: run
run: $(DEV_STAMP) ## the local stack on 127.0.0.1:PORT (env, default 3000); DESIGN.md section 6
	$(BIN)/python -m devstack run

.PHONY: test
test: lint typecheck unit integration test-dynamodb-local template-check scan build docs-build ## everything CI checks, in order

.PHONY: lint
lint: $(DEV_STAMP) ## ruff, and import-linter's contracts (one dependency direction, pyproject.toml)
	$(BIN)/ruff check .
	PYTHONPATH=layers/common $(BIN)/lint-imports --no-cache

.PHONY: typecheck
typecheck: $(DEV_STAMP) ## mypy (files and strictness in pyproject.toml)
	$(BIN)/mypy

# Extra pytest arguments, e.g. make unit PYTEST_ARGS="-k usage -x" or "-n auto".
# The tiers are marked by tests/conftest.py: whatever runs the local stack is
# `integration`, everything else (in-process) is `unit`.
PYTEST_ARGS ?=
# The local-stack tiers wait on deliveries (signed webhooks, stream polls,
# backoffs) more than they compute: pytest-xdist runs each test file whole on
# one of WORKERS processes, each with a stack (and tables) of its own.
WORKERS ?= 4
XDIST = -n $(WORKERS) --dist loadfile
.PHONY: unit
unit: $(DEV_STAMP) ## the fast tier: in-process tests (domain logic on moto, processor, template contract), no local stack
	$(BIN)/python -m pytest -m unit -n auto $(PYTEST_ARGS)

.PHONY: integration
integration: $(DEV_STAMP) ## the local-stack tier: HTTP against make run's topology, faults, security, fuzz
	$(BIN)/python -m pytest -m integration $(XDIST) $(PYTEST_ARGS)

.PHONY: test-dynamodb-local
test-dynamodb-local: $(DEV_STAMP) ## the local-stack integration suite again, on a real DynamoDB Local (npm + Java 17)
	$(BIN)/python -m devstack.dynamodb_local -- $(BIN)/python -m pytest tests/integration $(XDIST) $(PYTEST_ARGS)

.PHONY: template-check
TEMPLATE_ON := .aws-sam/template-switches-on.yaml
template-check: $(SAM_STAMP) ## cfn-lint and sam validate (no AWS credentials needed), switches off and on
	$(SAM_BIN)/cfn-lint template.yaml
	$(SAM) validate --template-file template.yaml --region $(REGION)
	@# Again with SnapStart and DetailedTracing on: a copy whose two defaults are "true".
	@mkdir -p .aws-sam
	sed -e '/^  SnapStart:$$/,/Default:/ s/Default: "false"/Default: "true"/' \
	    -e '/^  DetailedTracing:$$/,/Default:/ s/Default: "false"/Default: "true"/' template.yaml > $(TEMPLATE_ON)
	@test "$$(diff template.yaml $(TEMPLATE_ON) | grep -c '^> *Default: "true"')" = 2 || \
	  { echo "error: could not turn SnapStart and DetailedTracing on in $(TEMPLATE_ON)" >&2; exit 1; }
	$(SAM_BIN)/cfn-lint $(TEMPLATE_ON)
	$(SAM) validate --template-file $(TEMPLATE_ON) --region $(REGION)

.PHONY: scan
# checkov over the template as a platform team would run it: every finding is
# fixed, or skipped next to its resource (Metadata: checkov: skip) with a reason.
# The framework is pinned so that a new checkov default cannot change the scope.
scan: $(CHECKOV_STAMP) ## checkov over template.yaml (CloudFormation checks; skips live in the template)
	$(VENV_CHECKOV)/bin/checkov --quiet --compact --skip-download --framework cloudformation --file template.yaml

.PHONY: build
build: $(SAM_STAMP) ## sam build: functions and the arm64/cp313 layer, into .aws-sam/build
	$(require_python313)
	PATH="$(SAM_BUILD_PATH)" UV="$(SAM_BIN)/uv" $(SAM) build --template-file template.yaml --config-env $(ENV)
	@$(MAKE) check-layer

# Every wheel in the layer must run on Lambda's CPython 3.13 on arm64.
.PHONY: check-layer
check-layer: ## verify .aws-sam/build/CommonLayer holds only cp313/aarch64 or pure wheels
	@test -d $(LAYER_BUILD) || { echo "error: $(LAYER_BUILD) is missing (make build)" >&2; exit 1; }
	@bad=$$(sed -n 's/^Tag: //p' $(LAYER_BUILD)/*.dist-info/WHEEL | sort -u | \
	  grep -Ev '^py[23]-none-any$$|^cp313-cp313-manylinux[0-9_]*aarch64$$|^cp3[0-9]+-abi3-manylinux[0-9_]*aarch64$$' || true); \
	if [ -n "$$bad" ]; then echo "error: the layer holds wheels Lambda (cp313, arm64) cannot load:" $$bad >&2; exit 1; fi; \
	so=$$(find $(LAYER_BUILD) -name '*.so' | grep -Ev '(cpython-313-aarch64-linux-gnu|abi3)\.so$$' || true); \
	if [ -n "$$so" ]; then echo "error: foreign extension modules in the layer:" $$so >&2; exit 1; fi; \
	echo "layer OK: $$(ls -d $(LAYER_BUILD)/*.dist-info | wc -l) wheels, all cp313/aarch64 or pure"

.PHONY: deploy
deploy: build ## sam deploy with samconfig.toml's ENV profile (make deploy ENV=prod); needs AWS credentials
	$(SAM) deploy --config-env $(ENV)

# Re-resolve every pin. Existing pins are kept where they still fit; make lock
# UPGRADE=1 takes the newest versions. The layer is resolved for the Lambda
# runtime and constrained to the dev pins, so tests run what deploys.
UPGRADE ?=
UV_COMPILE = $(BIN)/uv pip compile --quiet --no-config --python-version 3.13 --custom-compile-command "make lock" \
             $(if $(UPGRADE),--upgrade)
.PHONY: lock
lock: $(DEV_STAMP) ## re-resolve requirements/*.txt and layers/common/requirements.txt with uv
	$(UV_COMPILE) requirements/dev.in -o requirements/dev.txt
	$(UV_COMPILE) requirements/sam.in -o requirements/sam.txt
	$(UV_COMPILE) requirements/checkov.in -o requirements/checkov.txt
	$(UV_COMPILE) requirements/docs.in -o requirements/docs.txt
	$(UV_COMPILE) --python-platform aarch64-manylinux2014 --constraint requirements/dev.txt \
	  --annotation-style line requirements/runtime.in -o layers/common/requirements.txt
	$(UV_COMPILE) --python-platform aarch64-manylinux2014 --constraint requirements/dev.txt \
	  --annotation-style line --no-annotate requirements/mcp.in -o functions/mcp/requirements.txt
	$(BIN)/python requirements/function_pins.py functions/mcp/requirements.txt layers/common/requirements.txt

.PHONY: bench
bench: $(DEV_STAMP) ## the benchmarks under bench/ (DESIGN.md section 7)
	$(BIN)/python -m bench

# The operator console (DESIGN.md section 12) for a deployed stack: console/
# served on 127.0.0.1:CONSOLE_PORT, each API call signed (SigV4) with your own
# AWS credentials (AWS_PROFILE, SSO, ...). Locally, `make run` serves it at /console/.
STACK ?=
CONSOLE_PORT ?= 8080
.PHONY: console
console: $(DEV_STAMP) ## the operator console for a deployed stack (STACK=<name>, AWS credentials; locally: make run, /console/)
	@test -n "$(STACK)" || { echo "error: give STACK=<stack name> (make console STACK=billing-prod)" >&2; exit 1; }
	$(BIN)/python -m devstack.console --stack "$(STACK)" --region "$(REGION)" --port $(CONSOLE_PORT)

# The documentation site (docs/, MkDocs with the Material theme). The API page
# is rendered from the OpenAPI document the stack serves (GET /v1/openapi.json),
# written to docs/api/openapi.json first from the same code.
DOCS_PORT ?= 8000
OPENAPI_DOC := docs/api/openapi.json
.PHONY: $(OPENAPI_DOC) docs docs-build
$(OPENAPI_DOC): $(DEV_STAMP)
	PYTHONPATH=layers/common $(BIN)/python -c 'from billing.api.app import openapi_json; print(openapi_json())' > $@
docs: $(DOCS_STAMP) $(OPENAPI_DOC) ## serve the documentation site on 127.0.0.1:DOCS_PORT (live reload)
	NO_MKDOCS_2_WARNING=1 $(VENV_DOCS)/bin/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)
docs-build: $(DOCS_STAMP) $(OPENAPI_DOC) ## build the documentation site in strict mode (a broken link or missing page fails)
	NO_MKDOCS_2_WARNING=1 $(VENV_DOCS)/bin/mkdocs build --strict --site-dir .site

# Like `stripe trigger`: a sample from events/webhooks/stripe/, fresh id and
# created, signed with STRIPE_WEBHOOK_SECRET, posted to the running stack;
# VIA=eventbridge delivers it through the Stripe partner event source instead.
EVENT ?= customer.updated
VIA ?= webhook
TRIGGER_ARGS ?=
.PHONY: trigger
trigger: $(DEV_STAMP) ## send a sample Stripe event to `make run` (EVENT=customer.updated VIA=webhook|eventbridge TRIGGER_ARGS="--set ...")
	$(BIN)/python -m devstack.trigger $(EVENT) --via $(VIA) $(TRIGGER_ARGS)

# Import the Stripe account into the running `make run` stack (DESIGN.md section 8),
# with a progress bar per object type; e.g. BACKFILL_ARGS="--types customer payment_method".
BACKFILL_ARGS ?=
.PHONY: backfill
backfill: $(DEV_STAMP) ## import the Stripe account into `make run` (resumable; BACKFILL_ARGS="--types ... | --watch ID | --resume ID")
	$(BIN)/python -m devstack.backfill $(BACKFILL_ARGS)

.PHONY: clean distclean
clean: ## build output and tool caches
	rm -rf .aws-sam .site .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -path ./$(VENV_SAM) -prune -o -path ./$(VENV_CHECKOV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
distclean: clean ## clean, and the three virtual environments
	rm -rf $(VENV) $(VENV_SAM) $(VENV_CHECKOV) $(VENV_DOCS)
