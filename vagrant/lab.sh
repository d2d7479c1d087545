#!/usr/bin/env bash
# The Vagrant lab, driven from the host (see README.md beside this file):
#
#   lab.sh box     build the box from Debian packages, once (cached)
#   lab.sh stage   stage the host's binaries and the lab's certificates only
#                  (for running Vagrant by hand, see README.md)
#   lab.sh up      box, stage the host's binaries and the lab's certificates,
#                  start libvirtd in the lab's network namespace, vagrant up
#   lab.sh check   check the running lab from outside the VMs
#   lab.sh down    destroy the VMs, stop libvirtd, remove the namespace
#   lab.sh test    up, check and down; prints "N passed, N failed"
#
# Every VM network lives in the network namespace SDN_VAGRANT_NETNS
# (sdn-vagrant): libvirtd, and so QEMU and the networks' bridges and dnsmasq,
# run inside it, as does Vagrant, which reaches the VMs from there. Nothing
# in the machine's own network namespace changes, and the namespace has no
# way out, so no VM traffic leaves it.
#
# SDN_VAGRANT_DIR (/var/lib/sdn-vagrant) keeps the box, Vagrant's state, the
# VMs' disks and consoles, and the lab's CA, certificates and admin token.
# SDN_NODES (2) nodes beside the master. Needs root, scripts/setup.sh and
# scripts/vagrant-setup.sh, and the release binaries (the Makefile's
# vagrant-* targets see to all three).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
STATE=${SDN_VAGRANT_DIR:-/var/lib/sdn-vagrant}
NS=${SDN_VAGRANT_NETNS:-sdn-vagrant}
NODES=${SDN_NODES:-2}
MASTER_IP=192.168.56.10
API=https://$MASTER_IP:8440
BOX_NAME=sdn/bookworm
POOL=sdn-vagrant

export SDN_VAGRANT_DIR=$STATE SDN_NODES=$NODES
export VAGRANT_HOME=$STATE/vagrant.d VAGRANT_DOTFILE_PATH=$STATE/dot VAGRANT_CWD=$here
export VAGRANT_DEFAULT_PROVIDER=libvirt VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
export LIBVIRT_DEFAULT_URI=qemu:///system

log() { printf 'vagrant-lab: %s\n' "$*"; }
die() {
  printf 'vagrant-lab: %s\n' "$*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, libvirtd)"
case $NODES in
  '' | *[!0-9]*) die "SDN_NODES must be a whole number from 1 to 244, not '$NODES'" ;;
esac
[ "$NODES" -ge 1 ] && [ "$NODES" -le 244 ] || die "SDN_NODES must be a whole number from 1 to 244, not $NODES"
case $NS in
  '' | *[!a-zA-Z0-9_-]*) die "SDN_VAGRANT_NETNS must be a plain name, not '$NS'" ;;
esac

