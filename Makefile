# vxvdex: `make test` and `make demo` work on a fresh Debian 12 machine as
# root; each installs what it needs (apt packages, a virtualenv), idempotently.

SHELL := /bin/bash
PYTHON := /usr/bin/python3
VENV := .venv
VPY := $(VENV)/bin/python
# udhcpc (the VLANs' DHCP client, busybox's) has that name on Debian 12 and 13 alike.
APT_PACKAGES := python3-venv python3-dev iproute2 iputils-ping vdeplug iperf3 tcpdump nftables \
	gcc make pkg-config libpam0g-dev pamtester openssh-server openssh-client util-linux procps \
	login libvdeplug-dev udhcpc dnsmasq-base
PYTEST ?= $(VPY) -m pytest
DEB_OUT ?= dist
# On a fresh machine unattended-upgrades (or another apt) may hold the dpkg
# lock: every apt-get under make waits for it (the tiers' scripts too).
export APT_CONFIG := $(CURDIR)/tests/apt.conf
# Tests run commands as other users (nobody, the endpoint user, test users).
# From a checkout they cannot reach (a clone in root's 0700 home) `make test`
# tests a copy in a 0755 directory, kept between runs for its virtualenv.
STAGE := /var/tmp/vxvdex-stage/$(notdir $(CURDIR))-$(shell echo '$(CURDIR)' | md5sum | cut -c1-8)
REACHABLE := setpriv --reuid=65534 --regid=65534 --clear-groups test -r $(CURDIR)/Makefile

.PHONY: all deps apt venv lint pam deb test test-here test-host stage test-unit test-netns test-kernel demo bench clean

all: test

deps: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

lint: venv
	$(VENV)/bin/ruff check vxvdex tests bench/dataplane bench/provision bench/login bench/pyfloor bench/dhcp-clients
	$(VENV)/bin/mypy vxvdex

test-unit: venv
	$(PYTEST) -q tests/unit

test-netns: deps
	$(PYTEST) -q tests/netns

test-kernel: deps
	tests/kernel/run

test:
	@if $(REACHABLE) 2>/dev/null; then $(MAKE) --no-print-directory test-here; else \
		echo "$(CURDIR) is private (other users cannot reach it): testing a copy in $(STAGE)"; \
		$(MAKE) --no-print-directory stage && $(MAKE) --no-print-directory -C $(STAGE) test-here; fi

# The tree as git would see it, readable by all; the copy's .venv is kept.
stage:
	@install -d -m 0755 $(dir $(STAGE)) $(STAGE)
	@find $(STAGE) -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
	@tar -C $(CURDIR) --exclude=./.git --exclude=./.venv --exclude=./dist --exclude='*_cache' \
		--mode=u+rwX,go+rX -cf - . | tar -C $(STAGE) -xf -

test-here: test-host
	time tests/kernel/run
	time tests/packaging/run

# lint, the unit, netns and PAM tiers (the host side of `make test`). Each
# tier fails if a namespace of its own run is left (tests/netns/conftest.py,
# tests/pam/conftest.py): counting every vxt*/vxp* namespace of the machine
# failed whenever another run was going on at the same time.
test-host: deps lint pam
	time $(PYTEST) tests/unit tests/netns tests/pam

deb:
	packaging/build-deb $(DEB_OUT)

pam:
	$(MAKE) -C pam_module all check

demo: deps
	$(VPY) tests/demo.py

bench: deps pam
	$(VPY) bench/dataplane
	$(VPY) bench/provision
	$(VPY) bench/login

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache
