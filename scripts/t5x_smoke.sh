#!/usr/bin/env bash
# The commands of README.md "Using with t5x", end to end with t5x's own launchers on the
# small demo model (runs/demo_model.gin, CPU, 7 to 15 minutes on 2 shared cores), then checks that
#   * pre-training wrote a vanilla checkpoint (no task-conditioning parameters);
#   * fine-tuning restored every backbone array bit for bit and initialised only the
#     conditioning ones (t5x saves the restored state as the run's first checkpoint);
#   * t5x.eval and t5x.infer predict the same on every example (and as training's
#     inference evaluation of the same checkpoint);
#   * conditioning-only fine-tuning kept the backbone bit-identical to the pretrained
#     checkpoint and trained every conditioning array.
#
#   PYTHON=<python of an environment where t5x imports> scripts/t5x_smoke.sh [RUN_DIR]
#
# RUN_DIR (default: a new temporary folder) must be new or empty; the runs and their logs
# stay there. Exit status 0 when every command ran and every check held.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
RUN="${1:-$(mktemp -d "${TMPDIR:-/tmp}/t5x_smoke.XXXXXX")}"

if ! command "$PYTHON" -c "import t5x.train, t5x.eval, t5x.infer" >/dev/null 2>&1; then
  echo "error: t5x does not import with $PYTHON (README.md: Using with t5x)" >&2
  exit 2
fi
if [ -e "$RUN" ] && [ -n "$(ls -A "$RUN")" ]; then
  echo "error: $RUN is not empty (give a new or empty folder)" >&2
  exit 2
fi
mkdir -p "$RUN"
RUN="$(cd "$RUN" && pwd)"
cd "$REPO"  # the README's commands run from the checkout
# The README's `python` is the t5x environment's (`command`: PYTHON=python is no recursion).
python() { command "$PYTHON" "$@"; }

step() {  # step NAME COMMAND...: runs the command, its output in NAME.log
  local name="$1"; shift
  echo "== $name"
  local start=$SECONDS
  if ! "$@" > "$RUN/$name.log" 2>&1; then
    tail -n 30 "$RUN/$name.log" >&2
    echo "FAILED: $name (log: $RUN/$name.log)" >&2
    exit 1
  fi
  echo "   ok in $((SECONDS - start)) s"
}

# --- The README's commands (REPO and RUN as above). -----------------------------------
step pretrain python -m t5x.train --gin_search_paths=$REPO/gin \
  --gin_file=runs/demo_model.gin --gin_file=conditioning/vanilla.gin \
  --gin_file=t5x/pretrain.gin --gin_file=t5x/offline_mixture.gin \
  --gin.MODEL_DIR=\"$RUN/pretrain\" --gin.TRAIN_STEPS=20 --gin.BATCH_SIZE=16

step finetune python -m t5x.train --gin_search_paths=$REPO/gin \
  --gin_file=runs/demo_model.gin --gin_file=t5x/finetune.gin --gin_file=t5x/offline_mixture.gin \
  --gin.MODEL_DIR=\"$RUN/finetune\" --gin.INITIAL_CHECKPOINT_PATH=\"$RUN/pretrain/checkpoint_20\" \
  --gin.TRAIN_STEPS=40 --gin.BATCH_SIZE=16 --gin.EVAL_PERIOD=20

step eval python -m t5x.eval --gin_search_paths=$REPO/gin \
  --gin_file=runs/demo_model.gin --gin_file=t5x/eval.gin --gin_file=t5x/offline_mixture.gin \
  --gin.CHECKPOINT_PATH=\"$RUN/finetune/checkpoint_40\" --gin.EVAL_OUTPUT_DIR=\"$RUN/eval\"

step infer python -m t5x.infer --gin_search_paths=$REPO/gin \
  --gin_file=runs/demo_model.gin --gin_file=t5x/infer.gin --gin_file=t5x/offline_mixture.gin \
  --gin.CHECKPOINT_PATH=\"$RUN/finetune/checkpoint_40\" --gin.INFER_OUTPUT_DIR=\"$RUN/infer\"

