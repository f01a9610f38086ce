#!/usr/bin/env bash
# End-to-end and fault test of the 4-node Docker Compose testnet.
#
# Builds gossip-ledger:latest offline (build-image.sh), starts
# docker-compose.yml under its own project name, and then:
#   a. waits until all four nodes are healthy;
#   b. sends 1.5 coins from dev:0 to dev:5 through node1 and waits for it;
#   c. sees the new balance on node4, and `testnet check` passes on all four;
#   d. `testnet chaos` against it: E2E_CHAOS_ROUNDS (default 5) rounds of
#      faults drawn with seed E2E_CHAOS_SEED (default 2) from kill -9 +
#      restart, pause, partition (iptables in the containers' namespaces)
#      and netem latency/loss, under a steady tx load; after each heal all
#      four converge, and at the end no accepted tx is lost and the supply
#      invariant holds.
# It prints a summary (times, PASS/FAIL per step) and always ends with
# `down -v`. Every wait has a deadline. Exit 0 only when every step passed.
#
# Usage: testnet/docker/e2e.sh [--no-cargo-build] [--smoke]
#   --no-cargo-build  use target/release/{ledger-node,wallet-cli,testnet} as they are
#   --smoke           steps a-c only (no faults)
#
# Needs: docker with `docker compose` (v2) or `docker-compose` (v1), curl, jq,
# and for the faults root (or sudo), nsenter, iptables and tc (installed with
# apt-get when missing).
# Environment: LEDGER_RPC_ADMIN_TOKEN (default devtoken, as docker-compose.yml),
# E2E_PROJECT (compose project name, default gossipledgere2e), E2E_COMPOSE
# (the compose command, e.g. `docker-compose` for v1; default `docker
# compose` when it answers, else `docker-compose`), E2E_CHAOS_ROUNDS,
# E2E_CHAOS_SEED.
set -euo pipefail
export LC_ALL=C

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-${repo_root}/target}"
readonly script_dir repo_root target_dir

readonly project="${E2E_PROJECT:-gossipledgere2e}"
readonly compose_file="${repo_root}/docker-compose.yml"
readonly wallet_cli="${target_dir}/release/wallet-cli"
readonly testnet_bin="${target_dir}/release/testnet"
readonly log_dir="${target_dir}/e2e-logs"
readonly services=(node1 node2 node3 node4)
readonly urls=(http://127.0.0.1:8081 http://127.0.0.1:8082 http://127.0.0.1:8083 http://127.0.0.1:8084)
all_urls="$(IFS=,; echo "${urls[*]}")"
readonly all_urls
# 1 coin = 100_000_000 base units.
readonly coin=100000000

# The compose file reads the token from the environment; the script sends it.
export LEDGER_RPC_ADMIN_TOKEN="${LEDGER_RPC_ADMIN_TOKEN:-devtoken}"
readonly admin_token="${LEDGER_RPC_ADMIN_TOKEN}"

cargo_build=1
smoke=0
compose_cmd=()
readonly chaos_rounds="${E2E_CHAOS_ROUNDS:-5}"
readonly chaos_seed="${E2E_CHAOS_SEED:-2}"
while (($# > 0)); do
    case "$1" in
        --no-cargo-build) cargo_build=0 ;;
        --smoke) smoke=1 ;;
        -h | --help) sed -n '/^# Usage:/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "e2e.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

# ---------------------------------------------------------------- helpers --

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
script_start_ms="$(now_ms)"
readonly script_start_ms

# Milliseconds as seconds with one decimal: 12345 -> 12.3
format_ms() { printf '%d.%d' $(($1 / 1000)) $((($1 % 1000) / 100)); }

log() {
    local elapsed=$(($(now_ms) - script_start_ms))
    printf '[e2e %6ss] %s\n' "$(format_ms "${elapsed}")" "$*" >&2
}

fail() {
    log "FAIL: $*"
    return 1
}

# Steps run in subshells, so they report figures through a file.
metric() { printf '%s\t%s\n' "$1" "$2" >>"${metrics_file}"; }

# wait_until SECONDS DESCRIPTION COMMAND...: runs COMMAND every half second
# until it succeeds; fails when SECONDS pass first.
wait_until() {
    local seconds="$1" description="$2"
    shift 2
    local deadline=$(($(now_ms) + seconds * 1000))
    until "$@" >/dev/null 2>&1; do
        if (($(now_ms) >= deadline)); then
            fail "timed out after ${seconds}s waiting for ${description}"
            return 1
        fi
        sleep 0.5
    done
}

