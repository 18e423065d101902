"""Arrow tables of a prepared dataset: their features, a streaming writer, and a compact id set.

`TableWriter` writes rows in batches straight into a `datasets.load_from_disk` folder; `IdSet` holds
the ids seen so far for validation without a Python string per integer-like id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from datasets import Dataset, Features, List, Value
from datasets.arrow_writer import ArrowWriter
from datasets.utils.py_utils import asdict  # the serialisation save_to_disk uses for dataset_info.json

from led_hf.work_folder import record_content_hashes

_STRING = Value("string")
CORPUS_FEATURES = Features({"pid": _STRING, "title": _STRING, "text": _STRING})
QUERIES_FEATURES = Features({"qid": _STRING, "text": _STRING})
QRELS_FEATURES = Features({"qid": _STRING, "pid": _STRING, "score": Value("int32")})
NEGATIVES_FEATURES = Features({"qid": _STRING, "pids": List(_STRING), "scores": List(Value("float32"))})
CANDIDATES_FEATURES = Features({"qid": _STRING, "pids": List(_STRING)})
PAIR_FEATURES = Features({"qid": _STRING, "pid": _STRING})


class IdSet:
    """A set of string ids that stays small for MS MARCO-like collections.

    Canonical non-negative integers below 2**28 ("0", "8841822"; not "007" or "+1") are bits in a bitmap
    (at most 32 MiB; 8.8M MS MARCO pids take ~1.1 MiB instead of ~0.8 GB as Python strings); any other
    id goes to a Python set. `add` returns False when the id was already there.
    """

    LIMIT = 1 << 28

    def __init__(self):
        self._bits = bytearray()
        self._other: set[str] = set()
        self._size = 0

    def _as_int(self, value: str) -> int | None:
        if value.isascii() and value.isdigit() and len(value) <= 9 and (value == "0" or value[0] != "0"):
            number = int(value)
            return number if number < self.LIMIT else None
        return None

    def __contains__(self, value: str) -> bool:
        number = self._as_int(value)
        if number is None:
            return value in self._other
        byte = number >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (number & 7)))

    def add(self, value: str) -> bool:
        if value in self:
            return False
        number = self._as_int(value)
        if number is None:
            self._other.add(value)
        else:
            byte = number >> 3
            if byte >= len(self._bits):  # grow by doubling: amortised O(1), at most LIMIT / 8 bytes
                self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
            self._bits[byte] |= 1 << (number & 7)
        self._size += 1
        return True

    def __len__(self) -> int:
        return self._size


class TableWriter:
    """Write rows to one Arrow table in batches, straight into a `load_from_disk` folder.

    Batches go through datasets' ArrowWriter (explicit features: every batch has the same schema) into
    `<root>/<name>/data-00000-of-00001.arrow`, the file `save_to_disk` would write; `close()` adds the
    `state.json` and `dataset_info.json` that `save_to_disk` writes next to it. Writing the final file
    directly (instead of a build file + `save_to_disk`) writes the data once and keeps RSS flat: reading a
    memory-mapped build file back made every page of it count as resident. `scratch=True` writes
    `<root>/.build/<name>.arrow` instead, for tables that are post-processed (`finish()` returns its path).
    """

    def __init__(self, root: Path, name: str, features: Features, batch_size: int, scratch: bool = False):
        self.root, self.name, self.features, self.batch_size = root, name, features, batch_size
        self.folder = root / ".build" if scratch else root / name
        self.path = self.folder / (
            f"{name.replace('/', '__')}.arrow" if scratch else "data-00000-of-00001.arrow"
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        self._schema = features.arrow_schema
        self._writer = ArrowWriter(features=features, path=str(self.path))
        self._columns: dict[str, list] = {key: [] for key in features}
        self.rows = 0

    def add(self, *values) -> None:
        for column, value in zip(self._columns.values(), values):
            column.append(value)
        self.rows += 1
        if self.rows % self.batch_size == 0:
            self._flush()

    def add_batch(self, batch: pa.RecordBatch) -> None:
        """Append a record batch of the same features (e.g. read back from another TableWriter's file)."""
        self._flush()
        self._writer.write_table(pa.Table.from_batches([batch]))
        self.rows += batch.num_rows

    def _flush(self) -> None:
        if next(iter(self._columns.values())):
            self._writer.write_table(pa.Table.from_pydict(self._columns, schema=self._schema))
            self._columns = {key: [] for key in self._columns}

    def finish(self) -> Path:
        """Flush and close the Arrow file; return its path."""
        self._flush()
        self._writer.finalize()
        self._writer.close()
        return self.path

    def close(self) -> int:
        """Finish the table and write the metadata files of a `save_to_disk` folder; return the row count."""
        self.finish()
        # The same two files, with the same content, as Dataset.save_to_disk writes, taken from an empty
        # dataset of the same features: Dataset.from_file on the written file would page all of it in
        # (measured: +130 MiB RSS per 1M passages), and its metadata is the same.
        dataset = Dataset.from_dict({key: [] for key in self.features}, features=self.features)
        state = {
            key: dataset.__dict__[key]
            for key in (
                "_fingerprint",
                "_format_columns",
                "_format_kwargs",
                "_format_type",
                "_output_all_columns",
            )
        }
        state["_split"] = None
        state["_data_files"] = [{"filename": self.path.name}]
        (self.folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        info = asdict(dataset.info)
        (self.folder / "dataset_info.json").write_text(
            json.dumps({key: info[key] for key in sorted(info)}, indent=2), encoding="utf-8"
        )
        del dataset
        record_content_hashes(self.folder)  # so that work-folder plans never reread the table (work_folder)
        return self.rows
