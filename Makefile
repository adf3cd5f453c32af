# vxvdex: `make test` and `make demo` work on a fresh Debian 12 machine as
# root; each installs what it needs (apt packages, a virtualenv), idempotently.

SHELL := /bin/bash
PYTHON := /usr/bin/python3
VENV := .venv
VPY := $(VENV)/bin/python
APT_PACKAGES := python3-venv python3-dev iproute2 iputils-ping vdeplug iperf3 tcpdump nftables \
	gcc make pkg-config libpam0g-dev pamtester openssh-server openssh-client util-linux procps \
	login libvdeplug-dev
PYTEST ?= $(VPY) -m pytest
DEB_OUT ?= dist

.PHONY: all deps apt venv lint pam deb test test-unit test-netns test-kernel demo bench clean

all: test

deps: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

lint: venv
	$(VENV)/bin/ruff check vxvdex tests bench/dataplane bench/provision bench/login bench/pyfloor
	$(VENV)/bin/mypy vxvdex

test-unit: venv
	$(PYTEST) -q tests/unit

test-netns: deps
	$(PYTEST) -q tests/netns

test-kernel: deps
	tests/kernel/run

test: deps lint pam
	$(PYTEST) tests/unit tests/netns tests/pam
	@left=$$(ip netns list | grep -c '^vx[tp]' || true); \
	if [ "$$left" != 0 ]; then echo "FAIL: $$left test namespaces left behind"; exit 1; fi
	tests/kernel/run
	tests/packaging/run

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
