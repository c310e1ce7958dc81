#!/usr/bin/env bash
# Every GPU row of the project's target table in one short slot on one GPU (H100/H200), through
# the same `hpml train` commands a user runs; prints one table (and writes $OUT/gpu_table.md).
#
#   bash benchmarks/gpu.sh              # measure (about 6-8 minutes on an H100)
#   bash benchmarks/gpu.sh --dry-run    # print the commands and the (empty) table; runs nothing
#   bash benchmarks/gpu.sh --tiny       # every row for real at toy scale (32 px, 2 steps, fp32, no compile) on
#                                       # DEVICE (default cpu): seconds; what the test suite runs
#   ROWS="r50_synth r50_ddp1" bash benchmarks/gpu.sh   # only some rows
#
# Knobs: PYTHON (default python), OUT (default ./gpu-results), STEPS (steps per epoch, default 60),
# ROWS (default: all), DEVICE (default cuda; --tiny: cpu), CIFAR (CIFAR-10's folder, default $OUT/cifar10:
# downloaded there when online). Rows: r50_synth r50_ddp1 r50_fsdp1 r50_cache r50_jpeg_gpu r18_32 r18_32_ro
# loop split_hta cifar10_speed (--tiny leaves out the last two: HTA needs a GPU trace, the recipe CIFAR-10).
# r50_ddp1 / r50_fsdp1: DDP and FSDP at world size 1 over NCCL, with the step split (compute,
# communication, exposed communication, overhead) and NCCL's bytes and GB/s per step; every row's
# summary.json carries the GPU's state (clocks, power, temperature, throttle reasons).
set -uo pipefail
DRY=0 TINY=0 FAILED=0  # FAILED: the exit code (a row that failed is not hidden)
[[ "${1:-}" == "--dry-run" ]] && DRY=1
[[ "${1:-}" == "--tiny" ]] && TINY=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
OUT=${OUT:-$PWD/gpu-results}
STEPS=${STEPS:-60}
JPEGS=8192 VAL=256
DEVICE=${DEVICE:-cuda}
TINY_ARGS=""  # appended last: Hydra takes a key's last value
NCCL="strategy.backend=nccl"
ROWS_ALL="r50_synth r50_ddp1 r50_fsdp1 r50_cache r50_jpeg_gpu r18_32 r18_32_ro loop split_hta cifar10_speed"
if [[ $TINY == 1 ]]; then
  NCCL="strategy.backend=gloo" ROWS_ALL=${ROWS_ALL% split_hta cifar10_speed}
  STEPS=1 JPEGS=20 VAL=16 DEVICE=${DEVICE/cuda/cpu}
  # fp32: bf16 on a CPU without bf16 units is emulated (minutes per step)
  TINY_ARGS="dataset.image_size=32 dataset.batch_size=16 trainer.max_steps_per_epoch=2 trainer.epochs=2"
  TINY_ARGS+=" trainer.compile=off trainer.precision=fp32 dataset.num_workers=0"
fi
ROWS=${ROWS:-$ROWS_ALL}
CIFAR=${CIFAR:-$OUT/cifar10}
DATA=${DATA:-$OUT/jpegs}
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
export WANDB_MODE=disabled HPML_RUN_ID=
mkdir -p "$OUT/runs" "$OUT/logs"

# ResNet-50 at 224 px, bf16, channels-last, compiled; the first epoch (compile) is warm-up.
STEP="trainer.precision=bf16 trainer.channels_last=true trainer.timing=events trainer.checkpoint_every=0
      trainer.progress=never trainer.epochs=3 trainer.warmup_epochs=1 device=$DEVICE"
R50="model=resnet50 dataset.image_size=224 dataset.batch_size=256 dataset.num_classes=1000 trainer.compile=default $STEP"
SYNTH="dataset=synthetic dataset.synthetic_on=device dataset.num_train=$((256 * STEPS)) dataset.num_val=$VAL"
FOLDER="dataset=image_folder dataset.root=$DATA dataset.val_dir=test"
R18="model=resnet18 dataset=synthetic dataset.synthetic_on=device dataset.image_size=32 dataset.batch_size=512
     dataset.num_classes=10 dataset.num_train=$((512 * STEPS * 4)) dataset.num_val=$((VAL * 2)) $STEP"

wanted() { [[ " $ROWS " == *" $1 "* ]]; }

