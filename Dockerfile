# hookgate container image.
#
#   docker build -t hookgate .
#   docker run -p 8080:8080 -p 9090:9090 \
#     -v "$PWD/hookgate.toml:/etc/hookgate/hookgate.toml:ro" \
#     -v hookgate-data:/data \
#     hookgate
#
# In the mounted config set `storage.path = "/data"` (the volume). To reach
# the admin listener from outside the container, bind it to 0.0.0.0 and set
# `admin.token`; hookgate refuses a non-loopback admin listener without one.

# --- build ---------------------------------------------------------------
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

# --- runtime -------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home \
       --home-dir /data --shell /usr/sbin/nologin hookgate \
    && mkdir -p /data /etc/hookgate \
    && chown hookgate:hookgate /data
COPY --from=build /src/target/release/hookgate /usr/local/bin/hookgate
USER hookgate
WORKDIR /data
VOLUME /data
# 8080: public ingress (server.listen); 9090: admin (admin.listen).
EXPOSE 8080 9090
# hookgate handles SIGTERM itself (graceful drain), so it can run as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["hookgate"]
CMD ["serve", "--config", "/etc/hookgate/hookgate.toml"]