compose() { "${compose_cmd[@]}" -f "${compose_file}" -p "${project}" "$@"; }

# Works for stopped containers and for both Compose versions (both set
# these labels), unlike `ps -q`, whose meaning differs between them.
container_id() {
    docker ps -a -q \
        --filter "label=com.docker.compose.project=${project}" \
        --filter "label=com.docker.compose.service=$1"
}

# "running/healthy", "running/starting", "exited(101)", ...
health_of() {
    docker inspect \
        -f '{{.State.Status}}{{if eq .State.Status "exited"}}({{.State.ExitCode}}){{end}}{{if .State.Health}}/{{.State.Health.Status}}{{end}}' \
        "$(container_id "$1")" 2>/dev/null || echo missing
}

# wait_healthy SECONDS SERVICE...: waits until every SERVICE is running and
# healthy; fails at once when one has exited, and when SECONDS pass.
wait_healthy() {
    local seconds="$1"
    shift
    local deadline=$(($(now_ms) + seconds * 1000)) service state n_healthy
    while true; do
        n_healthy=0
        for service in "$@"; do
            state="$(health_of "${service}")"
            case "${state}" in
                running/healthy) n_healthy=$((n_healthy + 1)) ;;
                running/*) ;;
                *) fail "${service} is ${state}, not running"; return 1 ;;
            esac
        done
        ((n_healthy == $#)) && return 0
        if (($(now_ms) >= deadline)); then
            for service in "$@"; do log "${service}: $(health_of "${service}")"; done
            fail "timed out after ${seconds}s waiting for $* to be healthy"
            return 1
        fi
        sleep 0.5
    done
}

# url_of nodeN -> http://127.0.0.1:808N
url_of() { echo "${urls[$((${1#node} - 1))]}"; }

rpc_get() { curl -fsS --max-time 5 "$1"; }

status_field() { rpc_get "$1/v1/status" | jq -er ".$2"; }

balance_of() { rpc_get "$1/v1/accounts/$2" | jq -er '.balance'; }

balance_is() { [[ "$(balance_of "$1" "$2")" == "$3" ]]; }

tx_status() { rpc_get "$1/v1/txs/$2" | jq -er '.status'; }

tx_confirmed_on() { [[ "$(tx_status "$1" "$2")" == confirmed ]]; }

tx_confirmed_everywhere() {
    local url
    for url in "${urls[@]}"; do
        tx_confirmed_on "${url}" "$1" || return 1
    done
}

height_at_least() { (($(status_field "$1" height) >= $2)); }

address_of() { "${wallet_cli}" --json address "$1" | jq -er '.address'; }

# testnet_check LABEL TIMEOUT URLS: runs `testnet check`, printing its output.
testnet_check() {
    log "testnet check ($1) --timeout $2"
    "${testnet_bin}" check --rpc-url "$3" --timeout "$2"
}

heights_line() {
    local url line=""
    for url in "${urls[@]}"; do
        line+="${url##*:}=$(status_field "${url}" height 2>/dev/null || echo '?') "
    done
    echo "${line% }"
}

as_root() {
    if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi
}

# ------------------------------------------------------------------ steps --

step_healthy() {
    if ((cargo_build)); then
        log "cargo build --release -p node -p wallet-cli -p testnet"
        (cd "${repo_root}" && cargo build --release -p node -p wallet-cli -p testnet)
    fi
    local binary
    for binary in "${target_dir}/release/ledger-node" "${wallet_cli}" "${testnet_bin}"; do
        [[ -x "${binary}" ]] || fail "${binary} is missing" || return 1
    done
    "${script_dir}/build-image.sh" --no-cargo-build

    log "compose up -d --no-build"
    local start_ms
    start_ms="$(now_ms)"
    compose up -d --no-build
    wait_healthy 120 "${services[@]}"
    local elapsed=$(($(now_ms) - start_ms))
    log "all four healthy after $(format_ms "${elapsed}") s"
    metric "time to healthy" "$(format_ms "${elapsed}") s"
}

step_transfer() {
    local to before sent start_ms elapsed
    to="$(address_of dev:5)"
    before="$(balance_of "${urls[0]}" "${to}")"
    echo "${to} ${before}" >"${work_dir}/transfer"
    log "send 1.5 from dev:0 to dev:5 (${to}) through node1, balance before ${before}"
    start_ms="$(now_ms)"
    sent="$("${wallet_cli}" --rpc-url "${urls[0]}" --json send --from dev:0 --to dev:5 \
        --amount 1.5 --wait --timeout 60)"
    elapsed=$(($(now_ms) - start_ms))
    log "sent: $(jq -c . <<<"${sent}")"
    jq -e '.block_hash != null and .block_height != null' <<<"${sent}" >/dev/null ||
        fail "send --wait printed no block" || return 1
    metric "transfer submit to confirmed (node1)" "$(format_ms "${elapsed}") s"
}

step_visible() {
    local to before expected start_ms elapsed
    read -r to before <"${work_dir}/transfer"
    expected=$((before + 3 * coin / 2))
    start_ms="$(now_ms)"
    wait_until 60 "balance ${expected} of ${to} on node4" balance_is "${urls[3]}" "${to}" "${expected}" || {
        log "node4 says: $(rpc_get "${urls[3]}/v1/accounts/${to}" || true)"
        return 1
    }
    log "node4 shows balance ${expected} for dev:5"
    testnet_check "all four" 60 "${all_urls}"
    elapsed=$(($(now_ms) - start_ms))
    metric "transfer visible on node4 and converged" "$(format_ms "${elapsed}") s"
}

step_chaos() {
    if ! command -v iptables >/dev/null || ! command -v nsenter >/dev/null || ! command -v tc >/dev/null; then
        log "installing iptables, util-linux and iproute2 (Debian packages) for the faults"
        as_root apt-get update -qq >/dev/null 2>&1 || true
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            iptables util-linux iproute2 >/dev/null ||
            fail "iptables, nsenter or tc missing and could not be installed" || return 1
    fi
    local report="${work_dir}/chaos.json" status=0 start_ms elapsed
    log "testnet chaos --rounds ${chaos_rounds} --faults kill,pause,partition,netem --seed ${chaos_seed} --tps 5"
    start_ms="$(now_ms)"
    "${testnet_bin}" chaos --compose-file "${compose_file}" --project "${project}" \
        --rounds "${chaos_rounds}" --faults kill,pause,partition,netem --seed "${chaos_seed}" \
        --tps 5 --converge-timeout 90 --json >"${report}" || status=$?
    elapsed=$(($(now_ms) - start_ms))
    if [[ -s "${report}" ]]; then
        local line
        while IFS= read -r line; do log "  ${line}"; done < <(jq -r '
            (.rounds[] | "round \(.round): \(.description): converged \(.converge_ms // "NO") ms"),
            "convergence p50 \(.convergence.p50_ms) ms, p99 \(.convergence.p99_ms) ms, max \(.convergence.max_ms) ms",
            "deepest reorg \(.deepest_reorg); txs submitted \(.txs.submitted), accepted \(.txs.accepted), confirmed \(.txs.confirmed), pending \(.txs.pending), lost \(.txs.lost)",
            (.violations[] | "VIOLATION: \(.)")' "${report}")
        metric "chaos: rounds, seed" "${chaos_rounds}, ${chaos_seed}"
        metric "chaos: convergence after heal p50/p99/max" \
            "$(jq -r '"\(.convergence.p50_ms)/\(.convergence.p99_ms)/\(.convergence.max_ms) ms"' "${report}")"
        metric "chaos: deepest reorg" "$(jq -r '.deepest_reorg' "${report}") blocks"
        metric "chaos: txs accepted/confirmed/pending/lost" \
            "$(jq -r '"\(.txs.accepted)/\(.txs.confirmed)/\(.txs.pending)/\(.txs.lost)"' "${report}")"
    fi
    metric "chaos: whole run" "$(format_ms "${elapsed}") s"
    ((status == 0)) || fail "testnet chaos exited ${status}" || return 1
}

# ----------------------------------------------------------------- driver --

steps=(
    "a.     build image offline, up, all four healthy|step_healthy"
    "b.     send 1.5 dev:0 -> dev:5 through node1 --wait|step_transfer"
    "c.     balance on node4, testnet check on all four|step_visible"
    "d.     testnet chaos: fault rounds under load, no tx lost|step_chaos"
)
declare -A step_result=()
current_step=""
any_failed=0

print_failing_logs() {
    local service id state
    local printed=0
    for service in "${services[@]}"; do
        id="$(container_id "${service}")"
        [[ -n "${id}" ]] || continue
        state="$(health_of "${service}")"
        if [[ "${state}" != running/healthy ]]; then
            echo "----- logs of ${service} (${state}), last 200 lines -----"
            docker logs --tail 200 "${id}" 2>&1 || true
            printed=1
        fi
    done
    if ((!printed)); then
        # All are up, so the fault is between them: show a little of each.
        for service in "${services[@]}"; do
            id="$(container_id "${service}")"
            [[ -n "${id}" ]] || continue
            echo "----- logs of ${service} (healthy), last 20 lines -----"
            docker logs --tail 20 "${id}" 2>&1 || true
        done
    fi
}

print_summary() {
    local total_ms=$(($(now_ms) - script_start_ms))
    local entry label n_passed=0
    echo
    echo "================ gossip-ledger docker e2e summary ================"
    echo "compose: ${compose_cmd[*]} version ${compose_version:-?}    project: ${project}"
    if [[ -s "${metrics_file:-}" ]]; then
        while IFS=$'\t' read -r label value; do
            printf '  %-52s %s\n' "${label}" "${value}"
        done <"${metrics_file}"
    fi
    echo "------------------------------------------------------------------"
    for entry in "${steps[@]}"; do
        label="${entry%%|*}"
        printf '  %-5s %s\n' "${step_result[${label}]:-SKIP}" "${label}"
        [[ "${step_result[${label}]:-}" == PASS ]] && n_passed=$((n_passed + 1))
    done
    echo "------------------------------------------------------------------"
    printf '  RESULT: %s (%d/%d steps passed), total %s s; node logs in %s\n' \
        "$( ((any_failed)) && echo FAIL || echo PASS)" "${n_passed}" "${#steps[@]}" \
        "$(format_ms "${total_ms}")" "${log_dir}"
    echo "=================================================================="
}

cleanup() {
    local exit_code=$?
    trap - EXIT INT TERM
    set +eu
    ((exit_code != 0)) && any_failed=1
    # A step cut short by Ctrl-C or a signal.
    [[ -n "${current_step}" ]] && step_result["${current_step}"]=INTR
    if [[ -n "${compose_cmd[*]:-}" ]]; then
        mkdir -p "${log_dir}"
        local service id
        for service in "${services[@]}"; do
            id="$(container_id "${service}")"
            [[ -n "${id}" ]] && docker logs "${id}" >"${log_dir}/${service}.log" 2>&1
        done
        ((any_failed)) && print_failing_logs
        log "compose down -v"
        compose down -v --remove-orphans >/dev/null 2>&1 ||
            log "compose down -v failed; remove project ${project} by hand"
    fi
    print_summary
    [[ -n "${work_dir:-}" ]] && rm -rf "${work_dir}"
    ((exit_code != 0)) && exit "${exit_code}"
    ((any_failed)) && exit 1
    exit 0
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/gossip-ledger-e2e.XXXXXX")"
readonly work_dir
readonly metrics_file="${work_dir}/metrics"
: >"${metrics_file}"
# dev:<I> needs no keystore, but keep the wallet away from the user's own.
export LEDGER_KEYSTORE="${work_dir}/keystore"

for tool in docker curl jq; do
    command -v "${tool}" >/dev/null || { echo "e2e.sh: ${tool} not found" >&2; exit 1; }
done
if [[ -n "${E2E_COMPOSE:-}" ]]; then
    read -r -a compose_cmd <<<"${E2E_COMPOSE}"
elif docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
else
    echo "e2e.sh: neither \`docker compose\` nor \`docker-compose\` works" >&2
    exit 1
fi
compose_version="$("${compose_cmd[@]}" version --short 2>/dev/null || echo '?')"
log "using ${compose_cmd[*]} version ${compose_version}, project ${project}"
# A clean slate: nothing left from an interrupted earlier run.
compose down -v --remove-orphans >/dev/null 2>&1 || true

if ((smoke)); then
    steps=("${steps[@]:0:3}")
fi
for entry in "${steps[@]}"; do
    label="${entry%%|*}"
    function_name="${entry##*|}"
    if ((any_failed)); then
        break
    fi
    log "=== step ${label}"
    current_step="${label}"
    # errexit inside a step, without ending the script: a subshell that is
    # not part of a condition (inside `if` or `||` bash ignores set -e).
    set +e
    (
        set -euo pipefail
        "${function_name}"
    )
    step_exit_code=$?
    set -e
    current_step=""
    if ((step_exit_code == 0)); then
        step_result["${label}"]=PASS
    else
        step_result["${label}"]=FAIL
        any_failed=1
        log "step ${label} failed (exit ${step_exit_code}); skipping the rest"
    fi
done
