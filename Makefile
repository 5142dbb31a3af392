# cockpit-agent developer targets. `make test` is the README's test command and what CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

DEPS := tests/install-deps.sh

.PHONY: test unit integration lint bench bench-lab venv deps validate tools

# On a fresh Debian 12 machine this is all there is to do: it installs what it needs first.
test: deps lint unit integration validate e2e-ci

# Every host package the targets below use (apt, only what is missing; tests/install-deps.sh).
deps:
	@$(DEPS) venv integration lab browser package deploy e2e

$(VENV)/.installed: pyproject.toml
	@$(DEPS) venv
	@echo "python environment: $(VENV) (pip log: $(VENV)/install.log)"
	@python3 -m venv $(VENV)
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install -e '.[dev,systemd]'; } \
		>$(VENV)/install.log 2>&1 || { tail -n 30 $(VENV)/install.log; \
		echo "pip install failed; full log: $(VENV)/install.log"; exit 1; }
	@touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check agent tests lab bench packaging
	$(VENV)/bin/ruff format --check agent tests lab bench packaging
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/mypy --strict tests lab/cockpit_lab bench
	$(VENV)/bin/mypy --strict packaging/make_packages.py packaging/example_config.py

unit: venv
	$(PYTEST) tests/unit

# Needs root: loop devices, network namespaces, systemd-analyze. A tool missing here fails
# the test instead of skipping it (COCKPIT_TEST_REQUIRE_TOOLS), so this proves what CI does.
integration: venv tools
	@$(DEPS) integration deploy
	COCKPIT_TEST_REQUIRE_TOOLS=1 $(PYTEST) tests/integration

# cloud-init is the yardstick; /etc/cloud/cloud-init.disabled keeps it from ever acting here.
bench: venv
	@command -v cloud-init >/dev/null || { mkdir -p /etc/cloud && touch /etc/cloud/cloud-init.disabled && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cloud-init; }
	@test -x /usr/bin/time || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time
	$(PY) bench/run.py

# In the lab (one guest at a time): the storage step's time to a mounted array, 3 x 256 MiB
# against 3 x 4 GiB drives; `check` against `cloud-init status` in a converged guest.
bench-lab: venv lab-deps
	flock /tmp/cockpit-lab-vm.lock $(PY) bench/lab.py

# --- the QEMU lab (lab/, tests/e2e, docs/testing.md); needs root ---
LAB := PYTHONPATH=lab $(PY) -m cockpit_lab

.PHONY: lab-deps lab-image e2e e2e-ci demo

# Host packages of the lab (QEMU, debootstrap, ...); does nothing when they are there.
lab-deps:
	@$(DEPS) lab

# Build (or reuse) the cached lab images (base, stock, lvm) under
# /var/cache/cockpit-agent-lab/<recipe hash>/.
lab-image: venv lab-deps
	$(LAB) build base stock lvm

# Boot the lab, run the agent at boot, check it (tests/e2e). A failing test keeps its run
# directory under runs/ and says where.
e2e: venv lab-image tools
	@$(DEPS) browser e2e
	COCKPIT_TEST_REQUIRE_TOOLS=1 $(PYTEST) --durations=30 $(E2E_CI) tests/e2e

# What `make test` (and so CI) runs of the lab, one guest at a time: the main instance on the
# stock-AMI image (cloud-init, netplan, the agent's .deb and the virtualisation stack baked in
# by packaging/ami/bake.sh), shared by its modules in this order: the first boot and Cockpit
# in a browser, check with drift and repair; a VM created without a network on the LNI; the
# fleet playbook upgrading the agent; node_exporter and a plugin executor reading check; a kill
# at every storage, LNI and libvirt network action, an LNI without DHCP rolled back; a reboot
# and a failed member; what docs/backup.md and security.md claim (a VM disk backed up and
# restored, a real certificate, Cockpit on the bridge only). Then the LVM root under
# NetworkManager with the LNI unplugged at first boot. `make e2e` runs these in the same order (the shared
# instance needs it), then the other modules and the scenarios marked `extended`
# (docs/testing.md).
E2E_CI := tests/e2e/test_lab.py tests/e2e/test_vm_on_lni.py tests/e2e/test_ansible.py \
	tests/e2e/test_monitoring.py tests/e2e/test_crash.py tests/e2e/test_reboot.py \
	tests/e2e/test_docs_claims.py tests/e2e/test_lvm_nm.py
