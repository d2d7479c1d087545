# The two commands of the README are `make lab` and `make test`; both run
# the idempotent install step first (a second run takes a second or two).
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo

.PHONY: setup build lint test lab lab-down vagrant-setup vagrant-box vagrant-up vagrant-check vagrant-down test-vagrant bench bench-master bench-dataplane bench-cni bench-dns bench-services bench-scale fuzz-dns

setup:
	bash scripts/setup.sh

build: setup
	$(CARGO) build --workspace --bins

lint: setup
	shellcheck -S warning scripts/*.sh vagrant/*.sh vagrant/box/*.sh .ci/run
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd ebpf && rustup run nightly cargo fmt --all -- --check
	cd ebpf && rustup run nightly cargo clippy --release -Z build-std=core --target bpfel-unknown-none -- -D warnings

# Every test: style, unit tests of the pure cores, integration tests against
# real etcd and master processes, and last the Vagrant lab.
test: lint build fuzz-dns
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) test-vagrant

# The DNS query path under libFuzzer for a bounded time (FUZZ_SECONDS, default 60).
fuzz-dns: setup
	bash scripts/fuzz-dns.sh

lab: build
	target/debug/sdn-lab up

lab-down:
	@if [ -x target/debug/sdn-lab ]; then target/debug/sdn-lab down; else echo "no lab binary: nothing to stop"; fi

# The Vagrant lab: a master and two nodes as libvirt VMs, inside network namespace
# sdn-vagrant, from a box built here from Debian packages and the binaries built here.
# See vagrant/README.md.
vagrant-setup: setup
	bash scripts/vagrant-setup.sh

vagrant-box: vagrant-setup
	bash vagrant/lab.sh box

vagrant-up: vagrant-setup
	$(CARGO) build --release --workspace --bins
	bash vagrant/lab.sh up

vagrant-check:
	bash vagrant/lab.sh check

vagrant-down:
	bash vagrant/lab.sh down

# Up, check and down, with a "N passed, N failed" line.
test-vagrant: vagrant-setup
	$(CARGO) build --release --workspace --bins
	bash vagrant/lab.sh test

bench: bench-master bench-dataplane bench-cni bench-dns bench-services bench-scale

bench-master: setup
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p sdn-tests --bench master_alloc

# Pod-to-pod TCP throughput and latency through the eBPF dataplane against
# kernel-only references (flannel's vxlan and host-gw shapes, a plain
# bridge) built in the same run. Needs root, iperf3 and sockperf.
bench-dataplane: setup
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p sdn-tests --bench dataplane

# CNI ADD and DEL latency of sdn-cni against the reference plugins bridge +
# host-local, driven the same way in the same run.
bench-cni: setup
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p sdn-tests --bench cni

# Cluster DNS queries per second (dnsperf) with 10,000 services and 50,000
# endpoints against Knot DNS serving the same names, and the agent's memory.
bench-dns: setup
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p sdn-tests --bench dns

# Connections through a cluster IP with 10,000 services loaded, against the pod IP directly and
# kube-proxy's nftables shape, and how soon an endpoints change is in use.
bench-services: setup
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p sdn-tests --bench services

# The control plane with 1,000 simulated agents (the agent's own registry, route, service and
# DNS code, maps in memory) against a three-member etcd cluster, beside as many bare etcd
# watches. SDN_SCALE_NODES, SDN_SCALE_CHANGES change the sizes.
bench-scale: setup
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p sdn-tests --bench scale
