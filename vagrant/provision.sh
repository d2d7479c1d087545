#!/usr/bin/env bash
# Provisions one VM of the lab (see README.md beside this file) from what the
# host staged for it: the binaries built on the host and this VM's own
# certificates, uploaded by the Vagrantfile as /tmp/sdn.tar. Nothing here
# compiles, and nothing downloads unless the box lacks a package (the public
# debian/bookworm64 box does; the lab's own box has them all).
#
#   provision.sh master|node
#
# The Vagrantfile sets SDN_MASTER_IP (the master's lab address), SDN_NODES
# (the nodes as name=ip,name=ip, for the master to authorize) and, for a node,
# SDN_NODE_IP. Idempotent: a service restarts only if its binary, certificate,
# configuration or unit changed, so `make vagrant-up` again rolls out a new
# build.
#
# The set-up is the production one of docs/production.md: etcd over TLS with
# client certificates and auth on, the master as etcd's root, each node as
# the etcd user its certificate names with a role that writes only its own
# keys, and the admin API over TLS with a token.
set -euo pipefail

STAGE=/tmp/sdn.tar
PKI=/etc/sdn/pki
TOKEN_FILE=/etc/sdn/admin-token
API_PORT=8440
PACKAGES=(etcd-server etcd-client nftables iproute2 iputils-ping curl ca-certificates dnsutils busybox-static)

log() { printf 'provision: %s\n' "$*"; }
die() {
  printf 'provision: %s\n' "$*" >&2
  exit 1
}

# Set to 1 when a file a service reads is rewritten, so start_service knows to
# restart it. STAGED_CHANGED says the stage (binaries, certificates) changed,
# which every service reads.
CHANGED=0
STAGED_CHANGED=0

# put_file PATH MODE [OWNER] < CONTENT: writes CONTENT to PATH unless PATH
# already holds exactly that with that mode. Feed it by redirection, not a
# pipe: a pipe runs it in a subshell and loses CHANGED.
put_file() {
  local path=$1 mode=$2 owner=${3:-root} tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path" && [ "$(stat -c %a:%U "$path")" = "$mode:$owner" ]; then
    rm -f "$tmp"
    return
  fi
  mkdir -p "$(dirname "$path")"
  # install sets mode and owner before the file is in place: a key is never
  # readable by others, not even for a moment.
  install -m "$mode" -o "$owner" -g root "$tmp" "$path"
  rm -f "$tmp"
  CHANGED=1
}

# start_service UNIT: enables UNIT and leaves it running on its current files.
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

# until_ok SECONDS WHAT COMMAND...: runs COMMAND every 2 s until it succeeds;
# fails naming WHAT after SECONDS.
until_ok() {
  local limit=$1 what=$2
  local deadline=$((SECONDS + limit))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what: not so after $limit s"
    sleep 2
  done
}

ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return
  log "the box lacks ${missing[*]}: installing them from Debian (this needs the Internet)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian's etcd-server starts its own etcd on install; the master starts its
  # own configuration below, and nodes run none.
  systemctl disable --quiet --now etcd
}

# Unpacks the stage into /tmp/sdn and installs what differs from what is
# installed: binaries into /usr/local/bin, certificates into /etc/sdn/pki.
unpack() {
  [ -f "$STAGE" ] || die "$STAGE is missing: the Vagrantfile uploads it; run make vagrant-up on the host"
  rm -rf /tmp/sdn
  mkdir -p /tmp/sdn
  tar -C /tmp/sdn -xf "$STAGE"
  local f
  for f in /tmp/sdn/bin/*; do
    if ! cmp -s "$f" "/usr/local/bin/${f##*/}"; then
      log "installing ${f##*/}"
      install -m 0755 "$f" /usr/local/bin/
      CHANGED=1
    fi
  done
  install -d -m 0755 "$PKI"
  for f in /tmp/sdn/pki/*.pem; do
    case $f in
      *-key.pem) put_file "$PKI/${f##*/}" 600 <"$f" ;;
      *) put_file "$PKI/${f##*/}" 644 <"$f" ;;
    esac
  done
  STAGED_CHANGED=$CHANGED
}

etcdctl_root() {
  ETCDCTL_API=3 etcdctl --endpoints "https://127.0.0.1:2379" --cacert "$PKI/ca.pem" \
    --cert "$PKI/root.pem" --key "$PKI/root-key.pem" "$@"
}

