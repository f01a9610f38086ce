#!/usr/bin/env bash
# Validates the Kubernetes manifests offline, as CI does (no cluster needed):
#   1. renders them with `kubectl kustomize` (kustomize is built into
#      kubectl); without kubectl, takes the plain manifest files as they are;
#   2. validates every resource against the Kubernetes OpenAPI schemas with
#      kubernetes-validate --strict (schemas ship inside the PyPI package,
#      installed with pip when missing), for the oldest and newest
#      Kubernetes versions we claim (K8S_VERSIONS, default "1.28.0 1.37.0");
#   3. checks what the schemas cannot: StatefulSets with a PVC template,
#      /ready and /health probes, resource requests, a non-root security
#      context and the admin token from a Secret; a headless Service;
#   4. proves the validator bites: a copy with an unknown field must fail.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/gossip-ledger-k8s.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
rendered="${work}/rendered.yaml"

if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "installing kubernetes-validate (PyPI)" >&2
    python3 -m pip install -q kubernetes-validate >/dev/null
fi
if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "${here}" >"${rendered}"
    echo "rendered with kubectl kustomize ($(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p'))"
else
    echo "no kubectl here: validating the plain manifests (the secret generator is not rendered)"
    for file in namespace.yaml services.yaml nodes.yaml miner.yaml; do
        cat "${here}/${file}"
        echo "---"
    done >"${rendered}"
fi

for version in ${K8S_VERSIONS:-1.28.0 1.37.0}; do
    kubernetes-validate --strict --quiet -k "${version}" "${rendered}"
    echo "schemas: all resources valid for Kubernetes ${version}"
done

python3 - "${rendered}" <<'PY'
import sys, yaml
docs = [doc for doc in yaml.safe_load_all(open(sys.argv[1])) if doc]
problems = []
sets = [d for d in docs if d["kind"] == "StatefulSet"]
if len(sets) < 2:
    problems.append("expected a node and a miner StatefulSet")
for s in sets:
    name = s["metadata"]["name"]
    spec = s["spec"]
    pod = spec["template"]["spec"]
    if not spec.get("volumeClaimTemplates"):
        problems.append(f"{name}: no PersistentVolumeClaim template")
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"{name}: not runAsNonRoot")
    for c in pod["containers"]:
        if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/ready":
            problems.append(f"{name}: readiness probe is not GET /ready")
        if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health":
            problems.append(f"{name}: liveness probe is not GET /health")
        if not c.get("resources", {}).get("requests"):
            problems.append(f"{name}: no resource requests")
        env = {e["name"]: e for e in c.get("env", [])}
        if "secretKeyRef" not in env.get("LEDGER_RPC_ADMIN_TOKEN", {}).get("valueFrom", {}):
            problems.append(f"{name}: admin token not from a Secret")
        if "LEDGER_DNS_SEEDS" not in env:
            problems.append(f"{name}: no DNS seed")
headless = [d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"]
if not headless:
    problems.append("no headless Service to seed peers")
for p in problems:
    print("FAIL:", p)
if problems:
    sys.exit(1)
print(f"checks: {len(sets)} StatefulSets with PVCs, probes, requests, non-root, token from a Secret; headless seed Service")
PY

# The validator must reject what is wrong, or passing means nothing.
sed 's/^\(\s*\)serviceName: ledger-peers/\1serviceName: ledger-peers\n\1replicaz: 3/' "${rendered}" >"${work}/broken.yaml"
if kubernetes-validate --strict --quiet "${work}/broken.yaml" >/dev/null 2>&1; then
    echo "FAIL: kubernetes-validate accepted a StatefulSet with an unknown field" >&2
    exit 1
fi
echo "self-test: an unknown field is rejected"
echo "deploy/k8s: valid"
