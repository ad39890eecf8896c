"""Every bad input a user makes, in one table: one line on stderr naming the problem and the
fix, exit code 2, nothing written, before any step runs. And the inputs that must simply work.

Each case runs in a fresh working directory holding only the files it needs; "nothing written"
means that directory (where `runs/` and `build/` would go) is byte-for-byte what the case put
there. `submit` runs in-process (typer's CliRunner, stderr apart); `compile.py` through its
`main`. The cases that work use `submit --local --dry-run`: every check, nothing run.
To read every message: `SHOW_MESSAGES=1 uv run pytest tests/cli/test_bad_input.py -s`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.submit import app
from components.common.paths import EMBEDDED_DATASET

ROWS = [json.loads(line) for line in EMBEDDED_DATASET.read_text().splitlines()]
VERTEX = ["--project", "my-proj", "--region", "us-central1", "--pipeline-root",
          "gs://my-bucket/pipelines"]
PINNED = "us-central1-docker.pkg.dev/my-proj/dolly-lora/trainer"


def jsonl(rows: list[Any], newline: str = "\n") -> str:
    return "".join(json.dumps(r) + newline for r in rows)


def parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
MIS_CASED = {"closed_qa": "Closed_QA", "open_qa": "Open QA", "general_qa": "General-QA"}


def mis_cased(rows: list[dict]) -> list[dict]:
    return [{**r, "category": MIS_CASED.get(r["category"], r["category"])} for r in rows]


FILES: dict[str, Callable[[], bytes]] = {
    "csv.jsonl": lambda: b"instruction,context,response,category\nhi,,there,open_qa\n",
    "qa.parquet": lambda: parquet([{"question": f"q{i}", "answer": "a"} for i in range(20)]),
    "no_answer.jsonl": lambda: jsonl([{"q": f"q{i}", "response": " "} for i in range(20)]
                                     ).encode(),
    "chat_no_assistant.jsonl": lambda: jsonl([{"messages": CHAT[:1]}] * 20).encode(),
    "chat_out_of_order.jsonl": lambda: jsonl([{"messages": CHAT[::-1]}] * 20).encode(),
    "mixed.jsonl": lambda: jsonl([*ROWS[:5], {"messages": CHAT}]).encode(),
    "all_bad.jsonl": lambda: jsonl([{"question": f"q{i}", "answer": "a"} for i in range(20)]
                                   ).encode(),
    "dups.jsonl": lambda: jsonl([ROWS[0]] * 10).encode(),
    "poetry.jsonl": lambda: jsonl([{**r, "category": "poetry"} for r in ROWS[:30]]).encode(),
    "prompts_bad.jsonl": lambda: b'{"prompt": "ok"}\n{"text": "no prompt field"}\n',
    "a_file": lambda: b"not a folder\n",
    # the inputs that must work
    "array.json": lambda: json.dumps(ROWS, indent=1).encode(),
    "bom.jsonl": lambda: b"\xef\xbb\xbf" + jsonl(ROWS).encode(),
    "crlf.jsonl": lambda: jsonl(ROWS, "\r\n").encode(),
    "extra.jsonl": lambda: jsonl([{**r, "source": "web", "id": i} for i, r in enumerate(ROWS)]
                                 ).encode(),
    "few_bad.jsonl": lambda: jsonl([*ROWS[:199], {"instruction": "x"}]).encode(),
    "Closed_QA.jsonl": lambda: jsonl(mis_cased(ROWS)).encode(),
    "data/dolly": lambda: jsonl(ROWS).encode(),  # a local file without an extension
    "prompts.jsonl": lambda: b'\xef\xbb\xbf{"prompt": "Name a colour."}\r\n',
}


@dataclass
class Case:
    id: str
    argv: list[str]
    expected: str  # a fragment of the one error line ('' for a case that works)
    files: list[str] = field(default_factory=list)
    program: str = "submit"
    setup: str = ""  # a fixture-like hook below
    forbidden: str = ""  # must NOT be in the message
    code: int = 2


LOCAL = ["--local"]
CASES = [
    # parameters
    Case("unknown-param", [*LOCAL, "-p", "lora_rank=4"], "unknown pipeline parameter 'lora_rank'"),
    Case("not-name-value", [*LOCAL, "-p", "max_steps"], "is not name=value"),
    Case("rank-zero", [*LOCAL, "-p", "lora_r=0"], "LoRA rank must be a positive integer"),
    Case("max-steps-zero", [*LOCAL, "-p", "max_steps=0"], "max_steps=0 would train nothing"),
    Case("fractions", [*LOCAL, "-p", "val_fraction=0.5", "-p", "test_fraction=0.5"],
         "leaves nothing to train on"),
    Case("unknown-category-param", [*LOCAL, "-p", "categories=poetry"],
         "category poetry matches no rows; the data has brainstorming ("),
    Case("target-modules", [*LOCAL, "-p", "target_modules=c_attn"], "c_attn not found"),
    Case("max-seq-len", [*LOCAL, "-p", "max_seq_len=16"], "longer than max_seq_len=16"),
    Case("bf16-without-hardware", [*LOCAL, "-p", "bf16=true"], "bf16=true needs a GPU"),
    # data
    Case("missing-file", [*LOCAL, "-p", "dataset=missing/file.jsonl"], "does not exist"),
    Case("not-jsonl", [*LOCAL, "-p", "dataset=csv.jsonl"], "is not JSONL", ["csv.jsonl"]),
    Case("unknown-format", [*LOCAL, "-p", "dataset=all_bad.jsonl"],
         "all_bad.jsonl: no row is in a known format (row 1 has answer, question); the formats: "
         "messages (", ["all_bad.jsonl"], forbidden="max_bad_row_fraction"),
    Case("mixed-formats", [*LOCAL, "-p", "dataset=mixed.jsonl"],
         "mixed.jsonl mixes formats: dolly (row 1: {", ["mixed.jsonl"]),
    Case("mapping-missing-column", [*LOCAL, "-p", "dataset=all_bad.jsonl", "-p",
                                    "columns=instruction:query,response:answer"],
         "all_bad.jsonl has no column 'query' (its fields: answer, question)", ["all_bad.jsonl"]),
    Case("parquet-without-columns", [*LOCAL, "-p", "dataset=qa.parquet"],
         "qa.parquet: no row is in a known format (row 1 has answer, question)", ["qa.parquet"]),
    Case("empty-after-mapping", [*LOCAL, "-p", "dataset=no_answer.jsonl", "-p",
                                 "columns=instruction:q"],
         "none of the 20 rows in no_answer.jsonl is a usable dolly row (rows 1, 2, 3: empty response",
         ["no_answer.jsonl"]),
    Case("chat-without-assistant", [*LOCAL, "-p", "dataset=chat_no_assistant.jsonl"],
         "rows 1, 2, 3: no assistant turn", ["chat_no_assistant.jsonl"]),
    Case("chat-roles-out-of-order", [*LOCAL, "-p", "dataset=chat_out_of_order.jsonl"],
         "rows 1, 2, 3: roles out of order (assistant, user)", ["chat_out_of_order.jsonl"]),
    Case("hub-offline", [*LOCAL, "-p", "dataset=someone/instructions"],
         "needs network access to the hub", setup="hub_offline"),
    Case("duplicates-only", [*LOCAL, "-p", "dataset=dups.jsonl"], "9 exact duplicates",
         ["dups.jsonl"]),
    Case("non-dolly-categories", [*LOCAL, "-p", "dataset=poetry.jsonl"],
         "categories Dolly does not have ('poetry' (30))", ["poetry.jsonl"]),
    Case("path-without-extension", [*LOCAL, "-p", "dataset=data/dolly2"],
         "'data/dolly2' is not a file here"),
    Case("unknown-embedded-dataset", [*LOCAL, "-p", "dataset=embedded://dolly.jsonl"],
         "unknown embedded asset 'embedded://dolly.jsonl'; use one of"),
    Case("unknown-embedded-model", [*LOCAL, "-p", "base_model=embedded://tiny"],
         "unknown embedded asset 'embedded://tiny'"),
    Case("gcs-no-bucket", [*LOCAL, "-p", "dataset=gs://no-such-bucket/d.jsonl"],
         "bucket gs://no-such-bucket does not exist", setup="gcs"),
    Case("gcs-no-credentials", [*LOCAL, "-p", "dataset=gs://bucket/d.jsonl"],
         "no Google credentials", setup="no_credentials"),
    Case("prompts-missing", [*LOCAL, "-p", "prompts_uri=prompts/none.jsonl"],
         "prompts/none.jsonl does not exist"),
    Case("prompts-bad-rows", [*LOCAL, "-p", "prompts_uri=prompts_bad.jsonl"],
         'line 2 has no non-empty string "prompt" field', ["prompts_bad.jsonl"]),
    # where the run goes
    Case("output-dir-is-a-file", [*LOCAL, "--output-dir", "a_file"], "is a file, not a folder",
         ["a_file"]),
    Case("run-id-taken", [*LOCAL, "--run-id", "r1"], "already exists", setup="finished_run"),
    Case("run-id-running", [*LOCAL, "--run-id", "r1", "--checkpoint-uri", "gs://ckpt/root"],
         "another submit --local is running", setup="running_run"),
    # Vertex, KFP, schedules, upload
    Case("vertex-bad-param", [*VERTEX, "--public-model", "-p", "max_steps=0"],
         "max_steps=0 would train nothing"),
    Case("vertex-local-dataset", [*VERTEX, "--public-model", "-p", "dataset=csv.jsonl"],
         "is a file on this machine", ["csv.jsonl"]),
    Case("vertex-local-checkpoints", [*VERTEX, "--public-model", "--checkpoint-uri", "/tmp/ck"],
         "checkpoint_uri=/tmp/ck is a folder on this machine"),
    Case("vertex-no-credentials", [*VERTEX, "--public-model"],
         "no Google credentials for Vertex AI", setup="no_credentials"),
    Case("kfp-host-not-url", ["--kfp-host", "kfp.example.com", "--public-model"],
         "--kfp-host 'kfp.example.com' is not a URL"),
    Case("kfp-host-not-answering", ["--kfp-host", "http://127.0.0.1:9", "--public-model"],
         "cannot reach Kubeflow Pipelines at http://127.0.0.1:9 ([Errno 111] Connection refused)"),
    Case("upload-no-credentials", [*VERTEX, "upload"], "no Google credentials for Artifact "
         "Registry", setup="no_credentials"),
    Case("upload-no-network", [*VERTEX, "upload"], "cannot reach Artifact Registry",
         setup="no_network"),
    Case("pause-no-credentials", [*VERTEX, "schedule", "pause", "123"],
         "no Google credentials for Vertex AI", setup="no_credentials"),
    Case("pause-no-network", [*VERTEX, "schedule", "pause", "123"], "cannot reach Vertex AI",
         setup="vertex_down"),
    Case("cron-step-zero", [*VERTEX, "--public-model", "schedule", "create", "--cron",
                            "*/0 * * * *"], "step /0 must be between 1 and 59"),
    Case("compile-untagged-image", ["--image", PINNED], "has no tag or digest",
         program="compile"),
    Case("compile-latest-image", ["--image", PINNED + ":latest"], "the moving tag 'latest'",
         program="compile"),
    Case("compile-out-is-folder", ["--out", "build_dir", "--image", PINNED + ":v1"],
         "is a folder", program="compile", setup="build_dir"),
    # inputs that must work (checked, nothing written)
    *(Case(f"works-{name}", [*LOCAL, "--dry-run", "-p", f"dataset={name}"], "", [name], code=0)
      for name in ("bom.jsonl", "crlf.jsonl", "extra.jsonl", "few_bad.jsonl", "Closed_QA.jsonl",
                   "data/dolly", "array.json")),
    Case("works-emoji-system-prompt", [*LOCAL, "--dry-run", "-p",
                                       "system_prompt=Answer briefly 🙂 — merci"], "", code=0),
    Case("works-prompts-with-bom-crlf", [*LOCAL, "--dry-run", "-p", "prompts_uri=prompts.jsonl"],
         "", ["prompts.jsonl"], code=0),
    Case("works-pause-dry-run", [*VERTEX, "--dry-run", "schedule", "pause", "123"], "",
         setup="no_credentials", code=0),
]


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def run_compile(argv: list[str]) -> tuple[int, str, str]:
    import compile as compile_mod

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            compile_mod.main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for name in list(os.environ):
        if name.startswith(("DOLLY_LORA_", "GOOGLE_CLOUD_", "KFP_")):
            monkeypatch.delenv(name)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # never probe a metadata server
    return cwd


def apply_setup(case: Case, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                cwd: Path) -> None:
    if case.setup == "gcs":
        request.getfixturevalue("gcs")
    elif case.setup == "hub_offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    elif case.setup == "no_credentials":
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(cwd.parent / "no-key.json"))
    elif case.setup == "no_network":  # credentials, but no name resolves and nothing connects
        import socket

        import google.auth
        from google.auth.credentials import AnonymousCredentials

        def offline(*a: Any, **k: Any) -> Any:
            raise socket.gaierror(-3, "Temporary failure in name resolution")

        monkeypatch.setattr(google.auth, "default",
                            lambda *a, **k: (AnonymousCredentials(), "my-proj"))
        monkeypatch.setattr(socket, "getaddrinfo", offline)
        monkeypatch.setattr(socket, "create_connection", offline)
    elif case.setup == "vertex_down":
        from google.api_core import exceptions

        request.getfixturevalue("vertex")
        from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient

        def unreachable(*a: Any, **k: Any) -> Any:
            raise exceptions.ServiceUnavailable("failed to connect to all addresses")

        monkeypatch.setattr(ScheduleServiceClient, "get_schedule", unreachable)
    elif case.setup == "finished_run":
        (cwd / "runs" / "r1").mkdir(parents=True)
        (cwd / "runs" / "r1" / "summary.json").write_text("{}")
    elif case.setup == "running_run":
        from cli.local_run import RunFolder

        holder = RunFolder((cwd / "runs" / "r1").resolve(), resume=True)
        holder.claim()  # another process would hold the same flock
        request.addfinalizer(holder.release)
    elif case.setup == "build_dir":
        (cwd / "build_dir").mkdir()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: Case, workdir: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in case.files:
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_bytes(FILES[name]())
    apply_setup(case, request, monkeypatch, workdir)
    before = snapshot(workdir)
    if case.program == "compile":
        code, stdout, stderr = run_compile(case.argv)
    else:
        result = CliRunner().invoke(app, case.argv)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    assert code == case.code, stderr + stdout
    if os.environ.get("SHOW_MESSAGES"):
        print(f"\n[{case.id}] {stderr.strip()}")
    assert snapshot(workdir) == before, "bad input must leave nothing behind"
    if case.code == 0:
        return
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and case.expected in lines[0], lines[0]
    assert not stdout.strip()
    if case.forbidden:
        assert case.forbidden not in lines[0]
