"""Load check of ``hashpa serve``: the real command in a subprocess on 127.0.0.1, N concurrent
clients for a bounded time, each sending one mode per request; requests/s, p50/p99 latency per
mode and errors (anything but 200).

    python -m eval.bench_serve indexes/demo --clients 8 --seconds 30 --benchmarks BENCHMARKS.md

Queries are uploads of the index's own photos (the model runs on every request) unless
``--rows``: then indexed rows are the queries (no model, the searches alone).
"""

from __future__ import annotations

import argparse
import itertools
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

import hashpa
from eval.publish import command_line, parse_benchmark_args, publish


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(index_dir: Path, port: int, timeout: float = 120) -> subprocess.Popen:
    """``hashpa serve`` on `port`, returned once it answers GET /index."""
    import httpx

    server = subprocess.Popen([sys.executable, "-m", "hashpa.cli", "serve", str(index_dir), "--port", str(port), "--device", "cpu"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"hashpa serve exited with status {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/index", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"hashpa serve did not answer within {timeout:.0f} s")


def client(address: str, queries: list, modes: list[str], k: int, stop: float, seed: int, out: list) -> None:
    """Requests until `stop`, appending (mode, seconds, status) to `out`."""
    import httpx

    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=address, timeout=60) as http:
        for mode in itertools.cycle(modes):
            if time.monotonic() >= stop:
                return
            query = queries[int(rng.integers(len(queries)))]
            started = time.perf_counter()
            try:
                if isinstance(query, int):
                    response = http.post("/search", json={"row": query, "k": k, "modes": mode})
                else:
                    response = http.post("/search", data={"k": str(k), "modes": mode}, files={"image": ("q.jpg", query)})
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            out.append((mode, time.perf_counter() - started, status))


def run(args) -> dict:
    ix = hashpa.open_index(args.index_dir, device="cpu")
    rows = np.linspace(0, len(ix) - 1, min(len(ix), 64)).astype(int).tolist()
    queries = rows if args.rows else [(ix.directory.image_root() / ix.store.paths[r]).read_bytes() for r in rows]
    port = free_port()
    server = start_server(args.index_dir, port)
    try:
        records: list = []
        stop = time.monotonic() + args.seconds
        threads = [threading.Thread(target=client, args=(f"http://127.0.0.1:{port}", queries, ix.modes, args.k, stop, seed, records))
                   for seed in range(args.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    per_mode = {}
    for mode in ix.modes:
        seconds = np.array([s for m, s, status in records if m == mode and status == 200])
        per_mode[mode] = {"requests": int(sum(m == mode for m, _, _ in records)),
                          "errors": int(sum(m == mode and status != 200 for m, _, status in records)),
                          "latency_p50_ms": float(np.percentile(seconds, 50) * 1000) if len(seconds) else None,
                          "latency_p99_ms": float(np.percentile(seconds, 99) * 1000) if len(seconds) else None}
    return {"index": str(args.index_dir), "items": len(ix), "bits": ix.store.bits, "queries": "indexed rows" if args.rows else "uploads",
            "clients": args.clients, "seconds": elapsed, "requests": len(records),
            "requests_per_second": len(records) / elapsed, "errors": sum(status != 200 for _, _, status in records), "modes": per_mode}


def markdown(results: dict) -> str:
    lines = [f"{results['clients']} concurrent clients for {results['seconds']:.0f} s against `hashpa serve {results['index']}` "
             f"({results['items']:,} items, {results['bits']} bits), queries: {results['queries']}, one mode per request: "
             f"**{results['requests_per_second']:.1f} requests/s, {results['errors']} errors** of {results['requests']:,} requests.",
             "", "| mode | requests | errors | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for mode, row in results["modes"].items():
        p50, p99 = (f"{row[key]:.1f}" if row[key] is not None else "-" for key in ("latency_p50_ms", "latency_p99_ms"))
        lines.append(f"| {mode} | {row['requests']:,} | {row['errors']} | {p50} | {p99} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index_dir", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rows", action="store_true", help="query with indexed rows instead of uploads")
    args = parse_benchmark_args(parser, "serve", argv)
    results = run(args)
    publish(args, "serve", command_line("eval.bench_serve", argv), results, markdown(results))
    if results["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
