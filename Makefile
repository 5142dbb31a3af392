# cockpit-agent developer targets. `make test` is the README's test command and what CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: test unit integration lint bench venv

test: lint unit integration

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,systemd]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check agent tests
	$(VENV)/bin/ruff format --check agent tests
	$(VENV)/bin/mypy

unit: venv
	$(PYTEST) tests/unit

# Needs root: loop devices, network namespaces, systemd-analyze.
integration: venv
	$(PYTEST) tests/integration

# cloud-init is the yardstick; /etc/cloud/cloud-init.disabled keeps it from ever acting here.
bench: venv
	@command -v cloud-init >/dev/null || { mkdir -p /etc/cloud && touch /etc/cloud/cloud-init.disabled && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cloud-init; }
	@test -x /usr/bin/time || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time
	$(PY) bench/run.py
