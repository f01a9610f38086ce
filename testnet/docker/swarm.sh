#!/usr/bin/env bash
# Proves deploy/swarm/stack.yml on a single-node Docker Swarm:
#   1. builds gossip-ledger:latest offline (build-image.sh) unless it exists;
#   2. `docker swarm init` when this engine is in no swarm (and leaves it
#      again at the end; a swarm that was already there is left alone);
#   3. `docker stack deploy --resolve-image never` (4 nodes + 2 miners), waits
#      until every task is running and healthy;
#   4. (once the miners made 5 blocks) with SWARM_CHAOS_ROUNDS=N (default 0:
#      skipped), `testnet chaos --stack <stack>`: N rounds of kill, pause,
#      partition and netem on the 6 tasks, from the host, with a verdict
#      (4 rounds took 279 s on a loaded 2-core machine, too long for CI);
#   5. `docker service scale <stack>_node=12`, waits for the 12;
#   6. runs `testnet check` in a one-off container on the stack's overlay
#      network against all 14 tasks, and reports the time from the scale
#      command to convergence;
#   7. always tears down: `docker stack rm`, the per-task volumes, and
#      `docker swarm leave --force` when it started the swarm.
# Every wait has a deadline. Exit 0 only when all 14 converged (and the
# chaos rounds, if asked for, passed).
#
# Usage: testnet/docker/swarm.sh [--no-cargo-build] [--scale N]
#   --no-cargo-build  use target/release/{ledger-node,wallet-cli,testnet} as they are
#   --scale N         replicas of `node` after the scale-up (default 12)
# Environment: SWARM_STACK (stack name, default glswarm), SWARM_RPC_PORT
# (published RPC port, default 18080), SWARM_CHAOS_ROUNDS (default 0),
# SWARM_CHAOS_SEED (default 25: its first 4 rounds on 6 tasks draw each
# fault once).
set -euo pipefail
export LC_ALL=C

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-${repo_root}/target}"
readonly script_dir repo_root target_dir
readonly stack="${SWARM_STACK:-glswarm}"
readonly stack_file="${repo_root}/deploy/swarm/stack.yml"
readonly testnet_bin="${target_dir}/release/testnet"
readonly log_dir="${target_dir}/swarm-logs"

cargo_build=1
scale_to=12
while (($# > 0)); do
    case "$1" in
        --no-cargo-build) cargo_build=0 ;;
        --scale) scale_to="${2:?--scale needs a number}"; shift ;;
        -h | --help) sed -n '/^# Usage:/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "swarm.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
started_ms="$(now_ms)"
readonly started_ms
format_ms() { printf '%d.%d' $(($1 / 1000)) $((($1 % 1000) / 100)); }
log() { printf '[swarm %6ss] %s\n' "$(format_ms $(($(now_ms) - started_ms)))" "$*" >&2; }

started_swarm=0
had_gwbridge=0
deployed=0

# running_tasks SERVICE: how many of its tasks run with a healthy container.
running_tasks() {
    local ids id n=0
    ids="$(docker ps -q --filter "label=com.docker.swarm.service.name=${stack}_$1")"
    for id in ${ids}; do
        [[ "$(docker inspect -f '{{.State.Health.Status}}' "${id}" 2>/dev/null)" == healthy ]] && n=$((n + 1))
    done
    echo "${n}"
}

# wait_tasks SECONDS SERVICE COUNT: until COUNT healthy tasks run.
wait_tasks() {
    local deadline=$(($(now_ms) + $1 * 1000)) n
    while true; do
        n="$(running_tasks "$2")"
        ((n >= $3)) && return 0
        if (($(now_ms) >= deadline)); then
            log "FAIL: only ${n} of $3 ${2} tasks healthy after $1 s"
            docker service ps --no-trunc "${stack}_$2" >&2 || true
            return 1
        fi
        sleep 1
    done
}

