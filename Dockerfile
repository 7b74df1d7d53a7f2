FROM debian:bookworm-slim

# Only used where pip must trust a local CA bundle during the build (see README); unset elsewhere.
ARG PIP_CERT

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md /src/
COPY etcdpy /src/etcdpy
RUN python3 -m venv /opt/etcdpy \
    && /opt/etcdpy/bin/pip install --no-cache-dir ${PIP_CERT:+--cert "$PIP_CERT"} /src \
    && rm -rf /src

ENV PATH=/opt/etcdpy/bin:$PATH \
    ETCD_DATA_DIR=/var/lib/etcdpy \
    ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379 \
    ETCD_ADVERTISE_CLIENT_URLS=http://localhost:2379 \
    ETCD_LISTEN_PEER_URLS=http://0.0.0.0:2380
VOLUME /var/lib/etcdpy
EXPOSE 2379 2380
ENTRYPOINT ["etcdpy"]