run_etcd() {
  CHANGED=$STAGED_CHANGED
  # etcd runs as user etcd: its own copy of its key, readable by it alone.
  put_file /etc/etcd/etcd-key.pem 600 etcd <"$PKI/etcd-key.pem"
  put_file /etc/etcd/etcd.pem 644 etcd <"$PKI/etcd.pem"
  put_file /etc/default/etcd 644 <<EOF
# Written by provision.sh; a provision run overwrites edits.
ETCD_NAME="master"
ETCD_LISTEN_CLIENT_URLS="https://$SDN_MASTER_IP:2379,https://127.0.0.1:2379"
ETCD_ADVERTISE_CLIENT_URLS="https://$SDN_MASTER_IP:2379"
ETCD_CERT_FILE="/etc/etcd/etcd.pem"
ETCD_KEY_FILE="/etc/etcd/etcd-key.pem"
ETCD_TRUSTED_CA_FILE="$PKI/ca.pem"
ETCD_CLIENT_CERT_AUTH="true"
EOF
  start_service etcd
  until_ok 60 "etcd answering on 127.0.0.1:2379" etcdctl_root endpoint health
  # Authentication on, as docs/production.md does it: user root, no password,
  # its certificate says who it is.
  if ! etcdctl_root user get root 2>/dev/null | grep -q "Roles: root"; then
    log "turning etcd's authentication on"
    etcdctl_root user get root >/dev/null 2>&1 || etcdctl_root user add root --no-password
    etcdctl_root user grant-role root root
  fi
  etcdctl_root auth enable >/dev/null
}

run_master() {
  CHANGED=$STAGED_CHANGED
  put_file "$TOKEN_FILE" 600 </tmp/sdn/token
  put_file /etc/sdn/master.toml 644 <<EOF
# Written by provision.sh; a provision run overwrites edits.
[network]
cluster-network = "10.1.0.0/16"
host-subnet-length = 8
service-network = "172.30.0.0/16"
vxlan-port = 4789

[etcd]
endpoints = ["https://$SDN_MASTER_IP:2379"]
prefix = "/sdn"
ca-file = "$PKI/ca.pem"
cert-file = "$PKI/root.pem"
key-file = "$PKI/root-key.pem"

[api]
listen = "0.0.0.0:$API_PORT"
token-file = "$TOKEN_FILE"
tls-cert-file = "$PKI/api.pem"
tls-key-file = "$PKI/api-key.pem"
EOF
  put_file /etc/systemd/system/sdn-master.service 644 <<EOF
[Unit]
Description=sdn master: node registry, HostSubnet allocation, admin API
Wants=etcd.service
After=etcd.service

[Service]
ExecStart=/usr/local/bin/sdn-master --config /etc/sdn/master.toml
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
EOF
  start_service sdn-master
  until_ok 120 "sdn-master ready (journalctl -u sdn-master)" \
    curl -fs --cacert "$PKI/ca.pem" "https://127.0.0.1:$API_PORT/readyz"
  local entry
  IFS=, read -ra entries <<<"${SDN_NODES-}"
  for entry in "${entries[@]}"; do
    SDN_SERVER="https://127.0.0.1:$API_PORT" SDN_CA_FILE="$PKI/ca.pem" SDN_TOKEN_FILE="$TOKEN_FILE" \
      sdnctl nodes authorize "${entry%%=*}" --ip "${entry#*=}"
  done
  log "master ready: https://$SDN_MASTER_IP:$API_PORT (CA and token in the lab's directory on the host)"
}

run_node() {
  CHANGED=$STAGED_CHANGED
  local name
  name=$(hostname)
  # The master authorizes this node's etcd user; until it has, etcd refuses
  # this certificate, and the agent would only fail and restart.
  until_ok 1800 "etcd accepting node $name's certificate (the master authorizes it when provisioned)" \
    env ETCDCTL_API=3 etcdctl --endpoints "https://$SDN_MASTER_IP:2379" --cacert "$PKI/ca.pem" \
    --cert "$PKI/$name.pem" --key "$PKI/$name-key.pem" get --limit 1 /sdn/
  put_file /etc/systemd/system/sdn-node.service 644 <<EOF
[Unit]
Description=sdn node agent
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/sdn-node run --node-name $name --node-ip $SDN_NODE_IP \\
  --etcd-endpoints https://$SDN_MASTER_IP:2379 --etcd-ca-file $PKI/ca.pem \\
  --etcd-cert-file $PKI/$name.pem --etcd-key-file $PKI/$name-key.pem
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
EOF
  start_service sdn-node
  until_ok 120 "sdn-node ready (journalctl -u sdn-node)" curl -fs http://127.0.0.1:9441/readyz
  log "node $name ready"
}

main() {
  [ "$(id -u)" -eq 0 ] || die "must run as root"
  [ "$#" -eq 1 ] || die "usage: $0 master|node"
  [ -n "${SDN_MASTER_IP-}" ] || die "SDN_MASTER_IP (the master's lab address) is not set"
  case "$1" in
    master) ;;
    node) [ -n "${SDN_NODE_IP-}" ] || die "SDN_NODE_IP (this node's lab address) is not set" ;;
    *) die "usage: $0 master|node" ;;
  esac
  ensure_packages
  unpack
  case "$1" in
    master)
      run_etcd
      run_master
      ;;
    node) run_node ;;
  esac
}

main "$@"
