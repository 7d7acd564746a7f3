#!/bin/bash
# The CUDA checks and figures in one call on a lent GPU machine (torch and transformers there,
# nothing installable): see bench/README.md, "GPU readiness". Each step is bounded; the default
# steps end within ~9 minutes, `tests` is best a second call. Logs go to $OUT (or /tmp/gpu_session).
#
#   bash bench/device/gpu_session.sh [check] [llm] [cpu-bf16] [tests]     (default: check llm cpu-bf16)
#
# check: bench/gpu_check.py on CUDA. llm: bench/llm_generation.py on CUDA (small and 0.5b).
# cpu-bf16: the same bench on the machine's CPU in bf16, GPT-2 base generation in fp32 / int8 / bf16
# (bench/cpu_inference.py) and bf16 products per shape (bench/prepacked_linear.py); the CPU's flags
# printed: AMX / AVX512-BF16 are what the CPU bf16 targets of issues 22 and 26 need.
# tests: the cross-package, core and task tests with CUDA visible (the Trainer then trains on it),
# 14 workers, a file's tests on one worker (the examples' runs are started once per worker that
# has one), each failure printed as it happens.
set -u
cd "$(dirname "$0")/../.." || exit 1
python3 bench/device/install_checkout.py || exit 1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
LOGS=${OUT:-/tmp/gpu_session}
mkdir -p "$LOGS"

NOISE="Loading weights|Writing model|warnings.warn|^ "
bounded() {  # bounded NAME SECONDS COMMAND...: the output in $LOGS/NAME.log, its gist (GIST) on the console
    local name=$1 seconds=$2
    shift 2
    echo "=== $name ($(date +%T), at most $seconds s)"
    timeout -s INT -k 15 "$seconds" "$@" >"$LOGS/$name.log" 2>&1
    grep -v -E "$NOISE" "$LOGS/$name.log" | grep -E "${GIST:-.}" | tail -60
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(check llm cpu-bf16)
for step in "${steps[@]}"; do
    case $step in
        check) bounded check 90 python3 bench/gpu_check.py --device cuda ;;
        llm) bounded llm-cuda 200 python3 bench/llm_generation.py --device cuda --sizes small,0.5b --repeats 2 ;;
        cpu-bf16)
            lscpu | grep -E "Model name|^CPU\(s\)"
            grep -o -w -E "avx512_bf16|amx_bf16" /proc/cpuinfo | sort | uniq -c
            bounded llm-cpu-bf16 150 python3 bench/llm_generation.py --sizes 0.5b --dtypes bfloat16 --repeats 2
            bounded gpt2-cpu-bf16 90 python3 bench/cpu_inference.py --only generation --threads "$(nproc)" --repeats 3
            bounded prepacked-cpu 60 python3 bench/prepacked_linear.py --dtype bfloat16 --qwen --rows 1 4 ;;
        tests)
            # bounds: these folders took 9.7 / 1.1 / 2.4 min with 2 workers on this project's 2-core machine
            for bound_folder in 150:tests 100:packages/core/tests 100:packages/tasks/tests; do
                folder=${bound_folder#*:}
                GIST="(FAILED|ERROR) |[0-9]+ (passed|failed)" bounded "tests-${folder//\//-}" "${bound_folder%%:*}" \
                    python3 -m pytest -p no:cacheprovider -o addopts= -v -rfE -n 14 --dist loadfile --timeout 120 "$folder"
            done ;;
        *) echo "unknown step $step (check, llm, cpu-bf16, tests)"; exit 2 ;;
    esac
done
echo "=== end $(date +%T)"