step conditioning_only python -m t5x.train --gin_search_paths=$REPO/gin \
  --gin_file=runs/demo_model.gin --gin_file=t5x/finetune_conditioning_only.gin \
  --gin_file=t5x/offline_mixture.gin \
  --gin.MODEL_DIR=\"$RUN/conditioning_only\" --gin.INITIAL_CHECKPOINT_PATH=\"$RUN/pretrain/checkpoint_20\" \
  --gin.TRAIN_STEPS=40 --gin.BATCH_SIZE=16 --gin.EVAL_PERIOD=20

cd "$RUN"
echo "== key lines"
grep -o "collection=training_eval/hyperprompt_offline_v1 accuracy=[0-9.]*" \
  pretrain.log finetune.log conditioning_only.log | sed 's/^/   /'
grep -ho "[a-z_0-9]*/accuracy at step [0-9]*: [0-9.]*" eval.log | sed 's/^/   eval: /'

# --- The checks (checkpoints read with relative paths: load_params resolves them). -----
echo "== checks"
TF_CPP_MIN_LOG_LEVEL=3 "$PYTHON" - <<'PY'
import glob
import json
import os
import sys

import numpy as np

from hyperprompt_jax import t5x_checkpoints

CONDITIONING = ("hyperprompt", "prefix_tuning", "prompt_tuning", "adapters", "hyperformer")
failures = []


def check(ok, message):
  print(("   ok: " if ok else "   FAILED: ") + message)
  if not ok:
    failures.append(message)


def params(path):
  return t5x_checkpoints.flatten(t5x_checkpoints.load_params(path))


def conditioning(keys):
  return sorted(k for k in keys if k.split("/")[0] in CONDITIONING)


def same(a, b):
  return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


pre = params("pretrain/checkpoint_20")
check(pre and not conditioning(pre),
      f"pretrain wrote a vanilla checkpoint: {len(pre)} arrays, no conditioning parameters")

restored, trained = params("finetune/checkpoint_20"), params("finetune/checkpoint_40")
new = sorted(set(restored) - set(pre))
check(set(pre) <= set(restored) and all(same(pre[k], restored[k]) for k in pre),
      f"finetune restored all {len(pre)} backbone arrays bit for bit")
check(bool(new) and new == conditioning(restored),
      f"finetune initialised only the {len(new)} conditioning arrays "
      f"({', '.join(sorted({k.split('/')[0] for k in new}))}/...)")
changed = sum(not same(pre[k], trained[k]) for k in pre)
check(changed == len(pre), f"finetune trained the backbone: {changed} of {len(pre)} arrays changed")


def predictions(pattern, key):
  """{task: [(inputs_pretokenized, prediction), ...]} of the JSONL files matching pattern."""
  out = {}
  for path in sorted(glob.glob(pattern)):
    task = os.path.basename(path).split("-")[0]
    with open(path) as f:
      rows = [json.loads(line) for line in f]
    inputs = [r.get("input", r.get("inputs"))["inputs_pretokenized"] for r in rows]
    out[task] = list(zip(inputs, [r[key] for r in rows]))
  return out


evaluated = predictions("eval/inference_eval/*-000040.jsonl", "output")
inferred = predictions("infer/*-predict.jsonl-00000-of-00001", "prediction")
in_training = predictions("finetune/inference_eval/*-000040.jsonl", "output")
total = sum(len(v) for v in evaluated.values())
agree = sum(a == b for t in evaluated for a, b in zip(evaluated[t], inferred.get(t, [])))
check(total > 0 and set(evaluated) == set(inferred) and agree == total and
      all(len(evaluated[t]) == len(inferred[t]) for t in evaluated),
      f"t5x.eval and t5x.infer agree on {agree} of {total} predictions ({len(evaluated)} tasks)")
check(in_training == evaluated,
      "t5x.eval predicts as training's inference evaluation of the same checkpoint")

start, end = params("conditioning_only/checkpoint_20"), params("conditioning_only/checkpoint_40")
check(all(same(pre[k], end[k]) for k in pre),
      f"conditioning-only kept all {len(pre)} backbone arrays bit-identical to the pretrained "
      "checkpoint")
moved = sum(not same(start[k], end[k]) for k in conditioning(end))
check(moved == len(conditioning(end)) > 0,
      f"conditioning-only trained {moved} of {len(conditioning(end))} conditioning arrays")
sys.exit(1 if failures else 0)
PY
echo "t5x smoke: OK ($RUN)"