e2e-ci: venv lab-deps tools
	@$(DEPS) browser e2e
	$(LAB) build stock lvm
	COCKPIT_TEST_REQUIRE_TOOLS=1 $(PYTEST) -m "not extended" --durations=30 $(E2E_CI)

# Boot the stock-AMI image (cloud-init, Cockpit and libvirt baked in); print status, SSH and
# Cockpit.
demo: venv lab-deps
	$(LAB) demo

# --- the .deb and the .rpm (packaging/README.md) ---
.PHONY: package package-lock example-config

PKG_RELEASE ?= 1
PKG_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
PKG_DEB := dist/cockpit-agent_$(PKG_VERSION)-$(PKG_RELEASE)_amd64.deb
PKG_RPM := dist/cockpit-agent-$(PKG_VERSION)-$(PKG_RELEASE).x86_64.rpm
PKG_INPUTS := pyproject.toml README.md LICENSE $(shell find agent systemd docs packaging -type f \
	-not -path '*/__pycache__/*' -not -path '*.egg-info/*')

# Both packages from this checkout into dist/ (PKG_RELEASE=2 for a second build of a version,
# PKG_MAINTAINER='Name <email>' for its maintainer); nothing is rebuilt when no input changed.
# Prints the two paths.
package: $(PKG_DEB) $(PKG_RPM)
	@echo $(abspath $(PKG_DEB))
	@echo $(abspath $(PKG_RPM))

$(PKG_DEB) $(PKG_RPM) &: $(PKG_INPUTS) | venv
	@$(DEPS) package
	$(PY) packaging/make_packages.py --release $(PKG_RELEASE) \
		$(if $(PKG_MAINTAINER),--maintainer '$(PKG_MAINTAINER)') >/dev/null

# Re-pin the Python libraries the packages carry (packaging/python-deps.txt) to today's PyPI.
package-lock: venv
	$(PY) packaging/make_packages.py lock

# The example /etc/cockpit-agent/config.toml, from the configuration's schema.
example-config: venv
	$(VENV)/bin/cockpit-agent config schema | $(PY) packaging/example_config.py > packaging/config.toml

# --- deployment: packaging/ami (bake, Packer, Image Builder), cloudformation, ansible ---
# The validators from PyPI live in their own venv (their pins conflict with the agent's);
# it is rebuilt only when packaging/tools-requirements.txt changes.
TOOLS ?= .tools
$(TOOLS)/.installed: packaging/tools-requirements.txt
	@$(DEPS) venv
	@echo "validators' environment: $(TOOLS) (pip log: $(TOOLS)/install.log)"
	@python3 -m venv $(TOOLS)
	@{ $(TOOLS)/bin/pip install --upgrade pip && $(TOOLS)/bin/pip install -r $<; } \
		>$(TOOLS)/install.log 2>&1 || { tail -n 30 $(TOOLS)/install.log; \
		echo "pip install failed; full log: $(TOOLS)/install.log"; exit 1; }
	@touch $@

tools: $(TOOLS)/.installed

# Offline, without AWS credentials: each validator of each artifact (docs/deploy.md).
NO_AWS := env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
	CHECKPOINT_DISABLE=1
validate: tools
	@$(DEPS) deploy
	shellcheck packaging/ami/bake.sh
	packer fmt -check packaging/ami/cockpit-agent.pkr.hcl
	@dir=$$(mktemp -d) && trap 'rmdir "$$dir"' EXIT && set -x && \
		$(NO_AWS) packer validate -var region=validate-only -var package_dir=$$dir \
		packaging/ami/cockpit-agent.pkr.hcl
	$(TOOLS)/bin/cfn-lint packaging/cloudformation/*.yaml
	$(NO_AWS) $(TOOLS)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		-d packaging/cloudformation
	cd packaging/ansible && PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" ansible-lint --offline
	cd packaging/ansible && ../../$(TOOLS)/bin/ansible-playbook --syntax-check \
		-i inventory.example.ini site.yml