train() {  # train <row> <overrides...>
  local name=$1; shift
  wanted "$name" || return 0
  echo "+ hpml train $* ${TINY_ARGS:+$TINY_ARGS }run_dir=$OUT/runs/$name"
  [[ $DRY == 1 ]] && return 0
  rm -rf "$OUT/runs/$name"
  local start=$SECONDS
  $PY -m hpml_bench train "$@" $TINY_ARGS run_dir="$OUT/runs/$name" >"$OUT/logs/$name.log" 2>&1 \
    && echo "  $name: $((SECONDS - start)) s" \
    || { echo "  $name FAILED after $((SECONDS - start)) s: $OUT/logs/$name.log"; FAILED=1; }
}

train r50_synth $R50 $SYNTH
train r50_ddp1 $R50 $SYNTH strategy=ddp $NCCL
train r50_fsdp1 $R50 $SYNTH strategy=fsdp $NCCL trainer.channels_last=false  # FSDP2: contiguous weights only
if wanted r50_cache || wanted r50_jpeg_gpu; then
  echo "+ python benchmarks/gpu_rows.py jpegs $DATA $JPEGS"
  echo "+ hpml prepare $FOLDER model=resnet50 dataset.image_size=224 dataset.num_classes=1000${TINY_ARGS:+ $TINY_ARGS}"
  if [[ $DRY == 0 ]]; then
    $PY "$ROOT/benchmarks/gpu_rows.py" jpegs "$DATA" $JPEGS >"$OUT/logs/jpegs.log" 2>&1 \
      || { echo "  jpegs FAILED: $OUT/logs/jpegs.log"; FAILED=1; }
    if wanted r50_cache; then
      $PY -m hpml_bench prepare $FOLDER model=resnet50 dataset.image_size=224 dataset.num_classes=1000 $TINY_ARGS \
        >"$OUT/logs/prepare.log" 2>&1 || { echo "  prepare FAILED: $OUT/logs/prepare.log"; FAILED=1; }
    fi
  fi
fi
train r50_cache $R50 $FOLDER dataset.cache=true
train r50_jpeg_gpu $R50 $FOLDER dataset.decode=gpu dataset.num_workers=8
train r18_32 $R18 trainer.compile=default
train r18_32_ro $R18 trainer.compile=reduce-overhead

if wanted loop; then
  # Both loops read host tensors through a DataLoader (hpml's synthetic-on-device would skip the copy).
  LOOP="--device cuda --rounds 5 --steps 100 --batch-size 256 --image-size 64 --hpml-arg dataset.synthetic_on=host"
  [[ $TINY == 1 ]] && LOOP="--tiny --device $DEVICE --hpml-arg dataset.synthetic_on=host"
  echo "+ python benchmarks/loop_overhead.py $LOOP"
  if [[ $DRY == 0 ]]; then
    $PY "$ROOT/benchmarks/loop_overhead.py" $LOOP >"$OUT/loop_overhead.txt" 2>"$OUT/logs/loop.log" \
      || { echo "  loop FAILED: $OUT/logs/loop.log"; FAILED=1; }
  fi
fi

# The step split against Holistic Trace Analysis: ResNet-18 under DDP on every visible GPU (at
# most 2), 5 profiled steps: hpml's compute / communication / exposed split of those steps beside
# HTA's kernels ($OUT/hta/hta.csv); the same check as
# tests/test_step_split.py::test_split_agrees_with_holistic_trace_analysis_on_the_profiled_steps.
NGPU=$($PY -c "import torch; print(min(max(torch.cuda.device_count(), 1), 2))" 2>/dev/null || echo 1)
train split_hta model=resnet18 dataset=synthetic dataset.image_size=64 dataset.batch_size=64 \
  dataset.num_train=$((64 * 24 * NGPU)) dataset.num_val=64 device=$DEVICE trainer.epochs=1 trainer.warmup_epochs=0 \
  trainer.progress=never trainer.checkpoint_every=0 strategy=ddp strategy.nproc_per_node=$NGPU profiler=torch \
  profiler.skip_first=10 profiler.active=5
if wanted split_hta; then
  echo "+ hpml report --hta $OUT/runs/split_hta --out $OUT/hta"
  if [[ $DRY == 0 ]]; then
    $PY -m hpml_bench report --hta "$OUT/runs/split_hta" --out "$OUT/hta" >"$OUT/logs/hta.log" 2>&1 \
      || { echo "  hta FAILED: $OUT/logs/hta.log"; FAILED=1; }
  fi
fi
# The CIFAR-10 speed recipe to 94 % (18 epochs, ~1-2 minutes on an H100 if it runs as planned);
# the table reads its time to 94 % from epochs.csv.
train cifar10_speed experiment=cifar10_speed dataset.root=$CIFAR trainer.checkpoint_every=0 trainer.progress=never \
  device=$DEVICE

$PY "$ROOT/benchmarks/gpu_rows.py" table "$OUT" || FAILED=1
exit $FAILED
