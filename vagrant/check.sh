#!/usr/bin/env bash
# Checks a running Vagrant lab from outside its VMs (lab.sh check runs it):
# the admin API over TLS, the nodes' HostSubnets, a pod on each node pinging
# the other across the VMs, a service with a backend on each node answering
# by name from a pod, and `sdn-node flows` counting that traffic. Prints a
# line per check and then "N passed, N failed"; exits 1 if any failed.
#
# Reads SDN_VAGRANT_DIR, SDN_VAGRANT_NETNS and SDN_NODES as lab.sh sets them.
set -uo pipefail

STATE=${SDN_VAGRANT_DIR:?}
NS=${SDN_VAGRANT_NETNS:-sdn-vagrant}
NODES=${SDN_NODES:?}
API=https://192.168.56.10:8440
SOCKET=/run/sdn/sdn-node.sock
POD=lab-pod

passed=0
failed=0

# check WHAT COMMAND...: runs COMMAND, prints ok or FAIL with its output.
check() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    passed=$((passed + 1))
    printf 'ok    %s\n' "$what"
  else
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$what"
    printf '%s\n' "$out" | tail -n 15 | sed 's/^/        /'
  fi
}

# on VM SCRIPT: runs SCRIPT as root on VM, through the lab's namespace.
on() {
  ip netns exec "$NS" ssh -F "$STATE/ssh_config" -o LogLevel=ERROR "$1" sudo bash -euo pipefail -c "$(printf '%q' "$2")"
}

# api METHOD PATH [BODY]: the admin API over TLS with the lab's token.
api() {
  local args=(-fsS --max-time 10 --cacert "$STATE/pki/ca.pem" -H "Authorization: Bearer $(cat "$STATE/token")" -X "$1")
  [ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' -d "$3")
  ip netns exec "$NS" curl "${args[@]}" "$API$2"
}

# retry SECONDS COMMAND...: COMMAND until it succeeds, for at most SECONDS.
retry() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 2
  done
}

names=$(seq -f 'node%g' 1 "$NODES")

api_refuses_without_token() {
  local code
  code=$(ip netns exec "$NS" curl -s --max-time 10 --cacert "$STATE/pki/ca.pem" -o /dev/null -w '%{http_code}' "$API/api/v1/nodes")
  [ "$code" = 401 ] || { echo "expected 401 without the token, got $code"; return 1; }
}

nodes_allocated() {
  local list n
  list=$(api GET /api/v1/nodes) || return 1
  for n in $names; do
    jq -e --arg n "$n" '.[] | select(.name == $n and .subnet != null)' <<<"$list" >/dev/null ||
      { echo "node $n has no HostSubnet yet:"; echo "$list"; return 1; }
  done
  # Distinct subnets, one per node.
  [ "$(jq '[.[].subnet] | unique | length' <<<"$list")" -eq "$(jq length <<<"$list")" ] ||
    { echo "two nodes share a subnet:"; echo "$list"; return 1; }
}

