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
# made once and copied into every target's run, so they are not recomputed. Each finished
# evaluation's results.json, results.csv and report.md are copied to results/seeds/<run>/
# (committed), and a rerun skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/mnist}"
out="${2:-saved_models/seeds}"
seeds="${SEEDS:-4 5}"
precision="${PRECISION:-$(grep -q avx512_bf16 /proc/cpuinfo && echo mixed_bfloat16 || echo float32)}"
attacks="fgsm,jsma,cw,pgd,apgd_ce,apgd_t"
common=(--data_dir="$data" --output_dir="$out" --noprogress)

shipped=saved_models/paper
publish() {  # a finished evaluation run -> results/seeds/<run>/
  mkdir -p "results/seeds/$1"
  cp "$out/$1/results.json" "$out/$1/results.csv" "$out/$1/report.md" "results/seeds/$1/"
}
for s in $seeds; do
  # Models already in the paper collection (tools/add_pretrained.py) are not trained again.
  [ -f "$shipped/undefended_s$s.keras" ] && [ -f "$shipped/extended_s$s.keras" ] && continue
  bin/train "${common[@]}" --precision="$precision" --defense=none --epochs=6 --seed="$s" \
    --run_name="undefended-s$s"
  bin/train "${common[@]}" --precision="$precision" --defense=extended --epochs=50 \
    --alpha=0.9 --temperature=4 --mc_passes=20 --seed="$s" \
    --teacher="$out/undefended-s$s/model.keras" --run_name="extended-s$s"
done

model_of() {  # role seed -> the training run's model file, else the shipped copy
  local trained
  case "$1" in
    undefended) trained="$out/undefended-s$2/model.keras" ;;
    extended) trained="$out/extended-s$2/distilled.keras" ;;
  esac
  if [ -f "$trained" ]; then echo "$trained"; else echo "$shipped/$1_s$2.keras"; fi
}

for s in $seeds; do
  for role in undefended extended; do
    [ -f "results/seeds/whitebox-$role-s$s/results.json" ] && continue  # published already
    bin/eval_whitebox "${common[@]}" --preset=paper --attacks="$attacks" --nosweeps \
      --model="$(model_of "$role" "$s")" --run_name="whitebox-$role-s$s"
    publish "whitebox-$role-s$s"
  done
done

shared="$out/blackbox-crafts"
mkdir -p "$shared"
for s in $seeds; do
  for role in undefended extended; do
    [ -f "results/seeds/blackbox-$role-s$s/results.json" ] && continue  # published already
    run="$out/blackbox-$role-s$s"
    mkdir -p "$run/attacks"
    cp -n "$shared"/*.npz "$run/attacks/" 2>/dev/null || true
    bin/eval_blackbox "${common[@]}" --preset=paper --attacks="$attacks" \
      --target="$(model_of "$role" "$s")" --run_name="blackbox-$role-s$s" \
      --surrogate=U=saved_models/paper/surrogate_U.keras \
      --surrogate=D=saved_models/paper/surrogate_D.keras
    cp -n "$run"/attacks/*.npz "$shared/" 2>/dev/null || true
    publish "blackbox-$role-s$s"
  done
done
echo "seed runs finished: $out"
