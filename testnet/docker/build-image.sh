#!/usr/bin/env bash
# Builds the image `gossip-ledger:latest` with no registry at all.
#
# The root Dockerfile builds from source on `rust` and `debian` base images,
# which must be pulled. This script needs nothing but the local Docker
# engine: it starts `FROM scratch` and copies in the release binaries built on
# this host, every shared library `ldd` lists for them (at the same absolute
# paths, dynamic loader included) and a few files under /etc. The result has
# the same tag, user, paths, environment, ports, volume and healthcheck as the
# Dockerfile's image, so docker-compose.yml runs either one.
#
# Usage: testnet/docker/build-image.sh [--no-cargo-build] [--tag TAG] [--binary PATH]...
#   --no-cargo-build  use target/release/{ledger-node,wallet-cli} as they are
#   --tag TAG         image tag (default gossip-ledger:latest)
#   --binary PATH     put PATH in /usr/local/bin instead of our binaries
#                     (repeatable; to try the mechanism with any host program)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-${repo_root}/target}"
readonly script_dir repo_root target_dir
# Numeric ids, because a scratch image has no useradd; the same ids as the
# `ledger` user of the Dockerfile.
readonly ledger_uid=10001
readonly ledger_gid=10001

tag="gossip-ledger:latest"
cargo_build=1
binaries=()

usage() {
    sed -n '/^# Usage:/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while (($# > 0)); do
    case "$1" in
        --no-cargo-build) cargo_build=0 ;;
        --tag) tag="${2:?--tag needs a value}"; shift ;;
        --binary) binaries+=("${2:?--binary needs a path}"); shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build-image.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

for tool in docker ldd; do
    command -v "${tool}" >/dev/null || { echo "build-image.sh: ${tool} not found" >&2; exit 1; }
done

if ((${#binaries[@]} == 0)); then
    if ((cargo_build)); then
        echo "==> cargo build --release -p node -p wallet-cli"
        (cd "${repo_root}" && cargo build --release -p node -p wallet-cli)
    fi
    binaries=("${target_dir}/release/ledger-node" "${target_dir}/release/wallet-cli")
fi
for binary in "${binaries[@]}"; do
    [[ -f "${binary}" && -x "${binary}" ]] || {
        echo "build-image.sh: ${binary} is missing or not executable (build it, or drop --no-cargo-build)" >&2
        exit 1
    }
done

# A fresh context every time, so nothing stale from an earlier build lands in
# the image.
readonly context="${target_dir}/docker-image"
readonly rootfs="${context}/rootfs"
rm -rf "${context}"
mkdir -p "${rootfs}/usr/local/bin" "${rootfs}/etc" "${rootfs}/tmp" "${context}/data"
chmod 1777 "${rootfs}/tmp"
chmod 0755 "${rootfs}" "${rootfs}/usr" "${rootfs}/usr/local" "${rootfs}/usr/local/bin" "${rootfs}/etc"

# Copies a host file into the rootfs at the same absolute path, following
# symlinks: the loader and libc are found by path, and merged-/usr symlinks
# such as /lib -> usr/lib do not exist in a scratch image.
copy_at_same_path() {
    local source="$1"
    local destination="${rootfs}${source}"
    [[ -e "${destination}" ]] && return 0
    mkdir -p "$(dirname "${destination}")"
    cp -L "${source}" "${destination}"
    chmod 0755 "${destination}"
}

for binary in "${binaries[@]}"; do
    install -m 0755 "${binary}" "${rootfs}/usr/local/bin/$(basename "${binary}")"
    # ldd lines look like `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`
    # or `/lib64/ld-linux-x86-64.so.2 (0x...)`; linux-vdso has no file.
    # A static binary makes ldd say "not a dynamic executable" and fail.
    if ! ldd_output="$(ldd "${binary}" 2>&1)"; then
        if grep -q 'not a dynamic executable' <<<"${ldd_output}"; then
            continue
        fi
        echo "build-image.sh: ldd ${binary} failed: ${ldd_output}" >&2
        exit 1
    fi
    if grep -q 'not found' <<<"${ldd_output}"; then
        echo "build-image.sh: ${binary} has unresolved libraries:" >&2
        grep 'not found' <<<"${ldd_output}" >&2
        exit 1
    fi
    while read -r library; do
        copy_at_same_path "${library}"
    done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"${ldd_output}")
done

# glibc reads these to name users and to resolve host names. Without
# nsswitch.conf it would still work, but say it plainly: /etc/hosts first,
# then DNS (Docker's embedded resolver answers the compose service names).
cat >"${rootfs}/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
ledger:x:${ledger_uid}:${ledger_gid}:gossip-ledger:/data:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"${rootfs}/etc/group" <<EOF
root:x:0:
ledger:x:${ledger_gid}:
nogroup:x:65534:
EOF
cat >"${rootfs}/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
chmod 0644 "${rootfs}/etc/passwd" "${rootfs}/etc/group" "${rootfs}/etc/nsswitch.conf"

# Keep this in step with the root Dockerfile's final stage.
cat >"${context}/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
COPY --chown=${ledger_uid}:${ledger_gid} data/ /data/
ENV PATH=/usr/local/bin \\
    LEDGER_DATA_DIR=/data \\
    LEDGER_RPC_ADDR=0.0.0.0:8080 \\
    LEDGER_P2P_ADDR=0.0.0.0:7070
USER ${ledger_uid}:${ledger_gid}
WORKDIR /data
VOLUME ["/data"]
EXPOSE 7070 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \\
    CMD ["ledger-node", "healthcheck", "--rpc-url", "http://127.0.0.1:8080"]
ENTRYPOINT ["ledger-node"]
LABEL org.opencontainers.image.title="gossip-ledger" \\
      org.opencontainers.image.description="gossip-ledger node (FROM scratch, host-built binaries)"
EOF

echo "==> docker build -t ${tag} ${context}"
echo "    binaries: ${binaries[*]}"
echo "    libraries: $(cd "${rootfs}" && find . -type f \( -name '*.so*' -o -name 'ld-linux*' \) | sed 's|^\.||' | sort | tr '\n' ' ')"
previous_image="$(docker image inspect --format '{{.Id}}' "${tag}" 2>/dev/null || true)"
docker build --tag "${tag}" "${context}"
# The image this build replaced keeps its layers, untagged; drop it so that
# repeated runs do not pile them up. Docker refuses while a container still
# uses it, which is fine.
if [[ -n "${previous_image}" && "${previous_image}" != "$(docker image inspect --format '{{.Id}}' "${tag}")" ]]; then
    docker image rm "${previous_image}" >/dev/null 2>&1 || true
fi
echo "==> built ${tag}"
