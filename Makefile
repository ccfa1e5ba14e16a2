# The two commands of the README: `make demo` and `make test`. Both install what they need into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NATIVE_SRC := $(shell find native -path native/target -prune -o \( -name '*.rs' -o -name 'Cargo.toml' -o -name 'Cargo.lock' \) -print 2>/dev/null)
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-native test-python bench lint clean k8s image cluster cluster-down

setup: $(STAMP)

$(STAMP): pyproject.toml operator/pyproject.toml $(NATIVE_SRC)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >&2
	@echo 'installing .[test] (with the native build) into $(VENV)' >&2
	@$(PY) -m pip install -q -e '.[test]' >&2
	@$(PY) -m pip install -q -e ./operator >&2
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/agentctl demo

test: setup test-native test-python

test-native:
	cargo test -q --manifest-path native/Cargo.toml -p agent-native-core

test-python: setup k8s
	$(PY) -m pytest

# kube-apiserver + etcd + kubectl for tests/e2e, built once from the Go module proxy (~6 min on 2 cores)
# and cached under ~/.cache/agent-runtime/k8s/ (scripts/k8s/build.sh).
k8s:
	@bash scripts/k8s/build.sh >/dev/null

# The image (operator, router, shards), built with no network inside the build: a Debian base from
# debootstrap, wheels built on the host, `podman build --network none`; cached by the inputs' hash
# (scripts/image/build.sh). Prints the image name.
image:
	@bash scripts/cluster/deps.sh
	@bash scripts/image/build.sh

# A real single-node cluster on this machine (root): kubelet, containerd, CNI, CoreDNS, Traefik, the
# chart with the local image; prints how to attach. `cluster-down` stops it and restores the machine
# (sysctls, iptables, links, mounts). See docs/cluster.md.
cluster:
	@bash scripts/cluster/up.sh

cluster-down:
	@bash scripts/cluster/down.sh

# Every benchmark prints one JSON document; files starting with _ are their helpers.
bench: setup
	@set -e; for b in bench/[!_]*.py; do echo "== $$b" >&2; $(PY) $$b; done

lint: setup
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) native/target
