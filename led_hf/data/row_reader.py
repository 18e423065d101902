"""Fetch a few rows of a memory-mapped Arrow table by row number (the text join of training groups)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from led_hf.errors import LedError


class RowReader:
    """Fetch a few rows of a (memory-mapped) Arrow table as Python lists, by row number.

    Reads scalars straight from the right chunk: for the handful of rows of one group this is ~15x
    faster than ``Table.take`` (which builds a new table per call).
    """

    def __init__(self, table: pa.Table, columns: tuple[str, ...]):
        missing = [c for c in columns if c not in table.column_names and c != "title"]
        if missing:  # a corpus without titles reads as empty titles; anything else is an error
            raise LedError(f"table lacks column(s) {missing}")
        self.columns = columns
        self._chunks = {c: table.column(c).chunks for c in columns if c in table.column_names}
        first = table.column(table.column_names[0])
        self._starts = np.cumsum([0] + [len(chunk) for chunk in first.chunks])[:-1]
        # all columns of a datasets table share one chunking; re-chunk any that does not
        for name, chunks in self._chunks.items():
            if [len(c) for c in chunks] != [len(c) for c in first.chunks]:
                self._chunks[name] = [
                    table.column(name).slice(int(s), len(c)).combine_chunks()
                    for s, c in zip(self._starts, first.chunks)
                ]

    def rows(self, rows) -> dict[str, list]:
        rows = np.asarray(rows, dtype=np.int64)
        chunk = np.searchsorted(self._starts, rows, side="right") - 1
        local = (rows - self._starts[chunk]).tolist()
        chunk = chunk.tolist()
        out = {
            name: [chunks[k][i].as_py() for k, i in zip(chunk, local)]
            for name, chunks in self._chunks.items()
        }
        for name in self.columns:
            out.setdefault(name, [""] * len(rows))
        return out
