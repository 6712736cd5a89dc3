"""Proxy Anchor loss speed and memory: hashpa against pytorch-metric-learning, side by side.

    python -m eval.bench_loss --device cpu --out bench-results/loss-cpu

Forward + backward time (median of repeats after warm-up) at the issue's shapes, for hashpa's
loss (eager and torch.compile'd), and pytorch-metric-learning's ProxyAnchorLoss (``pip install
hashpa[bench]``); then peak memory of the plain and the proxy-chunked loss at a million classes.
Peak memory is torch.cuda.max_memory_allocated on a GPU and the peak resident set size of a fresh
subprocess on the CPU. Writes loss.json and loss.md.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

import torch

from eval.publish import command_line, parse_benchmark_args, publish
from hashpa.devices import synchronize
from hashpa.losses import ProxyAnchorLoss

log = logging.getLogger("eval.bench_loss")

SHAPES = ((180, 100), (1000, 11_318), (512, 100_000))


def make_loss(impl: str, classes: int, dim: int, device: str, chunk: int | None = None):
    if impl == "pml":
        from pytorch_metric_learning.losses import ProxyAnchorLoss as PMLProxyAnchor

        return PMLProxyAnchor(classes, dim, margin=0.1, alpha=32).to(device)
    loss = ProxyAnchorLoss(classes, dim, proxy_chunk=chunk).to(device)
    return torch.compile(loss) if impl == "hashpa-compiled" else loss


def time_step(loss, batch: int, dim: int, classes: int, device: str, repeats: int) -> float:
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, dim, generator=generator).to(device).requires_grad_()
    labels = torch.randint(0, classes, (batch,), generator=generator).to(device)

    def step():
        value = loss(x, labels)
        value.backward()
        x.grad = None
        for p in loss.parameters():
            p.grad = None

    for _ in range(2):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def peak_memory(batch: int, classes: int, dim: int, device: str, chunk: int | None) -> float:
    """Peak bytes one forward+backward step adds (on the CPU: the resident-set high-water mark of a
    fresh process, reset just before the step, minus its resident set then)."""
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        loss = make_loss("hashpa", classes, dim, device, chunk)
        time_step(loss, batch, dim, classes, device, repeats=1)
        return float(torch.cuda.max_memory_allocated() - baseline)
    code = (
        "from eval.bench_loss import make_loss, time_step, _rss;"
        f"loss = make_loss('hashpa', {classes}, {dim}, 'cpu', {chunk});"
        "before = _rss('VmRSS'); open('/proc/self/clear_refs', 'w').write('5');"
        f"time_step(loss, {batch}, {dim}, {classes}, 'cpu', repeats=1);"
        "print(_rss('VmHWM') - before)"
    )
    repository = Path(__file__).resolve().parents[1]  # where `eval` is importable
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repository)
    return float(output.stdout.strip().splitlines()[-1])


def _rss(field: str) -> int:
    """VmRSS / VmHWM of this process in bytes (Linux)."""
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def run(args) -> dict:
    impls = ["hashpa", "pml"] + (["hashpa-compiled"] if args.compile else [])
    rows = []
    for batch, classes in args.shapes:
        row = {"batch": batch, "classes": classes, "dim": args.dim}
        for impl in impls:
            try:
                row[f"{impl}_ms"] = 1000 * time_step(make_loss(impl, classes, args.dim, args.device), batch, args.dim, classes, args.device, args.repeats)
            except ImportError:
                log.warning("pytorch-metric-learning is not installed (pip install hashpa[bench]): no reference timing")
                row[f"{impl}_ms"] = None
        if row.get("pml_ms"):
            row["speedup_vs_pml"] = row["pml_ms"] / row["hashpa_ms"]
            if row.get("hashpa-compiled_ms"):
                row["compiled_speedup_vs_pml"] = row["pml_ms"] / row["hashpa-compiled_ms"]
        rows.append(row)
        log.info("%s", row)
    memory = []
    for chunk in (None, args.chunk):
        bytes_peak = peak_memory(args.memory_batch, args.memory_classes, args.dim, args.device, chunk)
        memory.append({"batch": args.memory_batch, "classes": args.memory_classes, "proxy_chunk": chunk, "peak_bytes": bytes_peak})
        log.info("%s", memory[-1])
    return {"timing": rows, "memory": memory}


def markdown(results: dict) -> str:
    lines = ["",
             "| batch | classes | hashpa ms | hashpa compiled ms | pytorch-metric-learning ms | speed-up (eager) | speed-up (compiled) |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda v, f="{:.2f}": "-" if v is None else f.format(v)  # noqa: E731
    for r in results["timing"]:
        lines.append(f"| {r['batch']} | {r['classes']:,} | {fmt(r.get('hashpa_ms'))} | {fmt(r.get('hashpa-compiled_ms'))} | {fmt(r.get('pml_ms'))} | "
                     f"{fmt(r.get('speedup_vs_pml'), '{:.1f}x')} | {fmt(r.get('compiled_speedup_vs_pml'), '{:.1f}x')} |")
    lines += ["", "| batch | classes | mode | peak memory |", "|---|---|---|---|"]
    for m in results["memory"]:
        mode = f"chunks of {m['proxy_chunk']:,} proxies" if m["proxy_chunk"] else "plain"
        lines.append(f"| {m['batch']} | {m['classes']:,} | {mode} | {m['peak_bytes'] / 2**30:.2f} GiB |")
    return "\n".join(lines)


def _shape(text: str) -> tuple[int, int]:
    batch, classes = text.lower().split("x")
    return int(batch), int(classes)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shapes", type=_shape, nargs="+", default=list(SHAPES), help="BATCHxCLASSES, e.g. 180x100")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(hashpa loss)")
    parser.add_argument("--memory-batch", type=int, default=512)
    parser.add_argument("--memory-classes", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=65_536)
    args = parse_benchmark_args(parser, "loss", argv)
    results = run(args)
    publish(args, "loss", command_line("eval.bench_loss", argv), results, markdown(results))


if __name__ == "__main__":
    main()
