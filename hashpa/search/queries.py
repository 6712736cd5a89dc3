"""``hashpa search``: query image files and folders against an index directory, ranked rows with
their paths, scores and labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hashpa.data.folder import find_images, is_image
from hashpa.data.labels import LEAF, class_of
from hashpa.errors import HashpaError


@dataclass
class Hit:
    rank: int
    row: int
    path: str
    score: float  # cosine similarity, Hamming distance (binary) or projection . code (asymmetric)
    label: str | None


@dataclass
class QueryResult:
    query: str
    label: str | None  # the query's class, when its path gives one (inside the indexed folder, or a query folder)
    hits: list[Hit]
    code: str | None = None  # the query's code as a bit string, when asked for


def expand_queries(queries: Sequence[str | Path], class_depth: int = LEAF) -> list[tuple[Path, str | None]]:
    """(image file, its class) for image files and the images inside folders, in the order given; a
    folder's images are labelled by their path inside it (``hashpa.data.labels.class_of``)."""
    found: list[tuple[Path, str | None]] = []
    for query in map(Path, queries):
        if query.is_dir():
            found += [(query / p, class_of(p, class_depth)) for p in find_images(query)]
        elif query.is_file() and is_image(query):
            found.append((query, None))
        else:
            raise HashpaError(f"query {query} is neither an image file nor a folder")
    if not found:
        raise HashpaError("no query images given")
    return found


def search(index_dir: str | Path, queries: Sequence[str | Path], k: int = 10, mode: str = "float", shortlist: int | None = None,
           index: str | None = None, run: str | Path | None = None, device: str = "auto", nprobe: int | None = None,
           ef_search: int | None = None, with_codes: bool = False, engine: str = "auto", milvus: str | None = None,
           collection: str | None = None) -> list[QueryResult]:
    """Search `index_dir` with query images (files or folders): ranked store rows per query.
    Unreadable images inside query folders are skipped with a warning. with_codes: give each result
    its query's code. milvus, collection: search the Milvus collection `index_dir` was published to
    (see Index)."""
    from hashpa.codes import code_strings
    from hashpa.search.index import open_index

    ix = open_index(index_dir, nprobe, ef_search, run, device, engine, milvus, collection)
    found = expand_queries(queries, ix.meta.class_depth)
    embeddings, codes, positions = ix.embed_files([path for path, _ in found])
    named, read = {Path(q) for q in queries if not Path(q).is_dir()}, set(positions.tolist())
    unread = [str(path) for i, (path, _) in enumerate(found) if path in named and i not in read]
    if unread:
        raise HashpaError(f"cannot read the query image {unread[0]}: it is not an image hashpa can decode (see the warning above)")
    if not len(positions):
        raise HashpaError("none of the query images could be read (see the warnings above)")
    root = _resolved_root(ix)
    readable = [(found[i][0], found[i][1] or _label_inside(found[i][0], root, ix.meta.class_depth)) for i in positions]
    result = ix.search(embeddings, k, mode, codes=codes, shortlist=shortlist, index=index)
    store = ix.store
    strings = code_strings(codes) if with_codes else [None] * len(readable)
    return [
        QueryResult(str(path), label, [
            Hit(rank + 1, int(row), store.paths[row], float(score), store.label_text(row))
            for rank, (row, score) in enumerate(zip(result.ids[q], result.scores[q]))
        ], strings[q])
        for q, (path, label) in enumerate(readable)
    ]


def _resolved_root(ix) -> Path | None:
    try:
        return ix.directory.image_root().resolve()
    except HashpaError:
        return None


def _label_inside(path: Path, root: Path | None, class_depth: int) -> str | None:
    """The class of a query inside the indexed folder (its path there gives it)."""
    if root is None:
        return None
    try:
        return class_of(path.resolve().relative_to(root), class_depth)
    except ValueError:
        return None

