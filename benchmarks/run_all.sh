#!/usr/bin/env bash
# The benchmark suite with the settings BENCHMARKS.md reports. Run it on an otherwise idle machine: any other
# CPU load (a training job, a browser) slows the multi-threaded steps unevenly and makes the numbers meaningless.
#
#   benchmarks/run_all.sh                         # everything, in the order of BENCHMARKS.md
#   benchmarks/run_all.sh denoiser_step scaling   # some of it
#
# Each benchmark writes its table to $RESULTS/NAME.md (and stdout) and its raw numbers, settings and machine to
# $RESULTS/NAME.json. Environment: PYTHON (default .venv/bin/python), RESULTS (default benchmarks/results),
# SAMPLER_N (videos per prompt kind in the sampler sweep, default 4). diffusers must be importable for the
# head-to-head (pip install -e '.[bench]'); without it those tables have mav's columns only.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RESULTS=${RESULTS:-benchmarks/results}
SAMPLER_N=${SAMPLER_N:-4}

run() {  # run MODULE RESULT_NAME ARGS…
    local module=$1 name=$2
    shift 2
    echo "== $name: $module $*" >&2
    "$PYTHON" -m "benchmarks.$module" "$@" --json "$RESULTS/$name.json" | tee "$RESULTS/$name.md"
}

suite() {
    case $1 in
        denoiser_step) run denoiser_step denoiser_step --config tiny shapes large --frames 8 16 32 \
                           --dtype fp32 bf16 --repeats 5 --warmup 2 ;;
        denoiser_step_matched)
                       run denoiser_step denoiser_step_matched --config large-wide --diffusers-config large \
                           --frames 8 16 32 --dtype fp32 bf16 --repeats 5 --warmup 2 ;;
        denoiser_step_compile)
                       run denoiser_step denoiser_step_compile --config shapes --frames 8 16 --dtype fp32 bf16 \
                           --no-diffusers --compile --repeats 5 --warmup 2 ;;
        utilisation)   run utilisation utilisation --config tiny shapes large --frames 16 --dtype fp32 bf16 \
                           --repeats 5 --warmup 2 ;;
        scaling)       run scaling scaling --config shapes --frames 8 16 32 64 128 --sizes 32 64 128 --dtype fp32 \
                           --repeats 3 --warmup 2 ;;
        end_to_end)    run end_to_end end_to_end --config shapes --dtype fp32 bf16 --repeats 3 --warmup 1 ;;
        samplers)      run samplers samplers --config shapes --samplers ddpm ddim dpmpp --steps 10 20 50 250 \
                           --n "$SAMPLER_N" --dtype fp32 ;;
        layouts)       run layouts layouts --dtype fp32 bf16 --repeats 10 --warmup 3 ;;
        profile_unet)  run profile_unet profile_unet --config tiny shapes --frames 8 --dtype fp32 bf16 \
                           --repeats 5 --warmup 2 ;;
    esac
}

all=(denoiser_step denoiser_step_matched denoiser_step_compile utilisation scaling end_to_end samplers layouts profile_unet)
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    names=("${all[@]}")
fi
for name in "${names[@]}"; do
    if [[ " ${all[*]} " != *" $name "* ]]; then
        echo "unknown benchmark $name; choose from: ${all[*]}" >&2
        exit 2
    fi
done
mkdir -p "$RESULTS"
"$PYTHON" -c "import diffusers" 2>/dev/null || echo "note: diffusers is not importable; timing mav alone" >&2
for name in "${names[@]}"; do
    suite "$name"
done
