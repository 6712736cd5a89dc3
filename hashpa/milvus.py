"""An index directory published to a Milvus collection, and searched there.

``publish(index_dir, uri)`` writes each store row as one entity: the index's binary codes as a
BINARY_VECTOR (HAMMING, BIN_FLAT), the float embedding as a FLOAT_VECTOR (inner product, FLAT) for
rerank, and the path (primary key), label, class and store row as scalar fields. Publishing again
upserts only the rows that changed (file size, modification time or store row) and deletes the
paths the index no longer holds, so a publish that was interrupted is finished by running it again.
The collection records the index's model fingerprint, code source, bits and dimension, and a
collection of another model or code space is refused before anything is written.

``MilvusCollection(uri, name).search(...)`` answers the float, binary and rerank modes as the index
directory's exact indexes do, scores and store rows alike, best first, ties by store row, except
where tied Hamming distances straddle the k-th place: Milvus may return other members of that tie.

A URI ending in ``.db`` is an embedded Milvus Lite file; ``http://host:19530`` a Milvus server.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashpa.errors import HashpaError
from hashpa.search.modes import SearchResult, default_shortlist

log = logging.getLogger(__name__)

MILVUS = "milvus"  # what Index.search's `index` names to search the published collection
MILVUS_MODES = ("float", "binary", "rerank")
MAX_PATH = 65535  # Milvus's longest VARCHAR
MAX_TOPK = 16384  # Milvus's largest limit
BATCH = 2000
FIELDS = ("path", "row", "label", "class_name", "size", "mtime")


@dataclass(frozen=True)
class CollectionFacts:
    """What a collection must agree on with the index directory that is published into it."""

    model_fingerprint: str
    code_source: str
    bits: int
    dim: int

    def describe(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def parse(cls, text: str, where: str) -> "CollectionFacts":
        try:
            data = json.loads(text)
            facts = cls(str(data["model_fingerprint"]), str(data["code_source"]), int(data["bits"]), int(data["dim"]))
        except (ValueError, KeyError, TypeError) as error:
            raise HashpaError(f"{where} was not written by hashpa publish (its description is not hashpa's: {error}); "
                              "publish into another collection") from None
        return facts


@dataclass
class PublishSummary:
    collection: str
    rows: int
    upserted: int
    deleted: int


def client(uri: str):
    """A pymilvus MilvusClient for `uri` (a Milvus Lite file ``*.db`` or a server URL)."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise HashpaError("Milvus needs pymilvus and milvus-lite: pip install 'hashpa[milvus]'") from None
    if not uri.startswith(("http://", "https://", "tcp://")) and not uri.endswith(".db"):
        raise HashpaError(f"Milvus URI {uri!r} is neither a Milvus Lite file (ending in .db) nor a server URL (http://host:19530)")
    if uri.endswith(".db") and not Path(uri).resolve().parent.is_dir():
        raise HashpaError(f"Milvus Lite file {uri}: its folder does not exist; create it first")
    try:
        return MilvusClient(uri)
    except Exception as error:  # pymilvus raises its own and gRPC errors for an unreachable server
        raise HashpaError(f"cannot reach Milvus at {uri}: {error}") from None


def default_collection(index_path: Path) -> str:
    """A collection name from the index directory's name (Milvus allows letters, digits and _)."""
    name = "".join(c if c.isalnum() else "_" for c in index_path.resolve().name)
    return name if name[:1].isalpha() else f"hashpa_{name}"


def _index_facts(ix) -> CollectionFacts:
    return CollectionFacts(ix.meta.model_fingerprint, ix.store.code_source, ix.meta.bits, ix.meta.dim)


def _collection_facts(milvus, name: str) -> CollectionFacts:
    return CollectionFacts.parse(milvus.describe_collection(name).get("description", ""), f"Milvus collection {name}")


def _create(milvus, name: str, facts: CollectionFacts) -> None:
    from pymilvus import DataType

    schema = milvus.create_schema(auto_id=False, description=facts.describe())
    schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH, is_primary=True)
    schema.add_field("code", DataType.BINARY_VECTOR, dim=facts.bits)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=facts.dim)
    schema.add_field("row", DataType.INT64)
    schema.add_field("label", DataType.INT64)
    schema.add_field("class_name", DataType.VARCHAR, max_length=MAX_PATH)
    schema.add_field("size", DataType.INT64)
    schema.add_field("mtime", DataType.INT64)
    params = milvus.prepare_index_params()
    params.add_index("code", index_type="BIN_FLAT", metric_type="HAMMING")
    params.add_index("embedding", index_type="FLAT", metric_type="IP")
    milvus.create_collection(name, schema=schema, index_params=params)


