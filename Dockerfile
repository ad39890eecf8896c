# One image for every pipeline step, built from uv.lock (the same lock as laptops and CI).
#
# Base: CUDA 12.8 "base" flavour on Ubuntu 24.04. The torch in uv.lock (2.10.0, the PyPI CUDA 12.8
# build) brings its own CUDA user-space libraries (cuBLAS, cuDNN, NCCL, the runtime... as
# nvidia-*-cu12 wheels), so the image needs only what the base flavour gives: the NVIDIA container
# environment (NVIDIA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES) and the /usr/local/nvidia
# loader path where GKE/Vertex mount the host driver. No cuda-compat: CUDA 12.x minor-version
# compatibility runs 12.8 on any R525+ driver, and every driver that supports an L4 is R525+.
# "base" keeps the image ~1.5 GB smaller than "runtime"/"cudnn". See docs/vertex.md.
#
# Build args (all optional):
#   CUDA_BASE, UV_IMAGE      base and uv images (scripts/container_check.sh swaps in a Debian
#                            base and a uv stand-in built from PyPI, no registry needed)
#   PYTHON_VERSION           interpreter for the venv [3.11]
#   UV_PYTHON_PREFERENCE     only-managed (default): uv downloads its own CPython; only-system:
#                            use the base image's python3.X (the Debian check base), no download
#   APP_USER, APP_UID        the user that runs the steps [app, 10001]. Escape hatch: if Vertex's
#                            /gcs FUSE mount ever refuses writes from a non-root user, rebuild
#                            with --build-arg APP_USER=root (nothing else changes)
#   GIT_COMMIT               recorded as a label and as DOLLY_LORA_IMAGE_COMMIT
# Secret (optional, BuildKit/buildah): --secret id=ca_bundle,src=FILE, a CA bundle for a
# TLS-intercepting proxy. Used only while uv downloads; never written to a layer.
ARG CUDA_BASE=nvidia/cuda:12.8.1-base-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${CUDA_BASE}
COPY --from=uv /uv /uvx /usr/local/bin/
# nvidia/cuda bases set NVIDIA_REQUIRE_CUDA=cuda>=12.8, which the NVIDIA container toolkit checks
# against the host driver and refuses to start on an older one; minor-version compatibility
# runs 12.8 on any R525+ driver, so the check only blocks hosts that would work.
ENV NVIDIA_DISABLE_REQUIRE=1

# Build-time only: ARGs reach the RUN steps' environment, not the image's.
ARG PYTHON_VERSION=3.11
ARG UV_PYTHON_PREFERENCE=only-managed

# UV_NO_CACHE: uv unpacks into a throwaway cache and deletes it, so no layer keeps the ~6 GB of
# downloaded wheels (the venv files are hard links out of it, so nothing is copied twice).
# UV_COMPILE_BYTECODE: .pyc written at build time, not by every step at start-up.
ENV UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PYTHONUNBUFFERED=1

# ca-certificates for HTTPS at run time (Hugging Face, GCS, W&B); a no-op where the base has it.
RUN if ! dpkg -s ca-certificates >/dev/null 2>&1; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /app
# Dependencies first: this layer is reused while only the code changes. --locked: a uv.lock that
# no longer matches pyproject.toml fails the build instead of being silently used.
COPY pyproject.toml uv.lock ./
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi \
 && uv sync --locked --no-dev --no-install-project --python "$PYTHON_VERSION"

# The project itself (components import their logic modules at run time), installed as a wheel;
# building it needs README.md (pyproject's readme) and hatchling (downloaded, hence the secret).
COPY README.md compile.py ./
COPY components ./components
COPY pipelines ./pipelines
COPY planning ./planning
COPY cli ./cli
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi \
 && uv sync --locked --no-dev --no-editable --python "$PYTHON_VERSION" \
 && /opt/venv/bin/python -c "import kfp, torch, components.fine_tune.train, pipelines.lora_pipeline; \
assert (torch.version.cuda or '').startswith('12.'), \
f'torch {torch.__version__} is built for CUDA {torch.version.cuda}, not 12.x: it needs a newer \
driver than the R525+ every L4 host has (docs/vertex.md)'"

# The user that runs the steps, declared after the venv so that changing it rebuilds nothing big.
# Everything a step writes outside its /gcs outputs and /tmp goes under HOME, which it owns:
# HF_HOME, ~/.cache (torch, triton), ~/.config (matplotlib, wandb) and W&B's run folder, which
# defaults to the working directory (/app, root-owned: wandb would fall back to /tmp, warning).
ARG APP_USER=app
ARG APP_UID=10001
ENV HOME=/home/app \
    HF_HOME=/home/app/.cache/huggingface \
    WANDB_DIR=/home/app
RUN if [ "$APP_USER" != root ]; then \
        useradd --uid "$APP_UID" --user-group --no-create-home --home-dir "$HOME" \
            --shell /bin/sh "$APP_USER"; \
    fi \
 && mkdir -p "$HF_HOME" \
 && chown -R "$APP_USER:" "$HOME"

# KFP runs `sh -ec '... python3 -m kfp.dsl.executor_main ...'`: the venv's python3 must come first.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
USER ${APP_USER}

ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.revision=$GIT_COMMIT \
      org.opencontainers.image.source="dolly-lora-pipeline"
ENV DOLLY_LORA_IMAGE_COMMIT=$GIT_COMMIT
