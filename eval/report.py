"""What every benchmark report carries: the command, the machine, the library versions; and where
it goes: ``<out>/<name>.json``, ``<out>/<name>.md`` and a tagged section of BENCHMARKS.md."""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import sys
from pathlib import Path

import numpy as np

from hashpa.fileio import write_json_atomic, write_text_atomic


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that reproduces a benchmark run, for its report."""
    args = argv if argv is not None else sys.argv[1:]
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in args)


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU, core and thread counts, GPU, and the versions of the libraries that decide the speed."""
    import faiss
    import torch

    from hashpa import __version__

    info = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": sys.version.split()[0],
        "versions": {"hashpa": __version__, "torch": torch.__version__, "faiss": faiss.__version__, "numpy": np.__version__},
    }
    return info


def describe_machine(info: dict) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return f"{info['cpu']} ({info['cpu_cores']} cores, FAISS threads {info['faiss_threads']}{gpu}); {versions}"


def update_section(path: str | Path, tag: str, body: str) -> None:
    """Replace the text between ``<!-- TAG:start -->`` and ``<!-- TAG:end -->`` in `path` (appended if absent)."""
    path = Path(path)
    start, end = f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"
    text = path.read_text() if path.is_file() else ""
    block = f"{start}\n{body}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    write_text_atomic(path, text)


def add_output_options(parser: argparse.ArgumentParser, name: str) -> None:
    """--out, --benchmarks and --tag, the options every benchmark writes its report by."""
    parser.add_argument("--out", type=Path, default=Path(f"bench-results/{name}"), help="folder for the JSON, Markdown and plots")
    parser.add_argument("--benchmarks", type=Path, help=f"Markdown file whose {name} section to replace (e.g. BENCHMARKS.md)")
    parser.add_argument("--tag", default="cpu", help="section name in --benchmarks (cpu, gpu, ...)")


def settings(args: argparse.Namespace) -> dict:
    """The parsed options as JSON-ready values."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def publish(args: argparse.Namespace, name: str, report: dict, body: str) -> None:
    """Write ``report`` (which holds "command" and "machine") with the parsed options as
    <out>/<name>.json, the Markdown `body` under a command and machine header as <out>/<name>.md and
    into the ``<name>:<tag>`` section of --benchmarks, and print the Markdown."""
    report = {**report, "settings": settings(args)}
    text = f"Command: `{report['command']}`  \nMachine: {describe_machine(report['machine'])}  \n{body}"
    write_json_atomic(args.out / f"{name}.json", report)
    write_text_atomic(args.out / f"{name}.md", text + "\n")
    if args.benchmarks:
        update_section(args.benchmarks, f"{name}:{args.tag}", text)
    print(text)
