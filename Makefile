# crypto-risk-anomaly: an SQS-triggered Lambda function that flags IQR anomalies in coin risk scores.
# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the pinned requirements when they are missing or changed.
# `make package` also needs Node.js (npm): it installs the pinned Serverless Framework with npm ci,
# packages serverless.yml offline, lints the CloudFormation and checks it (docs/deploy.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
SLS := deploy/sls
TEMPLATE := .serverless/cloudformation-template-update-stack.json
PARAMS_FILE := deploy/ci.params

.PHONY: demo test unit lint typecheck bench venv node package clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
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
	$(PY) -m pytest -q tests/unit tests/test_model.py

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

# Performance figures (a few minutes): prints a table, writes bench/results.json.
bench: $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis out .serverless .cache node_modules
