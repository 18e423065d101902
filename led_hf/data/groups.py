"""Training groups: one row per query (or per qrels pair), positive and negatives drawn per epoch (docs/method.md §2).

``group_by="query"`` (the default, as Tevatron): one row per training query per epoch; its positive is
drawn per epoch from its qrels positives of grade >= ``positive_min_score`` (cycling through them, or
weighted by grade). ``group_by="pair"``: one row per (query, positive) qrels pair (the reference recipe,
MS MARCO parity), where a query with 39 positives is trained 39 times per epoch.

Everything is resolved to integer row numbers once, at build time: the query's row in ``queries``, the
positive's row in ``corpus`` and each query's negative pool (a CSR pair of int32 corpus rows, ~300M
entries at MS MARCO with three 200-deep sources: memory-mapped files cached under the data folder,
data/pool_store.py). Text is fetched from the memory-mapped Arrow tables only when an item is read, so
memory does not grow with the corpus.

>>> groups = TrainGroups("data/msmarco", negs_sources="bm25", num_negatives=3)  # doctest: +SKIP
>>> groups.set_epoch(0); groups[0]                                              # doctest: +SKIP
{'qid': '100', 'query': 'does aspirin prevent heart attack',
 'pids': ['0', '8', '3', '5'], 'titles': ['Aspirin', 'Salt', 'Sleep', 'Statins'],
 'texts': ['Aspirin reduces ...', 'High salt intake ...', 'Short sleep ...', 'Statins lower ...']}

The positive is always first; G = ``group_size`` = 1 + num_negatives for every item.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch

from led_hf.data.pool_store import NegativePools, PoolSpec, load_pools
from led_hf.data.row_reader import RowReader
from led_hf.data.sampling import draw_positions
from led_hf.data.store import PreparedData, resolve_ids
from led_hf.errors import LedError

logger = logging.getLogger(__name__)

EMPTY_POOL_POLICIES = ("skip", "in_batch")
GROUP_BY = ("query", "pair")
POSITIVE_SAMPLING = ("uniform", "grade")


def parse_sources(negs_sources: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"co-stg1, sp-stg1"`` or ``["co-stg1", "sp-stg1"]`` -> ``["co-stg1", "sp-stg1"]`` (order kept)."""
    if negs_sources is None:
        return []
    if isinstance(negs_sources, str):
        negs_sources = negs_sources.split(",")
    return [s.strip() for s in negs_sources if s and s.strip()]


