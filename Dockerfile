# gossip-ledger node image, built from source.
#
#   docker build -t gossip-ledger:latest .
#   docker run --rm -p 127.0.0.1:8080:8080 -v ledger-data:/data gossip-ledger:latest
#
# The final image holds `ledger-node` (the entrypoint) and `wallet-cli` in
# /usr/local/bin, runs as the unprivileged user `ledger` (uid 10001) and keeps
# its chain in the volume /data. RPC listens on 0.0.0.0:8080 and P2P on
# 0.0.0.0:7070 inside the container; publish them as you need.
#
# testnet/docker/build-image.sh builds an image with the same tag, user,
# paths, environment, ports and healthcheck FROM scratch out of host-built
# binaries, for machines with no registry. Keep the two in step.

# The two base images below come from a registry. Where none can be reached
# (a pull or "failed to resolve" error naming rust:1-bookworm), run
# testnet/docker/build-image.sh instead: the same tag, from host binaries.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# --locked: build exactly the dependency versions of Cargo.lock.
RUN cargo build --release --locked -p node -p wallet-cli \
    && install -D -m 0755 target/release/ledger-node /out/ledger-node \
    && install -D -m 0755 target/release/wallet-cli /out/wallet-cli

FROM debian:bookworm-slim
# The binaries link only glibc and libgcc_s (reqwest is built without TLS),
# which bookworm-slim already has, so no packages are installed.
RUN groupadd --system --gid 10001 ledger \
    && useradd --system --uid 10001 --gid ledger --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin ledger \
    && mkdir -p /data \
    && chown ledger:ledger /data
COPY --from=build /out/ledger-node /out/wallet-cli /usr/local/bin/
ENV LEDGER_DATA_DIR=/data \
    LEDGER_RPC_ADDR=0.0.0.0:8080 \
    LEDGER_P2P_ADDR=0.0.0.0:7070
USER ledger:ledger
WORKDIR /data
# Declared after the chown above, so a new named volume starts out owned by
# `ledger`.
VOLUME ["/data"]
EXPOSE 7070 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["ledger-node", "healthcheck", "--rpc-url", "http://127.0.0.1:8080"]
ENTRYPOINT ["ledger-node"]
LABEL org.opencontainers.image.title="gossip-ledger" \
      org.opencontainers.image.description="gossip-ledger node (built from source)"
