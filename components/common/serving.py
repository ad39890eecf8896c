"""How a merged model is served: Google's prebuilt vLLM container, its routes and arguments, and
the chat request it answers.

Why one module: the register step (the Model's container spec), the deploy step, `submit
deploy/predict` and the local server must agree on the image, the port, the routes and on how a
prompt becomes a chat request, or a registered model would not answer what `predict` sends.
Source of the image, args, routes and port: Vertex AI Model Garden's own Gemma notebooks
(GoogleCloudPlatform/vertex-ai-samples, `deploy_model_vllm`), see docs/serving.md.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Model Garden's prebuilt vLLM serving image, the tag its Gemma 3 notebook deploys
# (notebooks/community/model_garden/model_garden_gemma3_deployment_on_vertex.ipynb). Pinned by
# its dated tag: no public source gives its digest. Nor do they state its versions; these are
# what vLLM's newest release resolved to on the tag's date (`uv pip compile` of `vllm`
# with --exclude-newer 2025-12-05: vllm 0.12.0, transformers 4.57.3; vLLM requires
# transformers >=4.56.0,<5). tests/unit/test_serving_compat.py loads merged/ with both 4.x ends.
VLLM_SERVING_IMAGE = (
    "us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/"
    "pytorch-vllm-serve:20251205_0916_RC01"
)
SERVING_IMAGE_DATE = "2025-12-05"
SERVING_VLLM_VERSION = "0.12.0"
SERVING_TRANSFORMERS_VERSION = "4.57.3"
SERVING_TRANSFORMERS_FLOOR = "4.56.0"  # vLLM 0.12's requirement: transformers >=4.56.0,<5
SERVING_PORT = 8080
PREDICT_ROUTE = "/generate"  # also answers {"@requestFormat": "chatCompletions", ...}
HEALTH_ROUTE = "/ping"
# bf16: the dtype Gemma 3 was trained in and the one the L4 (Ada) runs natively; fp16 overflows
# Gemma's activations.
SERVING_DTYPE = "bfloat16"
SHARED_MEMORY_MB = 16 * 1024  # as Model Garden sets it; g2-standard-8 has 32 GB of RAM
# How long Vertex lets the container become healthy; the deploy step waits this plus a margin
# (components.deploy.deploy.deploy_wait_s), so Vertex gives up first.
DEPLOYMENT_TIMEOUT_S = 1800


def vllm_args(model_uri: str, max_model_len: int, accelerator_count: int = 1) -> list[str]:
    """The container's command line (Model Garden's `deploy_model_vllm`, minus its LoRA-serving
    flags: the adapter is merged). The weights are read from `model_uri` (gs://)."""
    return [
        "python", "-m", "vllm.entrypoints.api_server",
        "--host=0.0.0.0",
        f"--port={SERVING_PORT}",
        f"--model={model_uri}",
        f"--tensor-parallel-size={accelerator_count}",
        "--swap-space=16",
        f"--max-model-len={max_model_len}",
        f"--dtype={SERVING_DTYPE}",
        "--gpu-memory-utilization=0.9",
        "--max-num-seqs=256",
        "--disable-log-stats",
    ]


def container_spec(
    image: str, model_uri: str, max_model_len: int, base_model: str = "", gpus: int = 1,
) -> dict[str, Any]:
    """`aiplatform.Model.upload` keyword arguments of the serving container; `gpus` is the
    serving machine's count, over which vLLM splits the model (tensor parallel)."""
    env = {"DEPLOY_SOURCE": "dolly-lora-pipeline"}
    if base_model:
        env["MODEL_ID"] = base_model  # what Model Garden's container reports as the model
    return {
        "serving_container_image_uri": image,
        "serving_container_args": vllm_args(model_uri, max_model_len, gpus),
        "serving_container_ports": [SERVING_PORT],
        "serving_container_predict_route": PREDICT_ROUTE,
        "serving_container_health_route": HEALTH_ROUTE,
        "serving_container_environment_variables": env,
        "serving_container_shared_memory_size_mb": SHARED_MEMORY_MB,
        "serving_container_deployment_timeout": DEPLOYMENT_TIMEOUT_S,
    }


def chat_messages(prompt: str | list[dict[str, str]], system_prompt: str = ""
                  ) -> list[dict[str, str]]:
    """A user prompt (or a conversation ending on a user turn) as chat messages, with the
    optional system message first unless it has its own: the one shape the inference step, the
    local server and the Vertex endpoint all receive."""
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if turns and turns[0]["role"] == "system":
        return turns
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, *turns]


def vertex_chat_instance(
    messages: list[dict[str, str]], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0
) -> dict[str, Any]:
    """One Vertex prediction instance in the OpenAI chat format Model Garden's vLLM container
    accepts (`"@requestFormat": "chatCompletions"`). temperature 0 = greedy, as inference."""
    return {
        "@requestFormat": "chatCompletions",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
    }


def openai_chat_request(
    messages: list[dict[str, str]], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0
) -> dict[str, Any]:
    """The same request for an OpenAI-compatible server (`submit serve`, `transformers serve`)."""
    return {"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
            "top_p": top_p, "stream": False}


def chat_answer(response: Any) -> str:
    """The assistant's text from an OpenAI chat completion, as the Vertex container wraps it
    (`{"predictions": {...}}`, a list of one, or the completion itself), stripped like the
    inference step's output."""
    if isinstance(response, str):
        response = json.loads(response)
    if isinstance(response, dict) and "predictions" in response:
        response = response["predictions"]
    if isinstance(response, list) and response:
        response = response[0]
    try:
        return str(response["choices"][0]["message"]["content"] or "").strip()
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"not a chat completion: {str(response)[:200]}") from None


def label_value(value: str) -> str:
    """A Vertex label value: lowercase letters, digits, '-', '_', at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", str(value).lower())[:63]


def display_name_for(base_model: str | None) -> str:
    """`google/gemma-3-1b-it` -> `dolly-lora-gemma-3-1b-it`: one registry model per base model,
    so adapters of different bases never become versions of one entry."""
    name = (base_model or "model").rstrip("/").rsplit("/", 1)[-1].removeprefix("embedded:")
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "model"
    return f"dolly-lora-{slug}"[:128]
