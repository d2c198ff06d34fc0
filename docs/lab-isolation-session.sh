#!/usr/bin/env bash
# Isolation, doubt and multi-node failure tried from a shell through the lab CLI (as root):
# seven good FloatingIPs, two EC2 would refuse and one it refuses, the good ones' holder killed
# under traffic; the controllers cut off for 10 s; two of three nodes killed together.
set -euo pipefail
# Run from the repository root after `cargo build --workspace --bins`; needs curl and python3.
LAB=${LAB:-target/debug/floatip-lab}
$LAB up --no-demo > /tmp/lab-up.log 2>&1 &
UP=$!
trap 'kill -INT $UP 2>/dev/null; wait $UP 2>/dev/null || true' EXIT
for _ in $(seq 1 180); do [ -f /run/floatip-lab/lab.env ] && break; sleep 1; done
# shellcheck disable=SC1091
source /run/floatip-lab/lab.env
K() { ip netns exec "$FLOATIP_LAB_INFRA" kubectl "$@"; }
calls() { ip netns exec "$FLOATIP_LAB_INFRA" curl -s "$AWS_ENDPOINT_URL/_lab/calls"; }
assigns() { calls | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["actions"].get("AssignPrivateIpAddresses",{}).get("calls",0))'; }
mutating() { calls | python3 -c 'import json,sys; print(json.load(sys.stdin)["mutating"])'; }
SUBNET=$(K get fip web -o jsonpath='{.spec.subnetId}')
HOLDER=$(K get fip web -o jsonpath='{.status.holder.node}')
echo "== web is held by $HOLDER; seven good FloatingIPs prefer it, two bad ones, one EC2 refuses"
# The lab's EC2 refuses any call naming 10.99.8.130 (what pre-checks cannot see).
ip netns exec "$FLOATIP_LAB_INFRA" curl -s -X POST "$AWS_ENDPOINT_URL/_lab/faults" \
  -d '{"kind": "invalid_parameter", "action": "AssignPrivateIpAddresses", "address": "10.99.8.130"}' >/dev/null
{
  for i in 1 2 3 4 5 6 7; do
    printf 'apiVersion: floatip.io/v1alpha1\nkind: FloatingIP\nmetadata: {name: good-%s}\nspec:\n  address: 10.99.8.11%s\n  subnetId: %s\n  preferredNodes: [%s]\n  healthCheck: {protocol: TCP, port: 30080}\n  failover: {minHoldSeconds: 0}\n---\n' "$i" "$i" "$SUBNET" "$HOLDER"
  done
  printf 'apiVersion: floatip.io/v1alpha1\nkind: FloatingIP\nmetadata: {name: bad-outside}\nspec: {address: 10.99.20.5, subnetId: %s}\n---\n' "$SUBNET"
  printf 'apiVersion: floatip.io/v1alpha1\nkind: FloatingIP\nmetadata: {name: bad-primary}\nspec: {address: %s, subnetId: %s}\n---\n' "$FLOATIP_LAB_NODE_2_IP" "$SUBNET"
  printf 'apiVersion: floatip.io/v1alpha1\nkind: FloatingIP\nmetadata: {name: refused}\nspec: {address: 10.99.8.130, subnetId: %s}\n' "$SUBNET"
} | K apply -f -
for _ in $(seq 1 60); do
  n=$(K get fip -o jsonpath='{range .items[*]}{.metadata.name}={.status.holder.node}{"\n"}{end}' | grep -c "^good-.*=$HOLDER" || true)
  [ "$n" = 7 ] && break; sleep 1
done
sleep 3
K get fip -o wide
for f in bad-outside bad-primary refused; do
  K get fip $f -o jsonpath='{.metadata.name}{": "}{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n    "}{end}{"\n"}'
done
echo "== the refused one backs off: AssignPrivateIpAddresses calls over 60 s (all of them are its attempts)"
a0=$(assigns); sleep 60; a1=$(assigns); echo "refused address: $((a1 - a0)) calls in 60 s"
idx=${HOLDER#node-}
echo "== client traffic to the seven good addresses; kill-node $idx"
for i in 1 2 3 4 5 6 7; do $LAB ctl traffic 10.99.8.11$i:30080 --seconds 12 > /tmp/good-$i.json & done
sleep 1
m0=$(mutating)
$LAB ctl kill-node "$idx"
wait $(jobs -p | grep -v "^$UP$") 2>/dev/null || true
sleep 1
m1=$(mutating)
for i in 1 2 3 4 5 6 7; do
  python3 -c "import json; d=json.load(open('/tmp/good-$i.json')); print('10.99.8.11$i', 'tcp outage', d['tcp']['outage_ms'], 'ms, udp', d['udp']['outage_ms'], 'ms')"
done
echo "mutating EC2 calls for the failover: $((m1 - m0)) (refused's backoff attempts included, if one fell in the window)"
K get fip -o wide
echo "== revive, then cut the controllers off for 10 s under traffic"
$LAB ctl revive-node "$idx"
sleep 8
before=$(K get fip web -o jsonpath='{.status.moveCount}')
$LAB ctl traffic "$FLOATIP_LAB_VIP:30080" --seconds 25 > /tmp/partition.json &
TP=$!
sleep 1
$LAB ctl partition controllers --seconds 10 &
PP=$!
sleep 6
K get fip web -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'
wait $PP
sleep 12
wait $TP
after=$(K get fip web -o jsonpath='{.status.moveCount}')
echo "web moves before the cut: $before, 12 s after the heal: $after"
python3 -c "import json; d=json.load(open('/tmp/partition.json')); print('clients during the cut: tcp failed', d['tcp']['failed'], 'of', d['tcp']['requests'], '; udp failed', d['udp']['failed'])"
echo "== two of three nodes die together"
HOLDER=$(K get fip web -o jsonpath='{.status.holder.node}')
h=${HOLDER#node-}
o=$(( h % 3 + 1 ))
$LAB ctl traffic "$FLOATIP_LAB_VIP:30080" --seconds 12 > /tmp/two.json &
TT=$!
sleep 1
$LAB ctl kill-node "$h"; $LAB ctl kill-node "$o"
wait $TT
python3 -c "import json; d=json.load(open('/tmp/two.json')); print('node-$h and node-$o died: tcp outage', d['tcp']['outage_ms'], 'ms; answered by', d.get('answered_by'))"
K get fip web -o wide
