#!/usr/bin/env bash
# Build the real Dockerfile with podman and run the compiled pipeline's steps in it, as Vertex would.
#
#   sudo scripts/container_check.sh          # from the repository root or anywhere; needs root
#
# No registry is needed: the base image is Debian bookworm made with debootstrap (with python3.11),
# and the uv image is a stand-in holding the uv binary from the PyPI wheel; both are made once and
# reused. Then, for every task up to and including fine-tune (scripts.compiled_step.upstream), the
# executor's exact command and args run in the image: `podman run --network none`, the pipeline
# root gs://BUCKET/... mounted at /gcs/BUCKET, the embedded tiny model and Dolly sample, 3 steps.
# If fine-tune declares `required_accelerator`, it first runs as compiled and must fail fast,
# naming CUDA (no GPU here); then it trains on CPU with required_accelerator=''. Last, a
# training fine-tune container gets SIGTERM, as on a Spot preemption: its PID 1 must be the
# step's Python, and it must stop (exit 143).
#
# Slow (measured on 2 cores: ~6 min cold, ~20 s after a code-only change, ~8 min for the whole
# first run with debootstrap), so not part of CI.
# Needs: podman (+ runc), debootstrap (first run only), uv, git; network to Debian and PyPI.
#
# Environment (all optional):
#   BUILD_CA_BUNDLE   CA bundle for a TLS-intercepting proxy, given to the build as a secret
#                     (falls back to SSL_CERT_FILE); never stored in the image
#   DEBIAN_MIRROR     [http://deb.debian.org/debian]
#   CHECK_IMAGE       tag of the image built [localhost/dolly-lora:check]
#   CHECK_WORKDIR     outputs, logs, compiled YAML [build/container-check]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export CONTAINERS_CONF="$REPO/scripts/containers.conf"

IMAGE=${CHECK_IMAGE:-localhost/dolly-lora:check}
BASE_IMAGE=localhost/dolly-lora-check-base:bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=${CHECK_WORKDIR:-$REPO/build/container-check}
BUCKET=container-check
ROOT_PREFIX=pipeline-root
ROOT_URI=gs://$BUCKET/$ROOT_PREFIX
JOB=container-check
TARGET_TASK=fine-tune
GPU_FAIL_LIMIT_S=300
# Pipeline parameters for a small, offline run (names of pipeline inputs; see compile.py).
PARAMS=(base_model=embedded://tiny-gemma3 dataset=embedded://dolly-15k-sample.jsonl
        max_steps=3 max_seq_len=512 per_device_train_batch_size=4)

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" = 0 ] || die "run as root (root podman; rootless podman is not set up for this check)"
for tool in podman uv git; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
mkdir -p "$WORK"

say "Python environment (uv sync --frozen)"
uv sync --frozen --quiet
PY=(uv run --frozen --quiet python)

# ------------------------------------------------------------------ base images (made once)
uv_version=$(sed -n 's/^ARG UV_IMAGE=.*:\([0-9][0-9.]*\)$/\1/p' Dockerfile)
[ -n "$uv_version" ] || die "cannot read the uv version from 'ARG UV_IMAGE=...:X.Y.Z' in Dockerfile"
UV_STANDIN=localhost/dolly-lora-check-uv:$uv_version

if podman image exists "$BASE_IMAGE"; then
    say "Base image $BASE_IMAGE: present, reused"
