# One image for the whole demo stack: users_service, products_service, gateway
# and the tern_call client. docker-compose.yml picks the command per service.
#   docker build -t tern .        (or: docker compose up --build)

# --- build ------------------------------------------------------------------
FROM debian:bookworm AS build
WORKDIR /src
# The project's own package list (what the build needs, not the tests), in
# its own layer: source edits keep it cached.
COPY scripts/setup scripts/setup
RUN scripts/setup --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
# ccache (scripts/setup installs it) keeps its cache in a build cache mount,
# so a rebuild after an edit recompiles only what changed (BuildKit and
# buildah/podman both keep such mounts between builds).
RUN --mount=type=cache,target=/root/.cache/ccache,id=tern-ccache \
    cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DTERN_BUILD_TESTS=OFF -DTERN_BUILD_BENCH=OFF \
 && cmake --build build-release --target users_service products_service gateway tern_call \
 && mkdir -p /out/bin \
 && cp build-release/services/users/users_service \
       build-release/services/products/products_service \
       build-release/gateway/gateway \
       build-release/tools/tern_call /out/bin/ \
 && strip /out/bin/*

# --- runtime ----------------------------------------------------------------
FROM debian:bookworm
# Shared libraries the binaries link (libstdc++ is in the base), and tini as
# PID 1 so signals reach the server and `docker stop` is quick.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libspdlog1.10 libsqlite3-0 libmimalloc2.0 libprometheus-cpp-core1.0 libssl3 libc-ares2 libpq5 libre2-9 tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 10001 tern \
 && useradd --system --uid 10001 --gid tern --home-dir /var/lib/tern --shell /usr/sbin/nologin tern \
 && mkdir -p /var/lib/tern /etc/tern \
 && chown tern:tern /var/lib/tern
COPY --from=build /out/bin/ /usr/local/bin/
COPY gateway/routes.json /etc/tern/routes.json
# Fail the build, not the container, if a shared library is missing.
RUN if ldd /usr/local/bin/* | grep -F 'not found'; then exit 1; fi
# Defaults for running in a container; docker-compose.yml sets the rest.
ENV HOST=0.0.0.0 \
    ADMIN_HOST=0.0.0.0 \
    DATA_DIR=/var/lib/tern \
    GATEWAY_CONFIG=/etc/tern/routes.json
USER tern
WORKDIR /var/lib/tern
EXPOSE 3000 3001 3002 9100 9101 9102
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["gateway"]