# task_urls: the RPC URL of every task, by its IP on the stack's network.
task_urls() {
    local id ip urls=()
    for id in $(docker ps -q --filter "label=com.docker.stack.namespace=${stack}"); do
        ip="$(docker inspect -f "{{(index .NetworkSettings.Networks \"${stack}_ledger\").IPAddress}}" "${id}")"
        urls+=("http://${ip}:8080")
    done
    (IFS=,; echo "${urls[*]}")
}

cleanup() {
    local exit_code=$?
    trap - EXIT INT TERM
    set +e
    if ((deployed)); then
        mkdir -p "${log_dir}"
        local id
        for id in $(docker ps -aq --filter "label=com.docker.stack.namespace=${stack}"); do
            docker logs "${id}" >"${log_dir}/$(docker inspect -f '{{.Name}}' "${id}" | tr -d /).log" 2>&1
        done
        log "docker stack rm ${stack}"
        docker stack rm "${stack}" >/dev/null
        # Tasks stop in the background; volumes can go once their containers have.
        local deadline=$(($(now_ms) + 60000))
        while [[ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=${stack}")" ]] &&
            (($(now_ms) < deadline)); do
            sleep 1
        done
        local volumes
        volumes="$(docker volume ls -q | grep -E "^${stack}_(node|miner)-[0-9]+$" || true)"
        [[ -n "${volumes}" ]] && docker volume rm ${volumes} >/dev/null
        deadline=$(($(now_ms) + 30000))
        while docker network inspect "${stack}_ledger" >/dev/null 2>&1 && (($(now_ms) < deadline)); do
            sleep 1
        done
    fi
    if ((started_swarm)); then
        log "docker swarm leave --force (this script started the swarm)"
        docker swarm leave --force >/dev/null
        # `swarm init` made this bridge; leave the engine as we found it
        # (best effort: the engine may still hold an endpoint on it).
        ((had_gwbridge)) || docker network rm docker_gwbridge >/dev/null 2>&1 || true
    fi
    log "$( ((exit_code == 0)) && echo PASS || echo FAIL) (exit ${exit_code}); task logs in ${log_dir}"
    exit "${exit_code}"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

if ((cargo_build)); then
    log "cargo build --release -p node -p wallet-cli -p testnet"
    (cd "${repo_root}" && cargo build --release -p node -p wallet-cli -p testnet)
fi
[[ -x "${testnet_bin}" ]] || { log "FAIL: ${testnet_bin} is missing"; exit 1; }
if ! docker image inspect gossip-ledger:latest >/dev/null 2>&1; then
    "${script_dir}/build-image.sh" --no-cargo-build
fi

if [[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]]; then
    log "docker swarm init (single node)"
    docker network inspect docker_gwbridge >/dev/null 2>&1 && had_gwbridge=1
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
    started_swarm=1
else
    log "this engine is already in a swarm: using it, and leaving it as it is"
fi

log "docker stack deploy --resolve-image never -c deploy/swarm/stack.yml ${stack}"
deployed=1
deploy_ms="$(now_ms)"
LEDGER_SWARM_RPC_PORT="${SWARM_RPC_PORT:-18080}" \
    docker stack deploy --resolve-image never -c "${stack_file}" "${stack}" >/dev/null
wait_tasks 120 node 4
wait_tasks 60 miner 2
log "4 nodes + 2 miners healthy after $(format_ms $(($(now_ms) - deploy_ms))) s"

run_check() {
    docker run --rm --network "${stack}_ledger" \
        -v "${testnet_bin}:/usr/local/bin/testnet:ro" --entrypoint testnet \
        gossip-ledger:latest check --rpc-url "$(task_urls)" --timeout "$1"
}
# Let the miners make a few blocks first, so the new replicas have a chain
# to sync and not just the genesis block to agree on.
deadline=$(($(now_ms) + 180000))
while true; do
    out="$(run_check 120)"
    echo "${out}"
    height="$(sed -n 's/.* at height \([0-9]*\) .*/\1/p' <<<"${out}")"
    ((${height:-0} >= 5)) && break
    if (($(now_ms) >= deadline)); then
        log "FAIL: the chain is at height ${height:-?} after 180 s; the miners do not mine"
        exit 1
    fi
    sleep 2
done

chaos_rounds="${SWARM_CHAOS_ROUNDS:-0}"
if ((chaos_rounds > 0)); then
    log "testnet chaos --stack ${stack} --rounds ${chaos_rounds} --faults kill,pause,partition,netem --seed ${SWARM_CHAOS_SEED:-25}"
    "${testnet_bin}" chaos --stack "${stack}" --rounds "${chaos_rounds}" \
        --faults kill,pause,partition,netem --seed "${SWARM_CHAOS_SEED:-25}" --tps 5 \
        --converge-timeout 90
    log "chaos rounds on the swarm passed"
fi

log "docker service scale ${stack}_node=${scale_to}"
scale_ms="$(now_ms)"
docker service scale --detach "${stack}_node=${scale_to}" >/dev/null
wait_tasks 180 node "${scale_to}"
healthy_ms="$(now_ms)"
log "${scale_to} nodes healthy $(format_ms $((healthy_ms - scale_ms))) s after the scale command"
run_check 180
done_ms="$(now_ms)"
total=$((scale_to + 2))
log "RESULT: all ${total} tasks converged $(format_ms $((done_ms - scale_ms))) s after \`docker service scale\` ($(format_ms $((done_ms - healthy_ms))) s after the new tasks were healthy)"
