#!/usr/bin/env bash
# The "one house" move checked on Flowers-102: the 64-bit unseen-class benchmark run by the code before
# the move (commit 4334645) and by this code with the backbone's resizing forced back to bilinear
# (the move's one intended change of preprocessing), then every Recall and MAP figure compared.
#   bash eval/check_move.sh        (from the repository root, after make install; about 30 min on 2 cores)
set -euo pipefail
data=${FLOWERS:-../shared/data/flowers102-112}
work=${WORK:-/tmp/hashpa-check-move}
rm -rf "$work" && mkdir -p "$work"
git worktree add -q "$work/old" 4334645
ln -s "$work/old/eval" "$work/old/hashpa/eval" && ln -s "$work/old/cli" "$work/old/hashpa/cli"  # laid out as it was installed
(cd "$work/old" && PYTHONPATH="$work/old" HASHPA_CACHE="$work/cache-old" "$OLDPWD/.venv/bin/python" -m hashpa.eval.flowers \
    --data "$(realpath "$data")" --bits 64 --losses proxy_anchor --out "$work/before")
.venv/bin/python - "$data" "$work/after" <<'PY'
import dataclasses, sys
import hashpa.models.backbones as backbones
original = backbones._timm_backbone
def bilinear(name, weights):
    backbone = original(name, weights)
    backbone.preprocessing = dataclasses.replace(backbone.preprocessing, interpolation="bilinear")
    return backbone
backbones._timm_backbone = bilinear
from eval import flowers
flowers.main(["--data", sys.argv[1], "--bits", "64", "--losses", "proxy_anchor", "--out", sys.argv[2]])
PY
.venv/bin/python - "$work" <<'PY'
import json, sys
before, after = (json.load(open(f"{sys.argv[1]}/{name}/flowers.json"))["rows"] for name in ("before", "after"))
figures = [(a["method"], k, a[k], b.get(k)) for a, b in zip(before, after) for k in a if k.startswith(("recall", "expected", "map"))]
different = [f for f in figures if f[2] != f[3]]
print(f"{len(figures)} figures compared, {len(different)} differ", *different, sep="\n")
sys.exit(1 if different or len(before) != len(after) else 0)
PY
git worktree remove --force "$work/old"