else
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    say "Base image $BASE_IMAGE: debootstrap bookworm (minbase + python3 + ca-certificates) from $DEBIAN_MIRROR"
    rootfs=$(mktemp -d "$WORK/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$rootfs" "$DEBIAN_MIRROR"
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE"
    rm -rf "$rootfs"
    trap - EXIT
fi

if podman image exists "$UV_STANDIN"; then
    say "uv image $UV_STANDIN: present, reused"
else
    say "uv image $UV_STANDIN: uv $uv_version binary from the PyPI wheel, FROM scratch"
    ctx=$(mktemp -d "$WORK/uv.XXXXXX")
    trap 'rm -rf "$ctx"' EXIT
    uv pip install --quiet --no-deps --target "$ctx/wheel" --python "$REPO/.venv/bin/python" \
        --python-platform "$(uname -m)-unknown-linux-gnu" "uv==$uv_version"
    cp "$ctx/wheel/bin/uv" "$ctx/wheel/bin/uvx" "$ctx/"
    rm -rf "$ctx/wheel"
    printf 'FROM scratch\nCOPY uv uvx /\nENTRYPOINT ["/uv"]\n' > "$ctx/Containerfile"
    podman build --quiet -t "$UV_STANDIN" -f "$ctx/Containerfile" "$ctx"
    rm -rf "$ctx"
    trap - EXIT
fi

# ------------------------------------------------------------------ build
commit=$(git rev-parse HEAD)
git diff --quiet HEAD -- || commit="$commit-dirty"
build_args=(--build-arg "CUDA_BASE=$BASE_IMAGE" --build-arg "UV_IMAGE=$UV_STANDIN"
            --build-arg UV_PYTHON_PREFERENCE=only-system --build-arg "GIT_COMMIT=$commit")
ca=${BUILD_CA_BUNDLE:-${SSL_CERT_FILE:-}}
if [ -n "$ca" ]; then
    [ -s "$ca" ] || die "CA bundle $ca (BUILD_CA_BUNDLE or SSL_CERT_FILE) is missing or empty"
    build_args+=(--secret "id=ca_bundle,src=$ca")
fi
say "Build $IMAGE (GIT_COMMIT=$commit${ca:+, CA bundle from $ca as a build secret})"
t0=$(now)
podman build -f Dockerfile -t "$IMAGE" "${build_args[@]}" . 2>&1 | tee "$WORK/build.log"
build_s=$(since "$t0")
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[ -n "$user" ] && [ "$user" != root ] && [ "$user" != 0 ] \
    || die "image $IMAGE runs as '${user:-root}'; the steps must run as a non-root user"
echo "built in ${build_s} s; runs as user '$user'"

# ------------------------------------------------------------------ compile against it
say "Compile the Vertex template for $IMAGE"
TEMPLATE=$WORK/pipeline.yaml
"${PY[@]}" compile.py --image "$IMAGE" --out "$TEMPLATE" \
    || die "compile.py refused --image $IMAGE (see above)"

# ------------------------------------------------------------------ run the steps
rm -rf "$WORK/gcs" "$WORK/logs"
mkdir -p "$WORK/gcs/$BUCKET" "$WORK/logs"
task_root() { echo "$WORK/gcs/$BUCKET/$ROOT_PREFIX/$JOB/$1"; }  # a task's folder, on this machine

mapfile -t tasks < <("${PY[@]}" -m scripts.compiled_step "$TEMPLATE" "$TARGET_TASK" --upstream \
                     | "${PY[@]}" -c 'import json, sys; print("\n".join(json.load(sys.stdin)))')
[ "${#tasks[@]}" -gt 0 ] && [ "${tasks[-1]}" = "$TARGET_TASK" ] \
    || die "scripts.compiled_step --upstream $TARGET_TASK gave no task list (see above)"
echo "tasks: ${tasks[*]}"

# invocation TASK [NAME=VALUE...] -> $WORK/logs/TASK.json and the arrays inv_image/inv_argv/inv_env
invocation() {
    local task=$1; shift
    local sets=() kv
    for kv in "${PARAMS[@]}" "$@"; do sets+=(--set "$kv"); done
    "${PY[@]}" -m scripts.compiled_step "$TEMPLATE" "$task" --root "$ROOT_URI" --job "$JOB" \
        --gcs-mount "$WORK/gcs" "${sets[@]}" > "$WORK/logs/$task.json" \
        || die "scripts.compiled_step could not resolve $task"
    inv_image=$("${PY[@]}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["image"])' \
                "$WORK/logs/$task.json")
    mapfile -d '' -t inv_argv < <("${PY[@]}" -c '
import json, sys
sys.stdout.write("".join(a + "\0" for a in json.load(open(sys.argv[1]))["argv"]))' "$WORK/logs/$task.json")
    mapfile -d '' -t inv_env < <("${PY[@]}" -c '
import json, sys
env = json.load(open(sys.argv[1]))["env"]
sys.stdout.write("".join(f"--env\0{k}={v}\0" for k, v in env.items()))' "$WORK/logs/$task.json")
    [ -n "$inv_image" ] && [ "${#inv_argv[@]}" -gt 0 ] || die "no image or argv for $task"
}

input_value() {  # input_value TASK NAME: the resolved input, or nothing if the task has no such input
    "${PY[@]}" -c '
import json, sys
p = json.load(open(sys.argv[1]))["executor_input"]["inputs"]["parameterValues"]
print(p[sys.argv[2]] if sys.argv[2] in p else "<absent>")' "$WORK/logs/$1.json" "$2"
}

# run_step LOG [PODMAN-ARGS...]: the executor in the image, as Vertex starts it. `:U` gives the
# bucket folder to the image's (non-root) user, as the /gcs FUSE mount lets the step write.
run_step() {
    local log=$1; shift
    podman run --rm --pull never --network none "$@" \
        --volume "$WORK/gcs/$BUCKET:/gcs/$BUCKET:U" \
        "${inv_env[@]}" \
        --entrypoint "${inv_argv[0]}" \
        "$inv_image" "${inv_argv[@]:1}" 2>&1 | tee "$log"
}

check_outputs() {  # the task's executor output, its datasets' rows, fine-tune's adapter
    "${PY[@]}" - "$(task_root "$1")" "$1" <<'EOF'
import json, sys
from pathlib import Path
task_dir, task = Path(sys.argv[1]), sys.argv[2]
out_file = task_dir / "executor_output.json"
if not out_file.is_file():
    sys.exit(f"{task}: no {out_file}")
out = json.loads(out_file.read_text())
for key, arts in sorted(out.get("artifacts", {}).items()):
    path = task_dir / key
    meta = arts["artifacts"][0].get("metadata", {})
    if key == "data_card":  # one JSON document about the splits, not rows
        card = json.loads(path.read_text()) if path.is_file() else {}
        if not card.get("format") or card.get("rows_kept") != meta.get("rows"):
            sys.exit(f"{task}: data card {path}: format {card.get('format')!r}, rows_kept "
                     f"{card.get('rows_kept')} vs metadata rows={meta.get('rows')}")
        print(f"  {key}: format {card['format']}, {card['rows_kept']} rows kept")
    elif "rows" in meta or key in ("train", "validation", "test"):
        lines = path.read_text().splitlines() if path.is_file() else []
        if not lines or meta.get("rows") != len(lines):
            sys.exit(f"{task}: dataset {key}: {len(lines)} rows in {path}, metadata rows={meta.get('rows')}")
        print(f"  {key}: {len(lines)} rows")
    elif not path.exists():
        sys.exit(f"{task}: output {key} was not written ({path})")
if task == "fine-tune":
    adapter = task_dir / "model" / "adapter_model.safetensors"
    if not adapter.is_file() or adapter.stat().st_size == 0:
        sys.exit(f"fine-tune: no {adapter}")
    print(f"  model: {adapter.name} {adapter.stat().st_size / 1e6:.1f} MB, "
          f"files: {', '.join(sorted(p.name for p in adapter.parent.iterdir()))}")
EOF
}

declare -A step_s
gpu_note=""
for task in "${tasks[@]}"; do
    if [ "$task" = fine-tune ]; then
        invocation "$task"
        accel=$(input_value "$task" required_accelerator)
        if [ "$accel" != "<absent>" ] && [ -n "$accel" ]; then
            say "$task as compiled (required_accelerator=$accel): must fail fast, naming CUDA"
            t0=$(now)
            rc=0
            run_step "$WORK/logs/$task.gpu.log" --timeout "$GPU_FAIL_LIMIT_S" || rc=$?
            gpu_s=$(since "$t0")
            [ "$rc" != 0 ] || die "$task succeeded without a GPU although it requires $accel"
            awk -v s="$gpu_s" -v l="$GPU_FAIL_LIMIT_S" 'BEGIN { exit !(s < l) }' \
                || die "$task did not fail within ${GPU_FAIL_LIMIT_S} s without a GPU"
            grep -q CUDA "$WORK/logs/$task.gpu.log" \
                || die "$task failed (rc=$rc) but its output does not name CUDA: $WORK/logs/$task.gpu.log"
            echo "failed as expected in ${gpu_s} s (rc=$rc): $(grep CUDA "$WORK/logs/$task.gpu.log" | tail -n 1)"
            gpu_note=", GPU refusal ${gpu_s} s"
            rm -rf "$(task_root "$task")"
            invocation "$task" required_accelerator=
        elif [ "$accel" = "<absent>" ]; then
            echo "note: $task has no required_accelerator input in this template; no fail-fast check"
        else
            echo "note: $task was compiled with required_accelerator=''; no fail-fast check"
        fi
    else
        invocation "$task"
    fi
    say "$task in $inv_image (${inv_argv[*]:0:1} ... ${inv_argv[*]: -1})"
    t0=$(now)
    run_step "$WORK/logs/$task.log" || die "$task failed in the container: $WORK/logs/$task.log"
    step_s[$task]=$(since "$t0")
    check_outputs "$task" || die "$task did not write what it should"
    echo "$task: ok in ${step_s[$task]} s"
done

# ------------------------------------------------------------------ preemption
# What a Spot preemption does to the container: SIGTERM to its PID 1. The compiled command must
# have exec'd Python (not left it a child of sh), which then ends the step (exit 143).
say "SIGTERM to PID 1 of a training fine-tune container (a preemption notice)"
invocation fine-tune required_accelerator= max_steps=100000
rm -rf "$(task_root fine-tune)"
ctr=dolly-lora-check-sigterm
podman rm --force --ignore "$ctr" >/dev/null
podman run --detach --name "$ctr" --pull never --network none \
    --volume "$WORK/gcs/$BUCKET:/gcs/$BUCKET:U" "${inv_env[@]}" \
    --entrypoint "${inv_argv[0]}" "$inv_image" "${inv_argv[@]:1}" >/dev/null
t0=$(now)
until podman logs "$ctr" 2>&1 | grep -q "'loss'"; do
    [ "$(podman inspect --format '{{.State.Running}}' "$ctr")" = true ] \
        || { podman logs "$ctr" | tail -n 20; die "fine-tune ended before training"; }
    awk -v s="$(since "$t0")" 'BEGIN { exit !(s < 300) }' || die "no training step within 300 s"
    sleep 1
done
pid1=$(podman exec "$ctr" cat /proc/1/cmdline | tr '\0' ' ')
case "$pid1" in
    *components.common.entrypoint*) echo "PID 1: $pid1" | cut -c1-120 ;;
    *) podman rm --force "$ctr" >/dev/null; die "PID 1 is not the step's Python: $pid1" ;;
esac
t0=$(now)
podman kill --signal TERM "$ctr" >/dev/null
rc=$(podman wait "$ctr")
sigterm_s=$(since "$t0")
podman logs "$ctr" > "$WORK/logs/fine-tune.sigterm.log" 2>&1
podman rm --force "$ctr" >/dev/null
[ "$rc" = 143 ] && grep -q "SIGTERM: stopping the step" "$WORK/logs/fine-tune.sigterm.log" \
    || die "fine-tune did not stop on SIGTERM (exit $rc): $WORK/logs/fine-tune.sigterm.log"
echo "stopped by SIGTERM in ${sigterm_s} s, exit 143"

# ------------------------------------------------------------------ the Cloud Batch task
# `submit --batch` for this image (pinned by its digest), its runnable taken from the request
# exactly: image, entrypoint, commands, environment. The bucket's folder is mounted where Batch
# mounts the GCS volume; the embedded tiny model runs the whole DAG on CPU to its summary.
digest=$(podman image inspect --format '{{.Digest}}' "$IMAGE")
BATCH_IMAGE="${IMAGE%:*}@$digest"
batch_task() {  # batch_task RUN_ID [--param ...] -> the arrays b_entry/b_cmds/b_env, b_image, b_mount
    "${PY[@]}" -m cli.submit --batch --project container-check --region us-central1 \
        --pipeline-root "gs://$BUCKET/batch" --image "$BATCH_IMAGE" --profile embedded \
        --timeout 1800s --run-id "$@" --dry-run > "$WORK/logs/batch-$1.json" \
        || die "submit --batch --dry-run refused the task (see above)"
    mapfile -d '' -t b_fields < <("${PY[@]}" -c '
import sys
from google.cloud import batch_v1
job = batch_v1.Job.from_json(open(sys.argv[1]).read())
t = job.task_groups[0].task_spec
c = t.runnables[0].container
v = t.volumes[0]
env = "".join(f"--env\x1f{k}={x}\x1f" for k, x in t.environment.variables.items())
sys.stdout.write("\0".join([c.image_uri, c.entrypoint, v.mount_path, env,
                            *c.commands]) + "\0")' "$WORK/logs/batch-$1.json")
    b_image=${b_fields[0]} b_entry=${b_fields[1]} b_mount=${b_fields[2]}
    IFS=$'\x1f' read -r -a b_env <<< "${b_fields[3]}"
    b_cmds=("${b_fields[@]:4}")
    [ "$b_image" = "$BATCH_IMAGE" ] || die "the Batch task runs $b_image, not $BATCH_IMAGE"
}
batch_run() {  # batch_run NAME [PODMAN-ARGS...]: the task's container, as Batch starts it
    local name=$1; shift
    podman rm --force --ignore "$name" >/dev/null
    podman run --name "$name" --pull never --network none "$@" \
        --volume "$WORK/batch-bucket:$b_mount:U" "${b_env[@]}" \
        --entrypoint "$b_entry" "$b_image" "${b_cmds[@]}"
}
rm -rf "$WORK/batch-bucket"
mkdir -p "$WORK/batch-bucket"
say "The Cloud Batch task: the whole DAG in $BATCH_IMAGE, bucket at the Batch mount"
batch_task batch-whole
t0=$(now)
batch_run dolly-lora-check-batch > "$WORK/logs/batch-whole.log" 2>&1 \
    || { tail -n 30 "$WORK/logs/batch-whole.log"; die "the Batch task failed"; }
podman rm --force dolly-lora-check-batch >/dev/null
batch_s=$(since "$t0")
summary=$WORK/batch-bucket/batch/batch-whole/summary.json
"${PY[@]}" -c 'import json, sys; s = json.load(open(sys.argv[1])); assert s["status"] == "SUCCESS", s["status"]' \
    "$summary" || die "the Batch task's summary is not SUCCESS: $summary"
echo "whole DAG to its summary in ${batch_s} s: $summary"

say "Simulated preemption: stop the Batch task mid fine-tune, run the same task again"
batch_task batch-preempt --param max_steps=60 --param save_steps=5
ckpts=$WORK/batch-bucket/batch/batch-preempt/checkpoints
batch_run dolly-lora-check-preempt --detach >/dev/null
t0=$(now)
until find "$ckpts" -maxdepth 5 -name 'step-*' -type d 2>/dev/null | grep -q .; do
    [ "$(podman inspect --format '{{.State.Running}}' dolly-lora-check-preempt)" = true ] \
        || { podman logs dolly-lora-check-preempt 2>&1 | tail -n 20; die "the task ended before a checkpoint"; }
    awk -v s="$(since "$t0")" 'BEGIN { exit !(s < 600) }' || die "no checkpoint within 600 s"
    sleep 2
done
sleep 3  # past the checkpoint's completion marker
podman stop --time 30 dolly-lora-check-preempt >/dev/null  # SIGTERM, then SIGKILL: the VM going
podman logs dolly-lora-check-preempt > "$WORK/logs/batch-preempt-1.log" 2>&1
podman rm --force dolly-lora-check-preempt >/dev/null
t0=$(now)
batch_run dolly-lora-check-preempt > "$WORK/logs/batch-preempt-2.log" 2>&1 \
    || { tail -n 30 "$WORK/logs/batch-preempt-2.log"; die "the retried Batch task failed"; }
podman rm --force dolly-lora-check-preempt >/dev/null
resume_s=$(since "$t0")
grep -q "resuming run batch-preempt" "$WORK/logs/batch-preempt-2.log" \
    || die "the retried task did not resume the run (see $WORK/logs/batch-preempt-2.log)"
resumed=$(grep -rhoE "resuming from .* \(step [0-9]+\)" "$WORK/batch-bucket/batch/batch-preempt" \
          "$WORK/logs/batch-preempt-2.log" 2>/dev/null | head -n 1 || true)
[ -n "$resumed" ] || die "fine-tune did not resume from its checkpoint (no 'resuming from' line)"
"${PY[@]}" -c 'import json, sys; s = json.load(open(sys.argv[1])); assert s["status"] == "SUCCESS", s["status"]' \
    "$WORK/batch-bucket/batch/batch-preempt/summary.json" || die "the resumed run did not finish"
echo "resumed ($resumed) and finished in ${resume_s} s"

# ------------------------------------------------------------------ summary
bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
steps=""
for task in "${tasks[@]}"; do steps+="${steps:+, }$task ${step_s[$task]} s"; done
say "All steps passed (build ${build_s} s; outputs in $WORK/gcs/$BUCKET)"
echo "image $IMAGE: $(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1e9 }') GB; steps: $steps$gpu_note, SIGTERM stop ${sigterm_s} s, Batch task ${batch_s} s, resumed Batch task ${resume_s} s"
