#!/usr/bin/env bash
# Makes a fresh Debian 12 machine (as root) ready to build, test and run sdn.
# Idempotent: every step checks before it acts, so a second run changes nothing
# and returns in a few seconds.
set -euo pipefail

LLVM_MAJOR=22
PACKAGES=(
  # build
  build-essential pkg-config protobuf-compiler libprotobuf-dev libnftnl-dev libmnl-dev
  "llvm-${LLVM_MAJOR}-dev" "libpolly-${LLVM_MAJOR}-dev" libzstd-dev zlib1g-dev
  # runtime and test parts
  etcd-server etcd-client nftables iproute2 iputils-ping bpftool tcpdump
  iperf3 sockperf dnsutils dnsperf knot nsd hyperfine containernetworking-plugins
  # the reference plugin portmap, chained in the CNI tests, drives iptables
  iptables
  # the container runtimes the runtime tests drive (podman's CNI backend, containerd's ctr),
  # runc for both (crun refuses this machine kind's cgroup layout), and the static busybox
  # their test image is made of
  podman runc containerd busybox-static
  procps psmisc curl jq
  # make lint checks the shell scripts too
  shellcheck
)

log() { printf 'setup: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: must run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps package scripts from starting etcd/knot/nsd as system
  # services: tests start their own instances on their own ports.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "Debian packages present"
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustup >/dev/null; then
  echo "setup: rustup not found; this machine kind ships Rust through rustup" >&2
  exit 1
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  log "installing nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
  log "adding rust-src to nightly"
  rustup component add rust-src --toolchain nightly
fi
# `make lint` checks the eBPF crates too, which only nightly builds.
for component in clippy rustfmt; do
  if ! rustup component list --toolchain nightly --installed | grep -q "^$component"; then
    log "adding $component to nightly"
    rustup component add "$component" --toolchain nightly
  fi
done
if ! command -v bpf-linker >/dev/null; then
  log "building bpf-linker against LLVM ${LLVM_MAJOR} (about a minute)"
  LLVM_PREFIX="/usr/lib/llvm-${LLVM_MAJOR}" LLVM_SYS_221_PREFIX="/usr/lib/llvm-${LLVM_MAJOR}" \
    cargo install --locked bpf-linker --no-default-features --features "llvm-${LLVM_MAJOR}"
else
  log "bpf-linker present"
fi
log "ready"