# A pod: a network namespace attached through the agent's pod API, with the
# resolv.conf a runtime would write and busybox's httpd answering with the
# pod's node. Made afresh on each check.
make_pod() {
  on "$1" "
    { ip netns pids $POD 2>/dev/null || true; } | xargs -r kill
    curl -s --unix-socket $SOCKET -X DELETE http://sdn/v1/pods/$POD >/dev/null || true
    ip netns del $POD 2>/dev/null || true
    ip netns add $POD
    attached=\$(curl -fsS --unix-socket $SOCKET -H 'Content-Type: application/json' \
      -d '{\"id\":\"$POD\",\"netns\":\"/run/netns/$POD\"}' http://sdn/v1/pods)
    ip=\$(printf '%s' \"\$attached\" | sed -n 's/.*\"ip\":\"\\([0-9.]*\\)\".*/\\1/p')
    mkdir -p /etc/netns/$POD /srv/$POD
    printf 'nameserver %s.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' \"\${ip%.*}\" >/etc/netns/$POD/resolv.conf
    echo 'hello from $1' >/srv/$POD/index.html
    ip netns exec $POD busybox httpd -p 8080 -h /srv/$POD
    echo \"\$ip\""
}

# pod_made OUTPUT: true if make_pod's OUTPUT ends in the pod's address.
pod_made() {
  [[ ${1##*$'\n'} =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || { printf '%s\n' "$1"; return 1; }
}

declare -A pod_ip
for n in $names; do
  out=$(make_pod "$n" 2>&1)
  if pod_made "$out" >/dev/null; then
    pod_ip[$n]=${out##*$'\n'}
  fi
  check "a pod on $n (${pod_ip[$n]:-none})" pod_made "$out"
done

check "the admin API over TLS refuses a request without the lab's token" api_refuses_without_token
check "the admin API over TLS lists every node with a HostSubnet of its own" retry 60 nodes_allocated

ping_pod() {
  on "$1" "ip netns exec $POD ping -c 3 -W 2 $2"
}
for a in $names; do
  for b in $names; do
    [ "$a" != "$b" ] && [ -n "${pod_ip[$a]:-}" ] && [ -n "${pod_ip[$b]:-}" ] || continue
    check "the pod on $a pings the pod on $b (${pod_ip[$b]}) across the VMs" retry 30 ping_pod "$a" "${pod_ip[$b]}"
  done
done

api DELETE /api/v1/services/default/web >/dev/null 2>&1 || true
created=$(api POST /api/v1/services '{"namespace":"default","name":"web","ports":[{"name":"http","port":80}]}')
cluster_ip=$(jq -r '.clusterIP // empty' <<<"$created" 2>/dev/null)
addresses=''
for n in $names; do
  [ -z "${pod_ip[$n]:-}" ] || addresses+="${addresses:+,}{\"ip\":\"${pod_ip[$n]}\"}"
done
endpoints=$(api PUT /api/v1/endpoints/default/web "{\"addresses\":[$addresses],\"ports\":[{\"name\":\"http\",\"port\":8080}]}")
check "the admin API creates service default/web (${cluster_ip:-no cluster IP}) with a backend on each node" \
  test -n "$cluster_ip" -a -n "$endpoints"

# The name first, with dig against the pod's resolv.conf: a failure here is the cluster DNS's,
# not the service's.
first=${names%%$'\n'*}
service_resolves() {
  local answer
  answer=$(on "$first" "ip netns exec $POD dig +short +search +time=2 +tries=1 web") || return 1
  [ "$answer" = "$cluster_ip" ] || { echo "dig web from the pod answered '$answer', not $cluster_ip"; return 1; }
}
[ -z "$cluster_ip" ] || check "web resolves to $cluster_ip in the pod on $first (dig, the node's cluster DNS)" \
  retry 30 service_resolves

# Every backend answers http://web/ from the first node's pod: by name
# through the node's cluster DNS, to the cluster IP, balanced by the
# programs to a pod on either VM.
service_answers() {
  local answers n
  answers=$(on "$first" "for i in \$(seq 20); do ip netns exec $POD curl -s --max-time 3 http://web/ || true; done")
  for n in $names; do
    grep -qx "hello from $n" <<<"$answers" || { echo "no answer from $n's backend in 20 tries; got:"; sort <<<"$answers" | uniq -c; return 1; }
  done
}
check "http://web/ from the pod on $first: by name, answered by the backend on every node" retry 60 service_answers

# flows_count VM PATTERN: the n_packets of the first flow line matching
# PATTERN in the VM's `sdn-node flows`, which must be more than 0.
flows_count() {
  local flows line
  flows=$(on "$1" "sdn-node flows --node-name $1") || return 1
  line=$(grep -m1 -e "$2" <<<"$flows") || { echo "no flow matches '$2':"; echo "$flows"; return 1; }
  [[ $line =~ n_packets=([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -gt 0 ] || { echo "$line"; return 1; }
}
for n in $names; do
  [ -n "${pod_ip[$n]:-}" ] || continue
  check "sdn-node flows on $n counts packets to its pod" flows_count "$n" "table=local.*nw_dst=${pod_ip[$n]} "
  check "sdn-node flows on $n counts packets to the other nodes' pods" flows_count "$n" "table=remote, n_packets=[1-9]"
done
[ -z "$cluster_ip" ] || check "sdn-node flows on $first counts packets to the cluster IP" \
  flows_count "$first" "table=service.*nw_dst=$cluster_ip"

# libvirt names its bridges virbr* and the VMs' taps vnet*: none may be in the
# machine's own network namespace, only in the lab's.
root_namespace_untouched() {
  local ours theirs
  ours=$(ip -o link show | awk -F': ' '$2 ~ /^(virbr|vnet)/ {print $2}')
  [ -z "$ours" ] || { echo "in the machine's own network namespace: $ours"; return 1; }
  theirs=$(ip netns exec "$NS" ip -o link show | awk -F': ' '$2 ~ /^(virbr|vnet)/' | wc -l)
  [ "$theirs" -gt 0 ] || { echo "no bridge or tap in $NS either: is this the lab?"; return 1; }
}
check "the VMs' bridges and taps are in namespace $NS, none in the machine's own" root_namespace_untouched

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