class TrainGroups(torch.utils.data.Dataset):
    """Map-style training groups over a prepared dataset.

    Args:
        data: a `PreparedData` or its folder.
        split: qrels split whose positive rows (score > 0) are the training examples.
        group_by: ``"query"``: one item per training query, its positive drawn per epoch; ``"pair"``: one
            item per (query, positive) qrels row.
        positive_min_score: the lowest qrels grade that counts as a training positive (default 1: every
            positive judgment). Lower grades are never drawn as the positive, but stay positives of the
            query everywhere else: out of its negative pool and masked as false negatives.
        positive_sampling: how a ``group_by="query"`` item picks its positive each epoch: ``"uniform"``
            walks a fixed per-query shuffle of its positives, one per epoch (each is seen once every n
            epochs); ``"grade"`` draws one with probability proportional to its grade.
        negs_sources: negative sources in pool order (``negatives/<source>``), list or comma string.
        num_negs_per_system: each source list is truncated to this many entries before pooling.
        num_negatives: NN hard negatives per group (0: in-batch negatives only, G = 1).
        dedupe_negatives: keep only the first occurrence of a passage in the pool (reference: off).
        seed: with the epoch and the row, fixes every draw.
        empty_pool: what to do with a query whose pool is empty after removing its positives:
            ``"skip"`` drops its rows; ``"in_batch"`` keeps them and fills the NN slots with training
            positives of *other* queries (what in-batch negatives are), drawn by the same rule, so
            that every group keeps the one group size the contrastive loss needs.

    ``__getitem__(i)`` -> ``{"qid", "query", "pids", "titles", "texts", "candidate_rows",
    "positive_rows"}``: G entries per list, positive first; ``candidate_rows`` are their corpus row
    numbers and ``positive_rows`` the corpus rows of every qrels positive of the query, any grade (what
    false-negative masking needs); plus whatever `extra_columns` returns (the hook for teacher scores).
    The draw of item i depends on ``(seed, epoch, key)``, where ``key`` is the query's number (``query``)
    or the row's position among the split's positive qrels rows (``pair``), so it does not change with
    ``empty_pool``, ``positive_min_score`` or the iteration order.
    """

    def __init__(
        self,
        data: PreparedData | str | Path,
        split: str = "train",
        negs_sources: str | list[str] | None = None,
        num_negs_per_system: int = 200,
        num_negatives: int = 7,
        dedupe_negatives: bool = False,
        seed: int = 42,
        empty_pool: str = "skip",
        show_progress: bool = True,
        group_by: str = "query",
        positive_min_score: int = 1,
        positive_sampling: str = "uniform",
    ):
        if empty_pool not in EMPTY_POOL_POLICIES:
            raise LedError(f"empty_pool must be one of {EMPTY_POOL_POLICIES}, got {empty_pool!r}")
        if group_by not in GROUP_BY:
            raise LedError(f"group_by must be one of {GROUP_BY}, got {group_by!r}")
        if positive_sampling not in POSITIVE_SAMPLING:
            raise LedError(f"positive_sampling must be one of {POSITIVE_SAMPLING}, got {positive_sampling!r}")
        if int(positive_min_score) < 1:
            raise LedError(
                f"positive_min_score must be >= 1 (a grade of 0 is not relevant), got {positive_min_score}"
            )
        if num_negatives < 0 or num_negs_per_system < 0:
            raise LedError("num_negatives and num_negs_per_system must be >= 0")
        self.data = data if isinstance(data, PreparedData) else PreparedData(data)
        self.split = split
        self.negs_sources = parse_sources(negs_sources)
        self.num_negs_per_system = int(num_negs_per_system)
        self.num_negatives = int(num_negatives)
        self.dedupe_negatives = bool(dedupe_negatives)
        self.seed = int(seed)
        self.empty_pool = empty_pool
        self.group_by = group_by
        self.positive_min_score = int(positive_min_score)
        self.positive_sampling = positive_sampling
        self.epoch = 0
        self._show_progress = show_progress
        self._build()

    # ------------------------------------------------------------------ build (once)
    def _build(self) -> None:
        data = self.data
        corpus_ids = data.corpus.data.column("pid")
        self._num_corpus = len(corpus_ids)
        qrels_path = data.root / "qrels" / self.split
        qrels = data.qrels(self.split).data.table
        qrels = qrels.filter(pc.greater(qrels.column("score"), 0))
        if qrels.num_rows == 0:
            raise LedError(f"{qrels_path}: no positive qrels rows (score > 0) to train on")
        row_qids = qrels.column("qid").combine_chunks()
        self._qids = pc.unique(row_qids)  # first-appearance order
        num_queries = len(self._qids)
        row_query = (
            pc.index_in(row_qids, value_set=self._qids).to_numpy(zero_copy_only=False).astype(np.int64)
        )

        self._query_rows = resolve_ids(
            self._qids, data.queries.data.column("qid"), data.qid_index.is_identity
        )
        _fail_on_unknown(
            self._query_rows, self._qids, f"{qrels_path}: qid {{!r}} is not in {data.root}/queries"
        )
        row_positive = resolve_ids(
            qrels.column("pid").combine_chunks(), corpus_ids, data.pid_index.is_identity
        )
        _fail_on_unknown(
            row_positive, qrels.column("pid"), f"{qrels_path}: pid {{!r}} is not in {data.root}/corpus"
        )

        # Every positive of a query, as one int64 key per (query, corpus row): removed from its pool and
        # from the in-batch fallback.
        self._positive_keys = np.unique(row_query * np.int64(self._num_corpus) + row_positive)
        row_dtype = np.int32 if self._num_corpus < 2**31 else np.int64
        if self.num_negatives > 0:
            spec = PoolSpec(
                data, self.split, tuple(self.negs_sources), self.num_negs_per_system, self.dedupe_negatives
            )
            self._pools = load_pools(
                spec, self._qids, self._positive_keys, self._num_corpus, row_dtype, self._show_progress
            )
        else:
            self._pools = NegativePools.empty(num_queries, row_dtype)

        pool_sizes = np.diff(self._pools.offsets)
        empty = pool_sizes == 0 if self.num_negatives > 0 else np.zeros(num_queries, dtype=bool)
        self.num_empty_pools = int(empty.sum())
        self._fallback_rows = np.unique(row_positive).astype(row_dtype)  # training positives of all queries
        usable = ~empty
        if self.empty_pool == "in_batch" and self.num_empty_pools:
            # A query whose positives are all the training positives there are has nothing to fall back on.
            own = np.bincount(self._positive_keys // self._num_corpus, minlength=num_queries)
            usable |= empty & (own < len(self._fallback_rows))
        self._row_query = row_query
        self._row_positive = row_positive.astype(row_dtype)
        self._row_score = qrels.column("score").to_numpy(zero_copy_only=False).astype(np.int64)
        trains = self._row_score >= self.positive_min_score  # rows whose passage may be the drawn positive
        # Training positives of each query as CSR over qrels rows (query order, then qrels order).
        train_rows = np.flatnonzero(trains)
        train_rows = train_rows[np.argsort(row_query[train_rows], kind="stable")]
        self._train_offsets = np.zeros(num_queries + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_query[train_rows], minlength=num_queries), out=self._train_offsets[1:])
        self._train_rows = train_rows
        if self.group_by == "pair":
            keep = trains & usable[row_query]
            self._example_rows = np.flatnonzero(keep).astype(np.int64)
            self.num_skipped_rows = int(trains.sum() - len(self._example_rows))
        else:
            has_positive = np.diff(self._train_offsets) > 0
            self._example_rows = np.flatnonzero(has_positive & usable).astype(np.int64)
            self.num_skipped_rows = int(has_positive.sum() - len(self._example_rows))
        self.num_below_min_score = int(num_queries - (np.diff(self._train_offsets) > 0).sum())
        if self.num_empty_pools:
            logger.warning(
                "%s: %d of %d training queries have an empty negative pool (sources: %s); %s",
                qrels_path,
                self.num_empty_pools,
                num_queries,
                ",".join(self.negs_sources) or "none",
                f"{self.num_skipped_rows} training {'rows' if self.group_by == 'pair' else 'queries'} skipped"
                if self.empty_pool == "skip"
                else "they get other queries' positives as negatives (in_batch)",
            )
        if self.num_below_min_score:
            logger.info(
                "%s: %d of %d queries have no positive of grade >= %d and are not trained on",
                qrels_path,
                self.num_below_min_score,
                num_queries,
                self.positive_min_score,
            )
        if len(self._example_rows) == 0:
            raise LedError(
                f"{qrels_path}: no training rows left (every query has an empty negative pool or no "
                f"positive of grade >= {self.positive_min_score}; check negs_sources, "
                "positive_min_score or use empty_pool='in_batch')"
            )

    # ------------------------------------------------------------------ per-epoch draw
    @property
    def group_size(self) -> int:
        return 1 + self.num_negatives

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose negatives `__getitem__` draws (the Trainer reaches it via `EpochCallback`)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._example_rows)

    def pool(self, query: int) -> np.ndarray:
        """Corpus rows of the pool of query number ``query`` (order of the split's first appearance)."""
        return self._pools.pool(query)

    def query_number(self, index: int) -> int:
        """Number of item ``index``'s query (its position among the split's queries, first appearance)."""
        example = int(self._example_rows[index])
        return example if self.group_by == "query" else int(self._row_query[example])

    def query_numbers(self) -> np.ndarray:
        """`query_number` of every item, as one array."""
        if self.group_by == "query":
            return self._example_rows
        return self._row_query[self._example_rows]

    def positive_row(self, index: int, epoch: int | None = None) -> int:
        """Qrels row (of the split's positive rows) whose passage is item ``index``'s positive in ``epoch``."""
        example = int(self._example_rows[index])
        if self.group_by == "pair":
            return example
        epoch = self.epoch if epoch is None else int(epoch)
        rows = self._train_rows[self._train_offsets[example] : self._train_offsets[example + 1]]
        if len(rows) == 1:
            return int(rows[0])
        if self.positive_sampling == "grade":
            grades = self._row_score[rows].astype(np.float64)
            rng = np.random.default_rng([self.seed, epoch, example, 1])
            return int(rows[rng.choice(len(rows), p=grades / grades.sum())])
        # A fixed shuffle per query, walked one step per epoch: every positive once in len(rows) epochs.
        order = np.random.default_rng([self.seed, example, 2]).permutation(len(rows))
        return int(rows[order[epoch % len(rows)]])

    def candidate_rows(self, index: int, epoch: int | None = None) -> np.ndarray:
        """Corpus rows of item ``index``'s group for ``epoch`` (default: the current one), positive first."""
        example = int(self._example_rows[index])
        epoch = self.epoch if epoch is None else int(epoch)
        query = self.query_number(index)
        positive = self._row_positive[self.positive_row(index, epoch)]
        pool = self.pool(query)
        if self.num_negatives == 0:
            negatives = pool[:0]
        elif len(pool):
            negatives = pool[draw_positions(len(pool), self.num_negatives, self.seed, epoch, example)]
        else:
            negatives = self._fallback_negatives(query, example, epoch)
        return np.concatenate([[positive], negatives]).astype(np.int64)

    def positive_rows(self, query: int) -> np.ndarray:
        """Sorted corpus rows of every qrels positive (any grade) of query number ``query``."""
        keys = self._positive_keys
        lo, hi = np.searchsorted(keys, [query * self._num_corpus, (query + 1) * self._num_corpus])
        return keys[lo:hi] - query * self._num_corpus

    def _fallback_negatives(self, query: int, example: int, epoch: int) -> np.ndarray:
        # Draw from all training positives, then drop the query's own: a uniform sample without
        # replacement of NN + |own| keeps at least NN others, so this is the rule of docs/method.md §2 on the
        # filtered pool (whole pool / cyclic when it is not larger than NN).
        own = self.positive_rows(query)
        others = self._fallback_rows
        take = min(len(others), self.num_negatives + len(own))
        drawn = others[draw_positions(len(others), take, self.seed, epoch, example)]
        drawn = drawn[~np.isin(drawn, own)]
        return drawn[np.arange(self.num_negatives) % len(drawn)]

    def extra_columns(self, query: int, candidate_pids: list[str]) -> dict:
        """Hook for per-candidate columns aligned with ``pids`` (e.g. teacher scores) of query number
        ``query``, given the candidates' pids as read for the item; none by default.

        A subclass returns e.g. ``{"teacher_scores": [float] * G}``; collators pass such keys through.
        """
        return {}

    # ------------------------------------------------------------------ text join (per item)
    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} training groups")
        rows = self.candidate_rows(index)
        query = self.query_number(index)
        corpus = self._corpus_reader().rows(rows)
        item = {
            "qid": self._qids[query].as_py(),
            "query": self._queries_reader().rows([int(self._query_rows[query])])["text"][0],
            "pids": corpus["pid"],
            "titles": [t or "" for t in corpus["title"]],
            "texts": corpus["text"],
            "candidate_rows": rows.tolist(),
            "positive_rows": self.positive_rows(query).tolist(),
        }
        item.update(self.extra_columns(query, item["pids"]))
        return item

    def _corpus_reader(self) -> RowReader:
        if self.__dict__.get("_corpus") is None:
            self._corpus = RowReader(self.data.corpus.data.table, ("pid", "title", "text"))
        return self._corpus

    def _queries_reader(self) -> RowReader:
        if self.__dict__.get("_queries") is None:
            self._queries = RowReader(self.data.queries.data.table, ("text",))
        return self._queries

    def __getstate__(self):
        # DataLoader workers started by spawn re-open the memory-mapped tables instead of copying them
        # (the pools too: `NegativePools` pickles as its folder).
        state = dict(self.__dict__)
        state.pop("_corpus", None)
        state.pop("_queries", None)
        return state


def _fail_on_unknown(rows: np.ndarray, values, template: str) -> None:
    bad = np.flatnonzero(rows < 0)
    if len(bad):
        raise LedError(template.format(values[int(bad[0])].as_py()) + f" ({len(bad)} unknown in all)")