def _published(milvus, name: str) -> dict[str, tuple[int, int, int]]:
    """path -> (row, size, mtime) of every entity in the collection."""
    held = {}
    iterator = milvus.query_iterator(name, batch_size=BATCH, filter="", output_fields=["row", "size", "mtime"])
    try:
        while batch := iterator.next():
            held.update({e["path"]: (e["row"], e["size"], e["mtime"]) for e in batch})
    finally:
        iterator.close()
    return held


def publish(index_dir: str | Path, uri: str, collection: str | None = None) -> PublishSummary:
    """Publish the index directory `index_dir` to the Milvus collection `collection` (default: from
    the directory's name) at `uri`, creating it or bringing it up to date (see the module)."""
    from hashpa.search.index import open_index

    with open_index(index_dir) as ix:
        name = collection or default_collection(ix.path)
        facts = _index_facts(ix)
        too_long = next((p for p in ix.store.paths if len(p.encode()) > MAX_PATH), None)
        if too_long is not None:
            raise HashpaError(f"{ix.path}: the path {too_long[:80]}... is longer than Milvus's {MAX_PATH} bytes")
        milvus = client(uri)
        try:
            if milvus.has_collection(name):
                held_facts = _collection_facts(milvus, name)
                if held_facts != facts:
                    raise HashpaError(f"Milvus collection {name} at {uri} holds {held_facts.describe()}, this index {facts.describe()}: "
                                      "publish into another collection (--collection) or drop that one")
            else:
                _create(milvus, name, facts)
            return _sync(milvus, name, ix.store)
        finally:
            milvus.close()


def _sync(milvus, name: str, store) -> PublishSummary:
    held = _published(milvus, name)
    wanted = {path: (row, int(store.sizes[row]), int(store.mtimes[row])) for row, path in enumerate(store.paths)}
    changed = [row for path, (row, *_) in wanted.items() if held.get(path) != wanted[path]]
    gone = sorted(set(held) - set(wanted))
    codes = store.index_codes
    for start in range(0, len(changed), BATCH):
        rows = changed[start:start + BATCH]
        fresh = [_entity(store, codes, row) for row in rows if store.paths[row] not in held]  # insert: cheaper than upsert
        if fresh:
            milvus.insert(name, fresh)
        if len(fresh) < len(rows):
            milvus.upsert(name, [_entity(store, codes, row) for row in rows if store.paths[row] in held])
        log.info("Milvus %s: %d of %d changed rows written", name, start + len(rows), len(changed))
    for start in range(0, len(gone), BATCH):
        milvus.delete(name, ids=gone[start:start + BATCH])
    milvus.flush(name)
    return PublishSummary(name, len(store), len(changed), len(gone))


def _entity(store, codes: np.ndarray, row: int) -> dict:
    return {"path": store.paths[row], "code": codes[row].tobytes(), "embedding": store.embeddings[row].tolist(), "row": row,
            "label": int(store.labels[row]), "class_name": store.label_text(row) or "", "size": int(store.sizes[row]),
            "mtime": int(store.mtimes[row])}


