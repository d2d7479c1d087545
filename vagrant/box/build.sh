#!/usr/bin/env bash
# Builds the lab's Vagrant box from Debian packages, for the libvirt provider:
# a Debian 12 root file system (mmdebstrap) with what a lab VM runs (etcd,
# nftables, iproute2, the tools the check uses), written into an ext4 image
# without a partition table and converted to qcow2. The box boots its kernel
# directly (libvirt's <kernel>/<initrd>), so it needs no boot loader, and no
# loop device or mount is made on this machine to build it.
#
#   build.sh OUT_DIR
#
# Writes OUT_DIR/sdn-bookworm.box (the box), OUT_DIR/vmlinuz and
# OUT_DIR/initrd.img (the same kernel, for the KVM probe), and
# OUT_DIR/stamp, the hash of this directory's files it was built from: a
# second run with the same files returns at once.
set -euo pipefail

out=${1:?usage: build.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
suite=bookworm
# Sparse: the qcow2 holds only what the root file system uses.
disk_size_gib=8

log() { printf 'vagrant-box: %s\n' "$*"; }
die() {
  printf 'vagrant-box: %s\n' "$*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap's root mode)"
for tool in mmdebstrap mke2fs qemu-img tar; do
  command -v "$tool" >/dev/null || die "$tool is missing; run scripts/vagrant-setup.sh"
done

stamp=$(cat "$here"/* | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/sdn-bookworm.box" ]; then
  log "box up to date: $out/sdn-bookworm.box"
  exit 0
fi

# The key every Vagrant box carries for the first login; Vagrant replaces it
# with a key of its own on the first `vagrant up`.
insecure_key=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -n1)
[ -n "$insecure_key" ] || die "Vagrant's insecure public key is missing; install Debian's vagrant (scripts/vagrant-setup.sh)"

work=$(mktemp -d "${TMPDIR:-/tmp}/sdn-vagrant-box.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

packages=(
  # boot, log in, become root
  linux-image-amd64 systemd-sysv udev kmod dbus openssh-server sudo
  # the network Vagrant configures (ifupdown is what its Debian guest writes)
  ifupdown isc-dhcp-client iproute2 netbase
  # what the lab's nodes run and what the check drives
  etcd-server etcd-client nftables iputils-ping curl ca-certificates dnsutils busybox-static procps
)
include=$(IFS=,; echo "${packages[*]}")

log "building a Debian $suite root file system (mmdebstrap)"
mmdebstrap --variant=minbase --include="$include" \
  --customize-hook="cp '$insecure_key' \"\$1/tmp/vagrant.pub\"" \
  --customize-hook="chroot \"\$1\" sh -s < '$here/customize.sh'" \
  "$suite" "$rootfs"

cp "$rootfs"/boot/vmlinuz-* "$work/vmlinuz"
cp "$rootfs"/boot/initrd.img-* "$work/initrd.img"

log "writing the ext4 image"
mke2fs -q -t ext4 -L sdn-root -d "$rootfs" "$work/root.raw" "${disk_size_gib}G"
qemu-img convert -f raw -O qcow2 "$work/root.raw" "$work/box.img"
rm "$work/root.raw"

cat >"$work/metadata.json" <<JSON
{"provider": "libvirt", "format": "qcow2", "virtual_size": $disk_size_gib}
JSON
cp "$here/Vagrantfile" "$work/Vagrantfile"

log "packing the box"
mkdir -p "$out"
tar -C "$work" -cf "$out/sdn-bookworm.box.tmp" metadata.json Vagrantfile box.img vmlinuz initrd.img
mv "$work/vmlinuz" "$work/initrd.img" "$out/"
mv "$out/sdn-bookworm.box.tmp" "$out/sdn-bookworm.box"
printf '%s\n' "$stamp" >"$out/stamp"
log "built $out/sdn-bookworm.box ($(du -h "$out/sdn-bookworm.box" | cut -f1))"
