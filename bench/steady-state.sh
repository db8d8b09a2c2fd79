#!/usr/bin/env bash
# Scale and steady-state benchmark on the test bed: N PodIamRoles from nothing to Ready,
# then one resync and one operator restart, counting IAM calls from the operator's
# metrics and its memory from /proc. Prints figures; asserts nothing.
#
#   bench/steady-state.sh [N]      (default 100; needs `scripts/testbed up`)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${1:-100}
RESYNC=30
source .testbed/env
cargo build --quiet --locked --bin irsa-operator
kubectl apply -k crds/ >/dev/null

ns=bench-$(date +%s)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
kubectl create namespace "$ns" >/dev/null
{
  for i in $(seq 1 "$N"); do
    cat <<YAML
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: app-$i, namespace: $ns}
---
apiVersion: irsa.dev/v1alpha1
kind: PodIamRole
metadata: {name: app-$i, namespace: $ns}
spec:
  serviceAccountName: app-$i
  policy:
    Version: "2012-10-17"
    Statement:
      - {Effect: Allow, Action: ["dynamodb:GetItem", "dynamodb:PutItem"], Resource: "arn:aws:dynamodb:us-east-1:111122223333:table/t$i"}
YAML
  done
} | kubectl apply -f - >/dev/null

calls() { curl -s "127.0.0.1:$port/metrics" | awk -v access="$1" '/^irsa_operator_iam_calls_total/ && index($0, "access=\"" access "\"") {s += $NF} END {print s + 0}'; }
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$1/status"; }
start_operator() {
  target/debug/irsa-operator run --cluster-name "bench$N" --namespaces "$ns" --resync-interval "${RESYNC}s" \
    --metrics-addr "127.0.0.1:$port" --oidc-provider manage --oidc-ca-file "$TESTBED_CA_FILE" \
    >".testbed/bench-operator.log" 2>&1 &
  echo $!
}
wait_metrics() { until curl -sf "127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done; }

pid=$(start_operator); wait_metrics
t0=$(date +%s.%N)
kubectl -n "$ns" wait pir --all --for=condition=Ready --timeout=600s >/dev/null
t1=$(date +%s.%N)
echo "N=$N: all Ready in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s (debug build, test-bed apiserver + LocalStack on 2 shared cores)"
echo "  IAM writes to converge: $(calls write) ($(awk -v w="$(calls write)" -v n="$N" 'BEGIN{printf "%.2f", w/n}') per role)"
echo "  IAM reads to converge:  $(calls read)"
sleep 3
r0=$(calls read); w0=$(calls write)
sleep $((RESYNC + 5))
r1=$(calls read); w1=$(calls write)
echo "  one resync period (${RESYNC}s) in steady state: $((w1 - w0)) writes, $((r1 - r0)) reads ($(awk -v r=$((r1 - r0)) -v n="$N" 'BEGIN{printf "%.2f", r/n}') per role, incl. OIDC provider checks)"
echo "  operator RSS: $(rss "$pid")"
kill "$pid"; wait "$pid" 2>/dev/null || true

pid=$(start_operator); wait_metrics
sleep $((RESYNC + 5))
echo "  restart + ${RESYNC}s: $(calls write) writes, $(calls read) reads; RSS $(rss "$pid")"
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "  (namespace $ns left in place; the roles remain in LocalStack until the test bed is reset)"