in_ns() { ip netns exec "$NS" "$@"; }
nodes() { seq -f 'node%g' 1 "$NODES"; }
node_ip() { printf '192.168.56.%d' $((10 + ${1#node})); }

cmd_box() {
  bash "$here/box/build.sh" "$STATE/box"
}

# --- the lab's CA, certificates and token (made once, kept across ups) ---

# cert NAME SUBJECT EXTENSIONS: a key and a certificate signed by the lab's CA.
cert() {
  local name=$1 subject=$2 ext=$3 dir=$STATE/pki
  [ -s "$dir/$name.pem" ] && return
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subject" \
    -keyout "$dir/$name-key.pem" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -days 825 \
    -out "$dir/$name.pem" -extfile <(printf '%s\n' "$ext") 2>/dev/null
  rm "$dir/$name.csr"
}

make_pki() {
  local dir=$STATE/pki n
  (umask 077 && mkdir -p "$dir")
  if [ ! -s "$dir/ca.pem" ]; then
    log "making the lab's certificate authority ($dir)"
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj /CN=sdn-vagrant-ca -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null)
  fi
  (
    umask 077
    cert etcd /CN=etcd "$(printf 'subjectAltName=IP:%s,IP:127.0.0.1,DNS:master\nextendedKeyUsage=serverAuth' "$MASTER_IP")"
    cert api /CN=sdn-master "$(printf 'subjectAltName=IP:%s,IP:127.0.0.1,DNS:master\nextendedKeyUsage=serverAuth' "$MASTER_IP")"
    cert root /CN=root extendedKeyUsage=clientAuth
    for n in $(nodes); do cert "$n" "/CN=$n" extendedKeyUsage=clientAuth; done
    [ -s "$STATE/token" ] || head -c 32 /dev/urandom | base64 >"$STATE/token"
  )
}

# --- what each VM gets: the host's binaries and its own certificates ---

stage() {
  local bins=$STATE/stage/bin b vm
  for b in sdn-master sdnctl sdn-node sdn-cni; do
    [ -x "$repo/target/release/$b" ] ||
      die "target/release/$b is missing: build first (make vagrant-up does: cargo build --release --workspace --bins)"
  done
  mkdir -p "$bins"
  for b in sdn-master sdnctl sdn-node sdn-cni; do
    # Stripped: a quarter of the size, and the VMs have no use for the symbols.
    strip -o "$bins/$b" "$repo/target/release/$b"
  done
  make_pki
  local pki=$STATE/pki work
  work=$(mktemp -d)
  mkdir -p "$work/master/bin" "$work/master/pki"
  cp "$bins/sdn-master" "$bins/sdnctl" "$work/master/bin/"
  cp "$pki"/{ca,etcd,etcd-key,api,api-key,root,root-key}.pem "$work/master/pki/"
  cp "$STATE/token" "$work/master/token"
  for vm in $(nodes); do
    mkdir -p "$work/$vm/bin" "$work/$vm/pki"
    cp "$bins/sdn-node" "$bins/sdn-cni" "$work/$vm/bin/"
    cp "$pki/ca.pem" "$pki/$vm.pem" "$pki/$vm-key.pem" "$work/$vm/pki/"
  done
  for vm in master $(nodes); do
    (umask 077 && tar -C "$work/$vm" -cf "$STATE/stage/$vm.tar" .)
  done
  rm -rf "$work"
}

# --- libvirt inside the lab's network namespace ---

# pid_in_ns PIDFILE: true if PIDFILE names a live process in the lab's namespace.
pid_in_ns() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(ip netns identify "$pid" 2>/dev/null)" = "$NS" ] ||
    die "$(basename "$1" .pid) (pid $pid) runs outside the lab's network namespace $NS; stop it first: the lab runs its own"
}

# Starts virtlogd and libvirtd inside the lab's namespace (once). Under TCG,
# libvirtd gets /dev/null in place of a /dev/kvm that does not run guests:
# libvirt probes QEMU with KVM first, and on such a /dev/kvm each probe hangs
# until QEMU times out. `ip netns exec` gives them a mount namespace of their
# own, so the machine's /dev/kvm stays as it is.
start_libvirt() {
  ip netns list | grep -qx "$NS\( .*\)\?" || ip netns add "$NS"
  ip -n "$NS" link set lo up
  mkdir -p /var/log/libvirt/qemu "$STATE/pool"
  printf 'log_outputs="3:file:%s/libvirtd.log"\n' "$STATE" >"$STATE/libvirtd.conf"
  pid_in_ns /run/virtlogd.pid || in_ns virtlogd -d
  if ! pid_in_ns /run/libvirtd.pid; then
    local mask=''
    [ "$SDN_VM_DRIVER" = kvm ] || [ ! -e /dev/kvm ] || mask='mount --bind /dev/null /dev/kvm && '
    in_ns sh -c "${mask}exec libvirtd -d -f '$STATE/libvirtd.conf'"
  fi
  for _ in $(seq 50); do
    virsh version >/dev/null 2>&1 && break
    sleep 0.2
  done
  virsh version >/dev/null 2>&1 || die "libvirtd did not answer: see $STATE/libvirtd.log"
  if ! virsh pool-info "$POOL" >/dev/null 2>&1; then
    virsh -q pool-define-as "$POOL" dir --target "$STATE/pool" >/dev/null
  fi
  virsh -q pool-start "$POOL" >/dev/null 2>&1 || true
}

# The driver the VMs run under: SDN_VM_DRIVER if given, else kvm where
# /dev/kvm runs a guest and qemu (TCG) where it does not. The probe boots
# the box's kernel without a disk: under KVM it prints its banner within a
# second.
choose_driver() {
  if [ -z "${SDN_VM_DRIVER-}" ]; then
    SDN_VM_DRIVER=qemu
    if [ -c /dev/kvm ] && timeout -k 5 20 qemu-system-x86_64 -enable-kvm -m 256 -display none \
      -serial stdio -nic none -no-reboot -kernel "$STATE/box/vmlinuz" -append "console=ttyS0 panic=-1" \
      2>/dev/null | grep -q -m1 "Linux version"; then
      SDN_VM_DRIVER=kvm
    fi
  fi
  case $SDN_VM_DRIVER in kvm | qemu) ;; *) die "SDN_VM_DRIVER must be kvm or qemu, not $SDN_VM_DRIVER" ;; esac
  export SDN_VM_DRIVER
}

