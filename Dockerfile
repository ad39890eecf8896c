# One image for every pipeline step, built from uv.lock (the same lock as laptops and CI).
#
# Base: CUDA 13 "base" flavour on Ubuntu 24.04. The torch wheel in uv.lock (2.15.0, CUDA 13.x
# build from PyPI) brings its own CUDA user-space libraries (cuBLAS, cuDNN, NCCL... as nvidia-*
# wheels), so the image needs only the driver-facing layer: the NVIDIA container env, and the
# cuda-compat libraries that let CUDA 13 run on datacenter GPUs (the L4 is one) whose host driver
# is older. "base" keeps the image ~1.5 GB smaller than "runtime"/"cudnn". See docs/vertex.md.
ARG CUDA_BASE=nvidia/cuda:13.0.2-base-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${CUDA_BASE}
COPY --from=uv /uv /uvx /usr/local/bin/

ENV DEBIAN_FRONTEND=noninteractive \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/tmp/hf-home
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first (cached layer while only the code changes); exactly what uv.lock pins.
COPY pyproject.toml uv.lock README.md ./
RUN uv python install 3.11 \
 && uv sync --frozen --no-dev --no-install-project --python 3.11

# The project itself (components import their logic modules at run time), installed as a wheel.
COPY components ./components
COPY pipelines ./pipelines
COPY cli ./cli
COPY compile.py ./
RUN uv sync --frozen --no-dev --no-editable --python 3.11 \
 && /opt/venv/bin/python -c "import kfp, torch, components.fine_tune.train"

# KFP runs `python3 -m kfp.dsl.executor_main ...`: the venv's python3 must come first.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.revision=$GIT_COMMIT \
      org.opencontainers.image.source="dolly-lora-pipeline"
ENV DOLLY_LORA_IMAGE_COMMIT=$GIT_COMMIT
