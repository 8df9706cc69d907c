#!/usr/bin/env bash
# The paper's f and f^d at more training seeds, trained and attacked like seed 0 of
# results/paper (docs/results.md, "Seeds"). Resumable: rerun the same command after a kill;
# finished trainings and crafts are reused.
#
#   tools/seed_runs.sh [DATA_DIR] [OUTPUT_DIR]       (SEEDS="4 5" by default)
#
# Seeds 1, 2 and 3 are taken: the seed-0 run trains surrogate U with seed 1 (the same
# settings as f, so f at seed 1 *is* U), D with seed 2 from U, and J with seed 3.
# Black-box examples come from the shipped seed-0 surrogates U and D; their crafts are
# made once and copied into every target's run, so they are not recomputed.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/mnist}"
out="${2:-saved_models/seeds}"
seeds="${SEEDS:-4 5}"
precision="${PRECISION:-$(grep -q avx512_bf16 /proc/cpuinfo && echo mixed_bfloat16 || echo float32)}"
attacks="fgsm,jsma,cw,pgd,apgd_ce,apgd_t"
common=(--data_dir="$data" --output_dir="$out" --noprogress)

for s in $seeds; do
  bin/train "${common[@]}" --precision="$precision" --defense=none --epochs=6 --seed="$s" \
    --run_name="undefended-s$s"
  bin/train "${common[@]}" --precision="$precision" --defense=extended --epochs=50 \
    --alpha=0.9 --temperature=4 --mc_passes=20 --seed="$s" \
    --teacher="$out/undefended-s$s/model.keras" --run_name="extended-s$s"
done

model_of() {  # role seed -> the trained model's file
  case "$1" in
    undefended) echo "$out/undefended-s$2/model.keras" ;;
    extended) echo "$out/extended-s$2/distilled.keras" ;;
  esac
}

for s in $seeds; do
  for role in undefended extended; do
    bin/eval_whitebox "${common[@]}" --preset=paper --attacks="$attacks" --nosweeps \
      --model="$(model_of "$role" "$s")" --run_name="whitebox-$role-s$s"
  done
done

shared="$out/blackbox-crafts"
mkdir -p "$shared"
for s in $seeds; do
  for role in undefended extended; do
    run="$out/blackbox-$role-s$s"
    mkdir -p "$run/attacks"
    cp -n "$shared"/*.npz "$run/attacks/" 2>/dev/null || true
    bin/eval_blackbox "${common[@]}" --preset=paper --attacks="$attacks" \
      --target="$(model_of "$role" "$s")" --run_name="blackbox-$role-s$s" \
      --surrogate=U=saved_models/paper/surrogate_U.keras \
      --surrogate=D=saved_models/paper/surrogate_D.keras
    cp -n "$run"/attacks/*.npz "$shared/" 2>/dev/null || true
  done
done
echo "seed runs finished: $out"
