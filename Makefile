# crypto-risk-anomaly: an SQS-triggered Lambda function that flags IQR anomalies in coin risk scores.
# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the locked requirements (requirements-dev.txt, hashed) when they
# are missing or changed. `make package` also needs Node.js (npm): it installs the pinned osls
# (the Serverless Framework) with npm ci, packages serverless.yml offline, lints the CloudFormation
# and checks it (docs/deploy.md).
#
# The Lambda runs the Python of serverless.yml's `runtime` (3.13): .venv is made with that version
# when deploy/find-python finds one (on PATH or under pyenv), so the tests run what is deployed.
# Where there is none, make warns and uses python3 (3.11 or newer): the demo and the tests still run.
LAMBDA_PYTHON := $(shell sed -n 's/^  runtime: python\([0-9][0-9.]*\)[[:space:]]*$$/\1/p' serverless.yml)
ifndef PYTHON
PYTHON := $(shell deploy/find-python $(LAMBDA_PYTHON))
ifeq ($(PYTHON),)
PYTHON := python3
$(warning make: no Python $(LAMBDA_PYTHON) (the Lambda's runtime) found: using python3, $(shell python3 -V 2>&1); the tests run, but not on the deployed version (docs/testing.md))
else
$(info make: Python $(LAMBDA_PYTHON), the Lambda's runtime: $(PYTHON))
endif
endif
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV := .venv
PY := $(VENV)/bin/python
# One stamp per Python version: changing interpreter rebuilds .venv.
STAMP := $(VENV)/.installed-$(PYTHON_VERSION)
NODE_STAMP := node_modules/.installed
SLS := deploy/sls
TEMPLATE := .serverless/cloudformation-template-update-stack.json
PARAMS_FILE := deploy/ci.params
PIP := $(PY) -m pip --disable-pip-version-check
# The two locks: one universal resolution for every Python from 3.11 (the oldest make accepts) up,
# so the same pins serve the Lambda's 3.13 and a machine with only 3.11 (docs/deploy.md).
LOCK := $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock"

.PHONY: demo test unit lint typecheck bench venv node package lock clean

$(STAMP): requirements-dev.txt requirements.txt
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYTHON_VERSION)" ]; then \
		echo "make: $(VENV) runs another Python: making it anew with $(PYTHON)"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --require-hashes -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	NPM_CONFIG_UPDATE_NOTIFIER=false npm ci --no-audit --no-fund --loglevel=error --cache $(CURDIR)/.cache/npm
	touch $(NODE_STAMP)

node: $(NODE_STAMP)

demo: $(STAMP)
	MONGODB_URI=mongomock:// $(PY) -m libs.cli demo

test: $(STAMP)
	$(PY) -m pytest

# The fast layer people run while they work: pure unit tests and the model's own file (seconds).
unit: $(STAMP)
	PROPERTY_EXAMPLES=quick $(PY) -m pytest -q tests/unit tests/test_model.py

# Static checks (config in pyproject.toml): ruff lint and format over the tree, mypy over handler.py and libs/.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# serverless package with the params of $(PARAMS_FILE) (one NAME=value a line, passed verbatim),
# then cfn-lint, the size report and the template's tests, which must not skip here.
package: $(STAMP) $(NODE_STAMP)
	rm -rf .serverless
	grep -Ev '^[[:space:]]*(#|$$)' $(PARAMS_FILE) | sed 's/^/--param=/' | xargs -d '\n' $(SLS) package
	$(VENV)/bin/cfn-lint $(TEMPLATE)
	$(PY) deploy/package_size.py
	REQUIRE_PACKAGED_TEMPLATE=1 $(PY) -m pytest tests/infrastructure/test_serverless_template.py

# Re-resolve both locks from requirements.in / requirements-dev.in (the function's first: the dev
# lock is constrained to it). Keeps every pin it can; to move one: `make lock UPGRADE="-P NAME"`,
# or UPGRADE=--upgrade for all (docs/deploy.md "Locked dependencies").
lock: $(STAMP)
	$(LOCK) $(UPGRADE) requirements.in -o requirements.txt
	$(LOCK) $(UPGRADE) requirements-dev.in -o requirements-dev.txt

# Performance figures (a few minutes): prints a table, writes bench/results.json.
bench: $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis out .serverless .cache node_modules
