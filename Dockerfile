# The shop backend, built from this repository.
#   docker build -t shop-backend .
#   docker run --rm -p 8080:8080 shop-backend --listen 0.0.0.0:8080 --data-dir /data
# docker-compose.yml runs it in distributed mode, one container per service.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka is built from source: it needs make, a C compiler and perl,
# which the Rust image has.
COPY . .
RUN cargo build --release --locked -p shop-backend \
    && cp target/release/shop-backend /usr/local/bin/shop-backend

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home shop
COPY --from=build /usr/local/bin/shop-backend /usr/local/bin/shop-backend
USER shop
WORKDIR /data
EXPOSE 8080 8081 8082 8083
ENTRYPOINT ["shop-backend"]