stop_libvirt() {
  local f pid
  virsh -q pool-destroy "$POOL" >/dev/null 2>&1 || true
  virsh -q pool-undefine "$POOL" >/dev/null 2>&1 || true
  for f in /run/libvirtd.pid /run/virtlogd.pid; do
    pid=$(cat "$f" 2>/dev/null) || continue
    [ "$(ip netns identify "$pid" 2>/dev/null)" = "$NS" ] || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  ip netns del "$NS" 2>/dev/null || true
}

add_box() {
  local stamp
  stamp=$(cat "$STATE/box/stamp")
  if [ "$(cat "$VAGRANT_HOME/sdn-box.stamp" 2>/dev/null)" = "$stamp" ] && vagrant box list | grep -q "^$BOX_NAME "; then
    return
  fi
  log "adding the box to Vagrant"
  vagrant box add --force --name "$BOX_NAME" "$STATE/box/sdn-bookworm.box" >/dev/null
  # vagrant-libvirt keeps its upload of a box in the pool by name, and the
  # rebuilt box has the same one.
  virsh -q vol-list "$POOL" 2>/dev/null | awk '/_vagrant_box_image_/ {print $1}' |
    while read -r vol; do virsh -q vol-delete "$vol" --pool "$POOL" >/dev/null; done
  # libvirt's QEMU user reads the box's kernel and initramfs from here.
  chmod 755 "$VAGRANT_HOME" "$VAGRANT_HOME/boxes"
  printf '%s\n' "$stamp" >"$VAGRANT_HOME/sdn-box.stamp"
}

cmd_up() {
  local started=$SECONDS
  cmd_box
  stage
  choose_driver
  start_libvirt
  log "VMs run under $SDN_VM_DRIVER$([ "$SDN_VM_DRIVER" = qemu ] && echo ' (TCG: /dev/kvm does not run guests here)')"
  add_box
  local boot=$SECONDS
  in_ns vagrant up --provision
  in_ns vagrant ssh-config >"$STATE/ssh_config"
  log "lab up in $((SECONDS - boot)) s from a built box ($((SECONDS - started)) s in all)"
  cat <<EOF

The lab runs in network namespace $NS; from the host:
  ip netns exec $NS curl --cacert $STATE/pki/ca.pem -H "Authorization: Bearer \$(cat $STATE/token)" $API/api/v1/nodes
  ip netns exec $NS ssh -F $STATE/ssh_config node1 sudo sdn-node flows --node-name node1
  make vagrant-check     make vagrant-down
EOF
}

# Destroys the VMs and what libvirt keeps of them, whether or not the lab's
# libvirtd still runs (an interrupted run, a rebooted machine): then it is
# started for the purpose. Driver qemu is enough to destroy.
cmd_down() {
  if [ -d "$STATE/dot" ] || [ -n "$(ls /etc/libvirt/qemu/sdn-vagrant-*.xml 2>/dev/null)" ]; then
    if ! pid_in_ns /run/libvirtd.pid; then
      SDN_VM_DRIVER=${SDN_VM_DRIVER:-qemu}
      start_libvirt
    fi
    [ ! -d "$STATE/dot" ] || in_ns vagrant destroy -f || true
    local domain network
    for domain in $(virsh list --all --name | grep '^sdn-vagrant-'); do
      virsh -q destroy "$domain" >/dev/null 2>&1 || true
      virsh -q undefine "$domain" --remove-all-storage >/dev/null 2>&1 || true
    done
    for network in sdn-lab sdn-vagrant-mgmt; do
      virsh -q net-destroy "$network" >/dev/null 2>&1 || true
      virsh -q net-undefine "$network" >/dev/null 2>&1 || true
    done
  fi
  stop_libvirt
  rm -rf "$STATE/dot" "$STATE/stage" "$STATE/ssh_config" "$STATE"/console-*.log
  log "lab down (the box stays cached in $STATE/box)"
}

cmd_check() {
  ip netns list | grep -qx "$NS\( .*\)\?" || die "the lab is not up (no network namespace $NS): make vagrant-up"
  [ -s "$STATE/ssh_config" ] || die "the lab is not up ($STATE/ssh_config is missing): make vagrant-up"
  bash "$here/check.sh"
}

cmd_test() {
  local rc=0
  # From nothing, whatever an interrupted earlier run left.
  cmd_down
  trap cmd_down EXIT
  cmd_up || { log "up failed"; echo "0 passed, 1 failed"; exit 1; }
  cmd_check || rc=$?
  exit "$rc"
}

cmd_stage() {
  stage
  log "staged in $STATE/stage"
}

case ${1-} in
  box | stage | up | check | down | test) "cmd_$1" ;;
  *) die "usage: $0 box|stage|up|check|down|test" ;;
esac
