"""``hashpa serve`` under a burst of very large uploads: the real command in a subprocess on
127.0.0.1, N clients each uploading one large JPEG at once while another client keeps asking
GET /index; the server's resident memory (before, at its peak, after) and the /index latency
(p50/p99) while the uploads arrive, and how each upload was answered.

    python -m eval.bench_serve_uploads indexes/demo --uploads 45 --megapixels 81 --benchmarks docs/benchmarks/speed.md
"""

from __future__ import annotations

import argparse
import io
import logging
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from eval.bench_serve import free_port, start_server
from eval.publish import command_line, parse_benchmark_args, publish


def large_jpeg(megapixels: float, seed: int = 0) -> bytes:
    """A JPEG of about `megapixels` (3:2), smooth with some noise, as a camera's large photo."""
    height = int((megapixels * 1e6 / 1.5) ** 0.5)
    width = int(height * 1.5)
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 64 + 1, width // 64 + 1, 3), dtype=np.uint8)
    picture = Image.fromarray(small).resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run(args: argparse.Namespace) -> dict:
    import httpx

    photo = large_jpeg(args.megapixels)
    port = free_port()
    server = start_server(args.index, port)
    address = f"http://127.0.0.1:{port}"
    try:
        time.sleep(1)
        before = resident_bytes(server.pid)
        statuses: list[int] = []
        latencies: list[float] = []
        peak = [before]
        done = threading.Event()

        def upload(i: int) -> None:
            try:
                with httpx.Client(timeout=args.timeout) as http:
                    statuses.append(http.post(f"{address}/search", files={"image": (f"{i}.jpg", photo, "image/jpeg")}).status_code)
            except httpx.HTTPError:
                statuses.append(0)

        def poll() -> None:
            with httpx.Client(timeout=args.timeout) as http:
                while not done.is_set():
                    started = time.perf_counter()
                    http.get(f"{address}/index")
                    latencies.append(time.perf_counter() - started)
                    peak[0] = max(peak[0], resident_bytes(server.pid))
                    time.sleep(0.05)

        poller = threading.Thread(target=poll)
        poller.start()
        started = time.perf_counter()
        uploads = [threading.Thread(target=upload, args=(i,)) for i in range(args.uploads)]
        for thread in uploads:
            thread.start()
        for thread in uploads:
            thread.join()
        seconds = time.perf_counter() - started
        done.set()
        poller.join()
        time.sleep(1)
        after = resident_bytes(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"index": str(args.index), "uploads": args.uploads, "megapixels": args.megapixels, "upload_bytes": len(photo),
            "answers": dict(Counter(statuses)), "seconds": round(seconds, 1), "rss_before": before, "rss_peak": peak[0], "rss_after": after,
            "index_requests": len(latencies), "index_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
            "index_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1)}


def markdown(r: dict) -> str:
    mib = 2**20
    answers = ", ".join(f"{count} x {status or 'no answer'}" for status, count in sorted(r["answers"].items()))
    return "\n".join([
        f"{r['uploads']} clients upload a {r['megapixels']:g}-megapixel JPEG ({r['upload_bytes'] / mib:.1f} MiB) at once to `hashpa serve "
        f"{r['index']}`, while another asks GET /index every 50 ms. All uploads answered in {r['seconds']} s: {answers}.", "",
        "| resident memory before | at the peak | after | GET /index requests | p50 ms | p99 ms |", "|---|---|---|---|---|---|",
        f"| {r['rss_before'] / mib:,.0f} MiB | {r['rss_peak'] / mib:,.0f} MiB | {r['rss_after'] / mib:,.0f} MiB | {r['index_requests']} | "
        f"{r['index_p50_ms']} | {r['index_p99_ms']} |"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("--uploads", type=int, default=45)
    parser.add_argument("--megapixels", type=float, default=81)
    parser.add_argument("--timeout", type=float, default=300)
    args = parse_benchmark_args(parser, "serve-uploads", argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    results = run(args)
    publish(args, "serve-uploads", command_line("eval.bench_serve_uploads", argv), results, markdown(results))


if __name__ == "__main__":
    main()
