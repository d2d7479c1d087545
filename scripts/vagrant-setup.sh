#!/usr/bin/env bash
# Makes this machine ready for the Vagrant lab (make vagrant-box, vagrant-up,
# test-vagrant), on top of scripts/setup.sh: Debian's vagrant and
# vagrant-libvirt, libvirt's daemon and QEMU driver without their system
# services (the lab starts its own libvirtd inside a network namespace),
# QEMU, and mmdebstrap to build the box. Idempotent, like setup.sh.
set -euo pipefail

PACKAGES=(
  vagrant vagrant-libvirt
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients dnsmasq-base
  mmdebstrap e2fsprogs openssh-client openssl binutils
)

log() { printf 'vagrant-setup: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "vagrant-setup: must run as root (it installs Debian packages)" >&2
  exit 1
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
version_of() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done
# qemu-utils may come from bookworm-backports (this machine kind ships it so),
# and a newer qemu-utils breaks Debian 12's qemu-system-x86: both, with the
# block drivers, must be of one QEMU release.
qemu_ok=false
if installed qemu-system-x86 && [ "$(version_of qemu-utils)" = "$(version_of qemu-system-x86)" ]; then
  qemu_ok=true
fi
if [ "${#missing[@]}" -gt 0 ] || ! $qemu_ok; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
fi
if ! $qemu_ok; then
  qemu=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  if [ -z "$qemu" ] || [ "$qemu" = "(none)" ]; then
    echo "vagrant-setup: no qemu-system-x86 package in this machine's apt sources" >&2
    exit 1
  fi
  log "installing QEMU $qemu (qemu-system-x86 with qemu-utils of the same release)"
  apt-get install -y -qq --no-install-recommends --allow-downgrades \
    "qemu-system-x86=$qemu" "qemu-utils=$qemu" "qemu-block-extra=$qemu"
fi
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
$qemu_ok && [ "${#missing[@]}" -eq 0 ] && log "Debian packages present"

# What libvirt-daemon-system would have made: the user QEMU runs as and the
# directory libvirtd logs to.
getent group kvm >/dev/null || groupadd --system kvm
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
if ! getent passwd libvirt-qemu >/dev/null; then
  log "adding the libvirt-qemu user"
  useradd --system --gid kvm --groups libvirt-qemu --home-dir /var/lib/libvirt \
    --no-create-home --shell /usr/sbin/nologin libvirt-qemu
fi
mkdir -p /var/log/libvirt/qemu /var/lib/libvirt
log "ready"