class MilvusCollection:
    """A published collection opened for search: `search` takes query embeddings and codes in the
    code space of the index directory it was published from (``Index.embed`` gives both)."""

    def __init__(self, uri: str, name: str):
        self.uri, self.name = uri, name
        self._milvus = client(uri)
        if not self._milvus.has_collection(name):
            self._milvus.close()
            raise HashpaError(f"Milvus at {uri} has no collection {name}: publish an index into it first (hashpa publish)")
        self.facts = _collection_facts(self._milvus, name)
        self._milvus.load_collection(name)

    def close(self) -> None:
        self._milvus.close()

    def __enter__(self) -> "MilvusCollection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._milvus.get_collection_stats(self.name)["row_count"])

    def read_bytes(self, mode: str) -> int:
        """Bytes a row of the vectors that `mode` reads (the collection holds both kinds)."""
        code, embedding = self.facts.bits // 8, 4 * self.facts.dim
        return {"float": embedding, "binary": code, "rerank": code + embedding}[mode]

    def check_index(self, ix) -> None:
        """Refuse `ix` unless its model and code space are the collection's."""
        if _index_facts(ix) != self.facts:
            raise HashpaError(f"Milvus collection {self.name} holds {self.facts.describe()}, the index {ix.path} "
                              f"{_index_facts(ix).describe()}: query it with the index it was published from")

    @staticmethod
    def check_mode(mode: str) -> None:
        if mode not in MILVUS_MODES:
            raise HashpaError(f"a Milvus collection answers the modes {', '.join(MILVUS_MODES)}, not {mode!r}")

    def search_index(self, ix, embeddings: np.ndarray, codes: np.ndarray | None, k: int, mode: str,
                     shortlist: int | None = None) -> SearchResult:
        """`search`, its rows checked to be the rows of the opened index `ix` (hashpa.search.Index)
        that was published: a collection behind or ahead of the index is refused."""
        result, named = self.search(embeddings, codes, k, mode, shortlist)
        paths = ix.store.paths
        for rows, hits in zip(result.ids, named):
            for row, (path, _) in zip(rows, hits):
                if row >= len(paths) or paths[row] != path:
                    raise HashpaError(f"Milvus collection {self.name} is not the current state of {ix.path} (row {row} is {path} there): "
                                      f"publish it again (hashpa publish {ix.path} --milvus {self.uri} --collection {self.name})")
        return result

    def search(self, embeddings: np.ndarray, codes: np.ndarray | None, k: int = 10, mode: str = "float",
               shortlist: int | None = None) -> tuple[SearchResult, list[list[tuple[str, str | None]]]]:
        """(SearchResult of the store rows published, best first, ties by row; the (path, class) of
        each query's results).

        embeddings: float32 [Q, dim], L2-normalised; codes: uint8 [Q, bits/8] (binary, rerank)."""
        self.check_mode(mode)
        shortlist = shortlist or default_shortlist(mode, k)
        if not 1 <= k <= MAX_TOPK or (mode == "rerank" and not k <= shortlist <= MAX_TOPK):
            raise HashpaError(f"k must be in [1, {MAX_TOPK}] and the rerank shortlist in [k, {MAX_TOPK}]: got k {k}, shortlist {shortlist}")
        if mode != "float" and (codes is None or codes.shape[1] * 8 != self.facts.bits):
            raise HashpaError(f"mode {mode} needs the queries' {self.facts.bits}-bit codes")
        if mode == "float":
            hits = self._hits("embedding", [q.tolist() for q in embeddings], k, "IP")
            return _ranked(hits, k, lambda h: -h["distance"], lambda h: h["distance"])
        hits = self._hits("code", [q.tobytes() for q in codes], shortlist if mode == "rerank" else k, "HAMMING")
        if mode == "binary":
            return _ranked(hits, k, lambda h: h["distance"], lambda h: h["distance"])
        hits = [self._rescored(query, found) for query, found in zip(embeddings, hits)]
        return _ranked(hits, k, lambda h: -h["distance"], lambda h: h["distance"])

    def _rescored(self, query: np.ndarray, shortlist: list[dict]) -> list[dict]:
        """`shortlist` scored by inner product with `query` on the server (the embeddings never leave
        it); all of it, so that tied scores are ordered by row as FAISS's are."""
        if not shortlist:
            return []
        rows = [int(h["entity"]["row"]) for h in shortlist]
        return self._milvus.search(self.name, [query.tolist()], anns_field="embedding", limit=len(rows),
                                   filter=f"row in {rows}", search_params={"metric_type": "IP"},
                                   output_fields=["row", "class_name"])[0]

    def _hits(self, field: str, queries: list, limit: int, metric: str) -> list[list[dict]]:
        return self._milvus.search(self.name, queries, anns_field=field, limit=min(limit, len(self)), search_params={"metric_type": metric},
                                   output_fields=["row", "class_name"])


def _ranked(hits: list[list[dict]], k: int, order, score) -> tuple[SearchResult, list[list[tuple[str, str | None]]]]:
    """The first k of each query's hits by `order`, then store row (ids -1 where fewer)."""
    scores, ids, paths = np.zeros((len(hits), k), np.float32), np.full((len(hits), k), -1, np.int64), []
    for q, found in enumerate(hits):
        found = sorted(found, key=lambda h: (order(h), h["entity"]["row"]))[:k]
        scores[q, :len(found)] = [score(h) for h in found]
        ids[q, :len(found)] = [h["entity"]["row"] for h in found]
        paths.append([(h["id"], h["entity"]["class_name"] or None) for h in found])
    return SearchResult(scores, ids), paths
