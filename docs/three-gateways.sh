#!/usr/bin/env bash
# Three gatehouse replicas sharing one Redis, on one machine: HTTPS on 8443, 8444 and 8445, admin on
# 9901-9903. Put any L4 balancer in front of 8443-8445 (health check: GET /ready on the admin ports).
# The script shows a token issued by the first replica, revoked through the second, refused by the
# third; then it keeps the three running until Ctrl-C.
#
#   docs/three-gateways.sh            (GATEHOUSE_BIN=path/to/gatehouse to use another build)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)"; exit 1; }
BIN=${GATEHOUSE_BIN:-target/release/gatehouse}
[ -x "$BIN" ] || make build
export GATEHOUSE_DEMO_SECRET=${GATEHOUSE_DEMO_SECRET:-gatehouse-demo-secret-for-local-use-only}

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

redis-server --port 6390 --bind 127.0.0.1 --dir "$WORK" --appendonly yes --daemonize yes >/dev/null
until redis-cli -p 6390 ping >/dev/null 2>&1; do sleep 0.1; done

# One configuration per replica, all in one folder so they share certs/ (TLS and signing keys).
for i in 1 2 3; do
  sed -e "s/127.0.0.1:8443/127.0.0.1:844$((i + 2))/" \
      -e "s/127.0.0.1:8080/127.0.0.1:808$i/" \
      -e "s/127.0.0.1:9901/127.0.0.1:990$i/" \
      -e 's|^backend = "sqlite".*|backend = "redis"\nurl = "redis://127.0.0.1:6390/0"|' \
      gateway.toml > "$WORK/gateway-$i.toml"
done
wait_ready() { until curl -sf "http://127.0.0.1:990$1/ready" >/dev/null; do sleep 0.2; done; }
"$BIN" run --config "$WORK/gateway-1.toml" > "$WORK/gateway-1.log" 2>&1 & PIDS+=($!)
wait_ready 1   # the first start creates the certificate and keys the others then share
for i in 2 3; do "$BIN" run --config "$WORK/gateway-$i.toml" > "$WORK/gateway-$i.log" 2>&1 & PIDS+=($!); done
wait_ready 2; wait_ready 3
echo "three gateways ready on https://localhost:8443, :8444, :8445 (logs in $WORK)"

CA=(--cacert "$WORK/certs/gateway.crt")
TOKEN=$(curl -s "${CA[@]}" -u demo-service:demo-service-secret-change-me -d grant_type=client_credentials \
  https://localhost:8443/oauth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
for p in 8443 8444 8445; do
  echo "before revocation, :$p answers $(curl -s -o /dev/null -w '%{http_code}' "${CA[@]}" -H "Authorization: Bearer $TOKEN" https://localhost:$p/api/x)"
done
curl -s "${CA[@]}" -u demo-service:demo-service-secret-change-me -d "token=$TOKEN" https://localhost:8444/oauth/revoke >/dev/null
echo "revoked through :8444"
for p in 8443 8444 8445; do
  echo "after revocation, :$p answers $(curl -s -o /dev/null -w '%{http_code}' "${CA[@]}" -H "Authorization: Bearer $TOKEN" https://localhost:$p/api/x)"
done
echo "Ctrl-C stops the three gateways and Redis"
wait
