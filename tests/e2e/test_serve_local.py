"""`submit serve`: the real HTTP server (transformers serve) on the tiny model's merged export,
asked over HTTP by `submit predict --local`, answers exactly what the inference step generates."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from components.common.config import ExportConfig
from tests.unit.test_export import BASE, make_adapter

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Summarize: The quick brown fox jumps over the lazy dog."
MAX_NEW_TOKENS = 24
# The registry name of a merged export of embedded://tiny-gemma3 (register.display_name_for).
SERVED_NAME = "dolly-lora-tiny-gemma3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> tuple[Path, Path]:
    from components.export.merge import run_export

    out = tmp_path_factory.mktemp("export")
    # Trained in fp32 on CPU, like the embedded default: exported in fp32 (export_dtype=auto).
    adapter = make_adapter(out / "trained-adapter", trained_bf16=False)
    run_export(ExportConfig(), base=BASE, model=str(adapter), test="", merged=str(out / "merged"),
               adapter=str(out / "adapter"))
    return adapter, out / "merged"


@pytest.fixture(scope="module")
def server(export_dir, tmp_path_factory):
    """`submit serve` in its own process; yields its URL once /health answers."""
    _, merged = export_dir
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.submit", "serve", str(merged), "--port", str(port)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 600
            while True:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "server not up in 600 s"
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.5)  # polling a condition with a deadline, not a fixed wait
            print(f"server up in {time.perf_counter() - t0:.1f} s")
            yield url, log, port
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def test_http_chat_answer_equals_the_inference_steps_greedy_output(server, export_dir) -> None:
    from cli.submit import app
    from components.common.config import GenerationConfig
    from components.inference.infer import infer

    url, _, _ = server
    adapter, _ = export_dir
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["predict", "--local", url, "--max-tokens",
                                      str(MAX_NEW_TOKENS), PROMPT])
    latency = time.perf_counter() - t0
    assert result.exit_code == 0, result.output
    served = result.stdout.rstrip("\n")
    # The inference step's own function, on the adapter (base + LoRA, not merged).
    (row,) = infer(str(adapter), [PROMPT], GenerationConfig(max_new_tokens=MAX_NEW_TOKENS),
                   base_ref=BASE)
    print(f"request latency {latency:.2f} s, {row['completion_tokens']} tokens")
    assert served == row["response"] and served, (served, row["response"])


def test_the_server_speaks_openai_chat_completions(server) -> None:
    url, _, _ = server
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4,
            "temperature": 0}
    response = httpx.post(url + "/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["role"] == "assistant"
    assert data["usage"]["completion_tokens"] == 4


def test_the_server_answers_under_its_registry_name(server, export_dir) -> None:
    """Served as vLLM's --served-model-name would: /v1/models lists the short registry name (not
    the folder's path), an OpenAI client naming it is answered, and a request naming another
    model is refused in words that give the served name."""
    url, log, _ = server
    _, merged = export_dir
    models = httpx.get(url + "/v1/models", timeout=30).json()["data"]
    assert [m["id"] for m in models] == [SERVED_NAME]
    body = {"model": SERVED_NAME, "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 4, "temperature": 0}
    response = httpx.post(url + "/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == SERVED_NAME
    other = httpx.post(url + "/v1/chat/completions", json={**body, "model": str(merged.resolve())},
                       timeout=60)
    assert other.status_code in (400, 404) and SERVED_NAME in other.text, other.text
    assert f"as model {SERVED_NAME}" in log.read_text()  # the start-up line says it


def test_a_second_server_on_the_same_port_is_one_line(server, export_dir) -> None:
    _, merged = export_dir
    _, _, port = server
    proc = subprocess.run(
        [sys.executable, "-m", "cli.submit", "serve", str(merged), "--port", str(port)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], proc.stderr
