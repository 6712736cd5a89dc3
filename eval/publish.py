"""What every benchmark report carries: the command, the machine, the library versions; and where
it goes: ``<out>/<name>.json``, ``<out>/<name>.md`` and a tagged section of a benchmark page
(``--benchmarks docs/benchmarks/<page>.md``).

    python -m eval.publish docs/benchmarks bench-results/gpu    # merge reports brought back from a GPU machine
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import sys
from pathlib import Path

from hashpa.fileio import atomic_path, write_json_atomic, write_text_atomic
from hashpa.report.machine import describe_machine, machine_info


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that reproduces a benchmark run, for its report."""
    args = argv if argv is not None else sys.argv[1:]
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in args)


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
    parser.add_argument("--benchmarks", type=Path, help=f"Markdown page whose {name} section to replace (docs/benchmarks/<page>.md)")
    parser.add_argument("--tag", default="cpu", help="section name in --benchmarks (cpu, gpu, ...)")


def parse_benchmark_args(parser: argparse.ArgumentParser, name: str, argv: list[str] | None) -> argparse.Namespace:
    """A benchmark's options parsed, with the output options added, and its logging set up
    (progress lines at INFO, FAISS's own loading messages quiet)."""
    add_output_options(parser, name)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    return args


def settings(args: argparse.Namespace) -> dict:
    """The parsed options as JSON-ready values."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def data_missing(data: Path, benchmark: str) -> bool:
    """True (after saying so) when a benchmark's data folder is absent: it is skipped, not failed."""
    if data.is_dir():
        return False
    print(f"{benchmark} benchmark skipped: {data} not found (see ../shared/data/README.md; pass --data DIR)")
    return True


def publish(args: argparse.Namespace, name: str, command: str, results: dict, body: str) -> None:
    """Write `results` with the command, this machine and the parsed options as <out>/<name>.json,
    the Markdown `body` under a command and machine header as <out>/<name>.md and into the
    ``<name>:<tag>`` section of --benchmarks, and print the Markdown."""
    report = {"command": command, "machine": machine_info(), **results, "settings": settings(args)}
    text = f"Command: `{command}`  \nMachine: {describe_machine(report['machine'])}  \n{body}"
    write_json_atomic(args.out / f"{name}.json", report)
    write_text_atomic(args.out / f"{name}.md", text + "\n")
    if args.benchmarks:
        update_section(args.benchmarks, f"{name}:{args.tag}", text)
    print(text)


def save_figure(fig, *paths: Path | None) -> None:
    """Lay out the matplotlib figure `fig`, write it as a PNG to each of `paths` given (atomically),
    and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    for path in filter(None, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def page_for(benchmarks: Path, name: str, tag: str) -> Path | None:
    """The page of `benchmarks` (a Markdown file, or a folder of them) that holds the section
    ``<name>:<tag>``, else one holding another section of `name`; None when no page has either."""
    pages = sorted(benchmarks.glob("*.md")) if benchmarks.is_dir() else [benchmarks]
    texts = {page: page.read_text(encoding="utf-8") for page in pages if page.is_file()}
    for marker in (f"<!-- {name}:{tag}:start -->", f"<!-- {name}:"):
        for page, text in texts.items():
            if marker in text:
                return page
    return None if benchmarks.is_dir() else benchmarks


def merge_sections(benchmarks: str | Path, folders: list[Path]) -> list[str]:
    """Put each benchmark report found in `folders` (a <name>.md beside its <name>.json, as `publish`
    writes them, e.g. brought back from a GPU machine) into its ``<name>:<tag>`` section of
    `benchmarks`: a page, or the page of a folder of pages that holds that benchmark's sections.
    Returns the sections replaced."""
    replaced = []
    for folder in folders:
        for report_path in sorted(Path(folder).rglob("*.json")):
            markdown_path = report_path.with_suffix(".md")
            report = json.loads(report_path.read_text())
            if not markdown_path.is_file() or "tag" not in report.get("settings", {}) or "command" not in report:
                continue
            page = page_for(Path(benchmarks), report_path.stem, report["settings"]["tag"])
            if page is None:
                print(f"no page of {benchmarks} holds a {report_path.stem} section: {report_path} left out")
                continue
            tag = f"{report_path.stem}:{report['settings']['tag']}"
            update_section(page, tag, markdown_path.read_text().rstrip("\n"))
            replaced.append(tag)
    return replaced


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Merge benchmark reports (e.g. from a GPU machine) into the benchmark pages.")
    parser.add_argument("benchmarks", type=Path, help="a Markdown page, or a folder of them (docs/benchmarks)")
    parser.add_argument("folders", type=Path, nargs="+", help="folders holding <name>.json + <name>.md reports")
    args = parser.parse_args(argv)
    for tag in merge_sections(args.benchmarks, args.folders):
        print(f"replaced section {tag} in {args.benchmarks}")


if __name__ == "__main__":
    main()
