# Prism: multi-stage build, slim non-root runtime.
#   docker build -t prism .
#   docker run -p 8080:8080 -p 9090:9090 -e PRISM_API_KEYS=sk-prism-... \
#     -e OPENAI_API_KEY=... -v prism-data:/var/lib/prism prism
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --bins && strip target/release/prism target/release/prism-mock

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/prism prism \
    && mkdir -p /etc/prism /var/lib/prism \
    && chown prism:prism /var/lib/prism
COPY --from=build /src/target/release/prism /usr/local/bin/prism
COPY conf/prism.toml /etc/prism/prism.toml
ENV PRISM_CONFIG=/etc/prism/prism.toml \
    PRISM_DATA_DIR=/var/lib/prism \
    PRISM_LISTEN=0.0.0.0:8080 \
    PRISM_ADMIN_LISTEN=0.0.0.0:8081 \
    PRISM_METRICS_LISTEN=0.0.0.0:9090
USER prism
VOLUME ["/etc/prism", "/var/lib/prism"]
# data plane, control plane, metrics
EXPOSE 8080 8081 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["prism", "healthcheck"]
ENTRYPOINT ["prism"]
CMD ["serve"]
