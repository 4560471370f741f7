#!/usr/bin/env bash
# Train several runs at once on one GPU machine without TensorFlow (Keras on JAX), each its own process.
#
#   scripts/gpu_train.sh JOBS DATA OUTDIR SECONDS PACKDIR
#
# JOBS has one run per line, "NAME FERKIT-TRAIN-FLAGS...", e.g. "deep --recipe benchmarks/long/x.toml".
# A small CNN leaves most of a big GPU idle, so the runs share it. A run whose directory already
# exists under OUTDIR is resumed (--resume). At SECONDS every run still going gets Ctrl-C, which
# makes ferkit stop after the current batch, keep its best weights and write the run as interrupted
# (resume it later); a run still there 30 s later (say, still compiling) gets TERM, and KILL 15 s
# after that (INT_GRACE and TERM_GRACE, in seconds, change those waits).
# Then each finished run's model.keras becomes float16 weights (scripts/half_weights.py; `unpack`
# rebuilds it here), and each run is packed, without its resume backups, into PACKDIR/runs.tar.gz
# split in 15 MB parts (what a size-capped file transfer can carry). An interrupted run saves its
# model.keras too, and its backups (3 x 35 MB, optimizer state and all) would overflow what a call
# brings back: with PACK_BACKUPS=1 they are packed after everything else, for a later call to resume.
set -um  # -m: job control, else background runs ignore the Ctrl-C sent at the deadline
jobs_file=$1 data=$2 out=$3 seconds=$4 pack=$5
export KERAS_BACKEND=${KERAS_BACKEND:-jax} XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
mkdir -p "$out" "$pack"
pids=()
while read -r name flags || [[ -n "${name:-}" ]]; do  # a last job with no line break ends the file: read it too
    [[ -z "$name" || "$name" == \#* ]] && continue
    if [[ -d "$out/$name" ]]; then args=(--resume "$out/$name"); else args=("$data" --output "$out/$name" $flags); fi
    python3 -c "from ferkit.cli import main; main()" train "${args[@]}" >>"$out/$name.log" 2>&1 &
    pids+=($!)
    echo "started $name: ${args[*]}"
done <"$jobs_file"

deadline=$((SECONDS + seconds))
while ((SECONDS < deadline)) && kill -0 "${pids[@]}" 2>/dev/null; do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 5
done
for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null; done
for ((i = 0; i < ${INT_GRACE:-30}; i++)); do  # up to 30 s to finish the batch and save, then TERM; its best-weights file is packed
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 1
done
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for ((i = 0; i < ${TERM_GRACE:-15}; i++)); do  # TERM acts once Python has control again: a run stuck in native code (an XLA
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done  # compilation) is killed
    ((alive)) || break
    sleep 1
done
for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done  # then packing still has time

finished=(); for d in "$out"/*/model.keras; do [[ -e "$d" ]] && finished+=("${d%/model.keras}"); done
# On the CPU: loading the models for that needs no GPU start-up
((${#finished[@]})) && { JAX_PLATFORMS=cpu python3 "$(dirname "$0")/half_weights.py" pack "${finished[@]}" ||
    echo "half_weights.py pack failed for some runs: their model.keras is packed instead"; }
cd "$out" || exit 1
keep=() late=()  # resume backups last: if the transfer cap cuts the archive, it cuts them
for log in *.log; do
    name=${log%.log}
    keep+=("$log" "$name/config.json" "$name/history.csv")
    [[ -e "$name/checkpoints/split.json" ]] && keep+=("$name/checkpoints/split.json")  # evaluate compares its parts
    for f in metrics.json weights-f16.npz; do [[ -e "$name/$f" ]] && keep+=("$name/$f"); done
    if [[ ! -e "$name/weights-f16.npz" ]]; then
        if [[ -e "$name/model.keras" ]]; then keep+=("$name/model.keras"); else late+=("$name/checkpoints/best.weights.h5"); fi
    fi
    [[ "${PACK_BACKUPS:-0}" == 1 ]] && grep -q '"interrupted": true' "$name/metrics.json" 2>/dev/null &&
        [[ -d "$name/checkpoints" ]] && late+=("$name/checkpoints")
    echo "$name: $(grep -E '^Epoch [0-9]+/' "$log" | tail -1) $(tail -1 "$log")"
done
tar czf - "${keep[@]}" "${late[@]}" 2>/dev/null | split -b 15M - "$pack/runs.tar.gz.part-"
ls -la "$pack"
