#!/usr/bin/env bash
# Provisions one VM of the lab (see README.md beside this file): builds sdn
# from the repository synced to /sdn and gives the VM its part in the cluster.
#
#   provision.sh master|node
#
# The Vagrantfile sets SDN_MASTER_IP (the master's lab address) and, for a
# node, SDN_NODE_IP (this VM's lab address). Idempotent: a second run rebuilds
# only what cargo finds stale and restarts a service only if its binary,
# token, configuration or unit changed, so `vagrant rsync && vagrant provision`
# rolls code changes out.
set -euo pipefail

REPO=/sdn
TOKEN_FILE=/etc/sdn/admin-token
API_PORT=8440

log() { printf 'provision: %s\n' "$*"; }
die() {
  printf 'provision: %s\n' "$*" >&2
  exit 1
}

# Set to 1 by put_file and install_binaries when they rewrite a file, so
# start_service knows to restart the service that reads it.
CHANGED=0

# put_file PATH MODE < CONTENT: writes CONTENT to PATH with octal MODE (as
# `stat -c %a` prints it) unless PATH already holds exactly that. Feed it by
# redirection, not a pipe: a pipe runs it in a subshell and loses CHANGED.
put_file() {
  local path=$1 mode=$2 content
  content=$(cat)
  if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ] && [ "$(stat -c %a "$path")" = "$mode" ]; then
    return
  fi
  mkdir -p "$(dirname "$path")"
  # umask: a secret is never readable by others, not even between the write
  # and the chmod.
  (umask 077 && printf '%s\n' "$content" >"$path")
  chmod "$mode" "$path"
  CHANGED=1
}

# start_service UNIT: enables UNIT and leaves it running on its current files:
# restarted if CHANGED says one was rewritten, else only started (a no-op
# when it already runs).
start_service() {
  local unit=$1
  if [ "$CHANGED" -eq 1 ]; then
    systemctl daemon-reload
    systemctl enable --quiet "$unit"
    systemctl restart "$unit"
  else
    systemctl enable --quiet --now "$unit"
  fi
}

# wait_ready URL SECONDS: polls URL until it answers 2xx; fails after SECONDS.
wait_ready() {
  local url=$1 deadline=$((SECONDS + $2))
  until curl -fs --max-time 5 -o /dev/null "$url"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 5
  done
}

install_rust() {
  if command -v rustup >/dev/null; then
    log "rustup present"
    return
  fi
  # scripts/setup.sh needs rustup (for nightly and rust-src), and Debian 12
  # packages neither rustup nor a cargo new enough for edition 2024.
  if ! command -v curl >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl ca-certificates
  fi
  log "installing Rust through rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal --default-toolchain stable
}

# Builds every binary of the workspace and installs those that differ from
# the installed ones.
install_binaries() {
  local built bin
  log "building sdn (release; the first build takes a while)"
  # json-render-diagnostics keeps compiler messages readable on stderr while
  # stdout names every executable, freshly built or already up to date.
  built=$(cargo build --manifest-path "$REPO/Cargo.toml" --locked --release --bins \
    --message-format=json-render-diagnostics |
    jq -r 'select(.reason == "compiler-artifact" and .executable != null) | .executable')
  [ -n "$built" ] || die "cargo built no binaries"
  while read -r bin; do
    if ! cmp -s "$bin" "/usr/local/bin/${bin##*/}"; then
      log "installing ${bin##*/}"
      install -m 0755 "$bin" /usr/local/bin/
      CHANGED=1
    fi
  done <<<"$built"
}

# One admin token for the whole lab. No VM can read another's files, so the
# Vagrantfile makes it on the host (vagrant/.token) and the rsync of the
# repository carries it to every VM: the master serves with it, nodes present it.
install_token() {
  [ -s "$REPO/vagrant/.token" ] ||
    die "$REPO/vagrant/.token is missing; the Vagrantfile writes it on the host: run 'vagrant rsync' and provision again"
  put_file "$TOKEN_FILE" 600 <"$REPO/vagrant/.token"
}

# etcd serves the whole lab: nodes reach it on the master's lab address. The
# Debian unit reads ETCD_* from /etc/default/etcd, after its own defaults
# (member name = host name, data in /var/lib/etcd/default).
run_etcd() {
  CHANGED=0
  put_file /etc/default/etcd 644 <<EOF
# Written by /sdn/vagrant/provision.sh; a provision run overwrites edits.
ETCD_LISTEN_CLIENT_URLS="http://$SDN_MASTER_IP:2379,http://127.0.0.1:2379"
ETCD_ADVERTISE_CLIENT_URLS="http://$SDN_MASTER_IP:2379"
EOF
  start_service etcd
}

