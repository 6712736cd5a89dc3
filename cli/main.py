"""The ``hashpa`` command: each command parses options and calls the library function of the same name."""

from __future__ import annotations

import errno
import functools
import json
import logging
import signal
import sys
from pathlib import Path

import click

from hashpa import __version__
from hashpa.errors import HashpaError
from hashpa.fileio import files_written, write_failure

log = logging.getLogger("hashpa")


QUIET_LIBRARIES = ("PIL", "matplotlib", "h5py", "faiss", "urllib3", "filelock", "fsspec", "huggingface_hub", "timm")  # their debug lines flood -v


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


# What the machine refused (an errno), and what the user can do about it.
ENVIRONMENT_FAULTS = {
    errno.EROFS: "the file system is read-only: choose a writable folder (or copy the index or run to one)",
    errno.EACCES: "permission denied: make it readable (and writable, where hashpa writes), or choose another folder",
    errno.EPERM: "the operation is not permitted there: choose another folder",
    errno.EFBIG: "the file size limit was reached (ulimit -f): raise it, or write to another file system",
    errno.EMFILE: "too many open files (ulimit -n): raise the limit",
    errno.ENFILE: "the system has too many open files: close some programs and try again",
    errno.ENOMEM: "out of memory: use smaller batches (--batch-size) or free memory",
}
OUT_OF_MEMORY = "out of memory: use smaller batches (--batch-size), fewer proxies or a smaller model, or free memory"


NEEDS_TORCH = ("this command needs PyTorch, which is not installed: pip install 'hashpa[train]' (searching an index whose run has "
               "an ONNX export needs only 'hashpa[query]')")
OPTIONAL_PACKAGES = {"torch": NEEDS_TORCH, "torchvision": NEEDS_TORCH, "timm": NEEDS_TORCH,
                     "onnx": "this command needs onnx and onnxruntime: pip install 'hashpa[export]'",
                     "onnxruntime": "this command needs onnxruntime: pip install 'hashpa[query]'"}


def friendly_errors(command):
    """User mistakes end with a one-line message and exit status 2, an interruption with 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except HashpaError as error:
            click.echo(f"hashpa: error: {error}", err=True)
            sys.exit(2)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                click.echo(f"hashpa: error: {write_failure(Path(error.filename or '.'), error)}", err=True)
                sys.exit(2)
            if error.errno not in ENVIRONMENT_FAULTS:
                raise
            where = f" ({error.filename})" if error.filename else ""
            click.echo(f"hashpa: error: {error.strerror or error}{where}: {ENVIRONMENT_FAULTS[error.errno]}", err=True)
            sys.exit(2)
        except ModuleNotFoundError as error:
            if error.name not in OPTIONAL_PACKAGES:
                raise
            click.echo(f"hashpa: error: {OPTIONAL_PACKAGES[error.name]}", err=True)
            sys.exit(2)
        except MemoryError:
            click.echo(f"hashpa: error: {OUT_OF_MEMORY}", err=True)
            sys.exit(2)
        except RuntimeError as error:
            if "can't allocate memory" not in str(error) and "out of memory" not in str(error).lower():
                raise
            click.echo(f"hashpa: error: {OUT_OF_MEMORY} ({str(error).splitlines()[0][:200]})", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            if files_written():
                click.echo("hashpa: interrupted; finished work is saved and the same command (or --resume) continues it", err=True)
            else:
                click.echo("hashpa: interrupted before anything was written", err=True)
            sys.exit(130)

    return wrapper


def echo_json(value) -> None:
    """`value` as strict JSON (NaN and infinities as null)."""
    from hashpa.fileio import finite, json_default

    click.echo(json.dumps(finite(value), indent=2, default=json_default, allow_nan=False))


def milvus_options(command):
    """--milvus URI and --collection: search the Milvus collection an index directory was published to (hashpa publish)."""
    command = click.option("--collection", help="With --milvus: the collection (default: from the index directory's name).")(command)
    return click.option("--milvus", metavar="URI", help="Search the Milvus collection the index directory was published to (hashpa publish) "
                        "instead of its FAISS indexes: a Milvus Lite file (./photos.db) or a server (http://host:19530); "
                        "modes float, binary and rerank.")(command)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts) instead of a table.")
engine_option = click.option("--engine", type=click.Choice(("auto", "torch", "onnx")), default="auto", show_default=True,
                             help="What embeds query images: torch (the run's checkpoint), onnx (the run's export, from hashpa export; "
                                  "no torch needed), auto: onnx when the run has an export of the index's model.")
overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Replace output files that hashpa did not write, or that were changed since it did (refused without it).")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="hashpa")
@click.option("-v", "--verbose", count=True, help="More log output.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
def cli(verbose: int, quiet: bool) -> None:
    """Deep-hashing image retrieval: train float embeddings and binary codes, index, search, compare."""
    _setup_logging(-1 if quiet else verbose)
    if hasattr(signal, "SIGXFSZ"):  # past the file size limit a write fails with EFBIG (a clear error) instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def main() -> None:
    cli(prog_name="hashpa")


from hashpa.cli import retrieval_commands as _retrieval  # noqa: E402,F401
from hashpa.cli import train_command as _train  # noqa: E402,F401  (registers commands)
