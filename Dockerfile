# syntax=docker/dockerfile:1
# Image for WeChat Cloud Run (微信云托管): listens on $PORT (80), runs as a non-root user.
# Dependencies are built in their own layer (cargo-chef), so a code change rebuilds only
# this crate, not every dependency.

ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS chef
# Builders in China: a crates.io mirror (sparse index), off by default. Cloud Run's builder
# passes no build arguments, so set the default here, e.g.
#   ARG CARGO_MIRROR=sparse+https://rsproxy.cn/index/
#   ARG CARGO_MIRROR=sparse+https://mirrors.ustc.edu.cn/crates.io-index/
ARG CARGO_MIRROR=
RUN if [ -n "$CARGO_MIRROR" ]; then \
      printf '[source.crates-io]\nreplace-with = "mirror"\n\n[source.mirror]\nregistry = "%s"\n' "$CARGO_MIRROR" \
        >> "${CARGO_HOME:-/usr/local/cargo}/config.toml"; \
    fi
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /build

FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
# The dependency layer: cached until Cargo.toml / Cargo.lock change.
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
# Reported by /health and X-App-Version's companion "commit" (pass --build-arg APP_COMMIT=$(git rev-parse --short HEAD)).
ARG APP_COMMIT=unknown
ENV APP_COMMIT=${APP_COMMIT}
RUN cargo build --release --locked --bin companion-backend

FROM ${RUNTIME_IMAGE} AS runtime
# A Debian mirror host for the runtime packages, off by default, e.g.
#   ARG DEBIAN_MIRROR=mirrors.tuna.tsinghua.edu.cn   (or mirrors.aliyun.com, mirrors.cloud.tencent.com)
ARG DEBIAN_MIRROR=
RUN if [ -n "$DEBIAN_MIRROR" ]; then \
      sed -i "s|deb.debian.org|$DEBIAN_MIRROR|g" /etc/apt/sources.list.d/debian.sources; \
    fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata libcap2-bin \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder /build/target/release/companion-backend /app/companion-backend
COPY config /app/config
# Port 80 is below 1024: allow the non-root user to bind it.
RUN setcap 'cap_net_bind_service=+ep' /app/companion-backend \
    && apt-get purge -y libcap2-bin && apt-get autoremove -y \
    && chown -R app:app /app
ENV TZ=Asia/Shanghai \
    PORT=80 \
    APP_ENV=production \
    RUST_LOG=info
USER app
EXPOSE 80
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/app/companion-backend", "healthcheck"]
ENTRYPOINT ["/app/companion-backend"]
