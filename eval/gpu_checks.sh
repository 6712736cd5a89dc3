#!/usr/bin/env bash
# Every GPU measurement, in four short phases for a GPU machine (one H100 or H200): the speed of
# training, indexing and the loss, the Flowers-102 benchmark at 224 px, and the paper's frontier.
# A 15-minute allowance holds three phases back to back on the warm machine: choose them.
#
# Here, once:   make gpu-bundle     # wheels into .whl/{common,lite,faiss}, the 112-px Flowers copy into data/
# There:        bash eval/gpu_checks.sh speed     carry .whl/common .whl/lite data/flowers102-112   (~4 min)
#               bash eval/gpu_checks.sh flowers   carry .whl/common .whl/lite data/flowers102-112   (~4 min)
#               bash eval/gpu_checks.sh index     carry .whl/common .whl/faiss data/flowers102-112  (~4 min)
#               bash eval/gpu_checks.sh frontier  carry .whl/common .whl/lite data/flowers102-112   (~5 min)
# (faiss-cpu and the lite0 weights do not fit one 64 MiB carry together with the photos.)
# Back here:    tar -xzf <files_at>/gpu-<phase>.tar.gz -C bench-results/
#               python -m eval.publish docs/benchmarks bench-results/gpu   # the :gpu sections of the benchmark pages
#
# speed:    CUDA tests; loss against pytorch-metric-learning (B x C up to 1M classes); training
#           throughput (a) model limit, (b) hashpa pipeline, (c) paper-style reference, ResNet-50 224 px.
# flowers:  the Flowers-102 benchmark at 224 px (upscaled from the 112-px copy: the 224-px copy does
#           not fit a carry), lite0 ImageNet weights, 20 epochs, the 64-bit run; its convergence table
#           is the time-to-accuracy figure.
# index:    the quality-per-byte frontier (float16, PCA, PQ, RaBitQ, PCA-ITQ, the model's codes) of the
#           flowers phase's 64-bit run at 224 px, when that phase ran first on the same warm machine;
#           hashpa index images/s against the model alone, PIL and GPU JPEG decoding (ResNet-50, 224 px);
#           then torchrun --nproc_per_node 1 (nccl) hashpa train and hashpa index.
# frontier: the paper's frontier at the CPU benchmarks' schedule: a training step's device memory and
#           images/s against the batch size with and without --chunk-size (up to batch 960), batch 120
#           against 480 in chunks, several proxies per class, and the alpha x delta grid (as far as its
#           time limit goes: finished cells are reported, a rerun continues).
set -uo pipefail
phase=${1:?usage: bash eval/gpu_checks.sh speed|flowers|index|frontier}
data=${HASHPA_GPU_DATA:-data/flowers102-112}
results=bench-results/gpu
out=${OUT:-/tmp/gpu-out}
mkdir -p "$results" "$out"

# The image has torch, torchvision, timm, h5py, click; the rest travels as wheels. hashpa itself is
# laid out as installed (cli/ inside the package, eval/ from the working tree) without pip.
if compgen -G ".whl/*/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*/*.whl || exit 1
fi
rm -rf /tmp/pkgs && mkdir -p /tmp/pkgs && cp -r hashpa /tmp/pkgs/ && cp -r cli /tmp/pkgs/hashpa/cli
export PYTHONPATH=/tmp/pkgs:/tmp/site:. PYTHONUNBUFFERED=1 HASHPA_CACHE=/tmp/hashpa-cache
python3 -c "import torch, hashpa; print('hashpa', hashpa.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep the log, go on after a failure
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s)"
    local started=$SECONDS
    timeout "$limit" "$@" > "$results/$name.log" 2>&1
    echo "=== $name: exit $? after $((SECONDS - started)) s"
    tail -n 25 "$results/$name.log"
}

case $phase in
speed)
    step cuda-tests 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/losses
    step loss 120 python3 -m eval.bench_loss --device cuda --compile --tag gpu --out "$results/loss"
    step train 240 python3 -m eval.bench_train --data "$data" --backbone resnet50 --batch-size 180 --image-size 224 \
        --compile --workers 12 --tag gpu --out "$results/train"
    ;;
flowers)
    step flowers 270 python3 -m eval.flowers --data "$data" --image-size 224 --epochs 20 --bits 64 --losses proxy_anchor \
        --batch-size 180 --workers 12 --device cuda --tag gpu --out "$results/flowers"
    ;;
index)
    if [ -f "$results/flowers/runs/proxy_anchor-64bit/best.pt" ]; then
        step frontier 90 python3 -m eval.frontier "$results/flowers/runs/proxy_anchor-64bit" --threads 1 --tag gpu --out "$results/frontier"
    fi
    step model 90 python3 -c "import hashpa; hashpa.train(hashpa.resolve_config(dict(data='$data', \
out='$results/resnet50-run', backbone='resnet50', weights='none', image_size=224, epochs=1, warmup_epochs=0, batch_size=180, \
workers=12, device='cuda', hash_init='random')))"
    step index 150 python3 -m eval.bench_index --data "$data" --run-dir "$results/resnet50-run" --batch-size 256 \
        --workers 6 12 --decode pil device --device cuda --tag gpu --out "$results/index"
    # torchrun with nccl (one rank on the one GPU): training and indexing as a user launches them.
    step torchrun-train 120 python3 -m torch.distributed.run --nproc_per_node 1 -m hashpa.cli train --data "$data" \
        --out "$results/torchrun-run" --backbone resnet50 --weights none --image-size 224 --epochs 1 --warmup-epochs 0 \
        --batch-size 180 --workers 12 --device cuda --hash-init random
    step torchrun-index 90 python3 -m torch.distributed.run --nproc_per_node 1 -m hashpa.cli index "$data" \
        --run-dir "$results/torchrun-run" --out "$results/torchrun-index" --device cuda --workers 12
    ;;
frontier)
    runs="$results/paper-frontier"
    step large-batches 120 python3 -m eval.large_batches --data "$data" --batches 120 240 480 960 --chunk 120 --device cuda \
        --workers 12 --tag gpu --out "$runs"
    step proxies 90 python3 -m eval.proxies_per_class --data "$data" --device cuda --workers 12 --tag gpu --out "$runs"
    step sensitivity 100 python3 -m eval.sensitivity --data "$data" --device cuda --workers 12 --tag gpu --out "$runs"
    ;;
*)
    echo "unknown phase $phase: speed, flowers, index or frontier" >&2
    exit 2
    ;;
esac
tar --exclude='*.pt' --exclude='*.h5' --exclude='*.faiss' -czf "$out/gpu-$phase.tar.gz" -C bench-results gpu
echo "wrote $out/gpu-$phase.tar.gz"