# Starts sdn-master; CHANGED already says whether its binary or token changed.
run_master() {
  put_file /etc/sdn/master.toml 644 <<EOF
# Written by /sdn/vagrant/provision.sh; a provision run overwrites edits.
# The defaults of the design, spelled out so the lab shows where they live.
[network]
cluster-network = "10.1.0.0/16"
host-subnet-length = 8
service-network = "172.30.0.0/16"
vxlan-port = 4789
# mtu is left out: each node then uses its underlay MTU less 50 (VXLAN).

[etcd]
endpoints = ["http://$SDN_MASTER_IP:2379"]
prefix = "/sdn"

[api]
listen = "0.0.0.0:$API_PORT"
# Plain HTTP on the lab's private host-only network: the master refuses it elsewhere without TLS.
insecure-listen = true
token-file = "$TOKEN_FILE"
EOF
  put_file /etc/systemd/system/sdn-master.service 644 <<EOF
# Written by /sdn/vagrant/provision.sh; a provision run overwrites edits.
[Unit]
Description=sdn master: node registry, HostSubnet allocation, admin API
Wants=etcd.service
After=etcd.service

[Service]
ExecStart=/usr/local/bin/sdn-master --config /etc/sdn/master.toml
Restart=on-failure
# Keeps a crash loop under systemd's start limit (5 starts in 10 s), so
# systemd goes on retrying.
RestartSec=5

[Install]
WantedBy=multi-user.target
EOF
  start_service sdn-master
  log "waiting for sdn-master to be ready"
  wait_ready "http://127.0.0.1:$API_PORT/readyz" 120 ||
    die "sdn-master is not ready after 2 minutes; see: journalctl -u sdn-master"
  log "master ready. On this VM, as root: SDN_TOKEN_FILE=$TOKEN_FILE sdnctl nodes list"
  log "from the host: vagrant ssh master -c 'sudo SDN_TOKEN_FILE=$TOKEN_FILE sdnctl nodes list'"
}

# The node's part of the cluster. The node agent sdn-node does not exist yet,
# so for now this only registers the node with the master, which allocates
# the node's HostSubnet. When sdn-node exists, an sdn-node.service (the agent
# registers its node itself) replaces the registration here.
start_node_agent() {
  local master="http://$SDN_MASTER_IP:$API_PORT"
  # Debian's etcd-server package enables its own etcd on install; a node uses
  # the master's, and a local one would only answer clients that default to
  # 127.0.0.1:2379 with an empty cluster.
  systemctl disable --quiet --now etcd
  # With `vagrant up` in parallel (libvirt's default) the master may still be
  # building: allow for a whole first build.
  log "waiting for the master's admin API at $master"
  wait_ready "$master/readyz" 1800 ||
    die "the master is not ready after 30 minutes; provision this node again once it is"
  # The agent registers the node itself, builds its network and installs
  # sdn-cni with its conflist for a container runtime.
  put_file /etc/systemd/system/sdn-node.service 644 <<UNIT
[Unit]
Description=sdn node agent
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/sdn-node run --node-name $(hostname) --node-ip $SDN_NODE_IP --etcd-endpoints http://$SDN_MASTER_IP:2379
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT
  start_service sdn-node
  wait_ready http://127.0.0.1:9441/readyz 120 ||
    die "sdn-node is not ready after 2 minutes: journalctl -u sdn-node"
  log "node ready. On this VM, as root: sdn-node flows --node-name $(hostname)"
}

main() {
  [ "$(id -u)" -eq 0 ] || die "must run as root"
  [ "$#" -eq 1 ] || die "usage: $0 master|node"
  local role=$1
  case "$role" in
    master) ;;
    node) [ -n "${SDN_NODE_IP-}" ] || die "SDN_NODE_IP (this node's lab address) is not set" ;;
    *) die "usage: $0 master|node" ;;
  esac
  [ -n "${SDN_MASTER_IP-}" ] || die "SDN_MASTER_IP (the master's lab address) is not set"

  # Vagrant's sudo may keep the vagrant user's HOME; rustup, cargo and
  # scripts/setup.sh all keep root's toolchain under $HOME.
  export HOME=/root
  export PATH="$HOME/.cargo/bin:$PATH"

  install_rust
  log "running scripts/setup.sh"
  bash "$REPO/scripts/setup.sh"
  if [ "$role" = master ]; then
    run_etcd
  fi
  CHANGED=0
  install_binaries
  install_token
  case "$role" in
    master) run_master ;;
    node) start_node_agent ;;
  esac
}

main "$@"
