"""(query, passage) pairs for a cross-encoder: ``[CLS] query [SEP] title [SEP] text [SEP]`` (docs/method.md §4).

The second segment is ``title [SEP] text`` (just ``text`` when the title is empty), so segment ids are
0 for the query and 1 for title and text. The tokenizer's own pair template is used, so a
RoBERTa-style model gets ``<s> query </s></s> title </s> text </s>``. Truncation is "longest_first"
over the two segments, cutting from the end of the passage first when it is the longer one.

Two input kinds:

- training groups (items with ``pids``; see `TrainCollator`) ->
  ``{"pairs": BatchEncoding [B*G, L], "group_size": G}``, rows in group order, positive first;
- plain pairs ``{"qid", "pid", "query", "title"?, "text"}`` ->
  ``{"qids": [...], "pids": [...], "pairs": BatchEncoding [N, L]}`` (for re-ranking / teacher scoring).

>>> collate = CrossEncoderCollator(tokenizer, max_length=32)                   # doctest: +SKIP
>>> out = collate([{"qid": "1", "pid": "0", "query": "aspirin heart", "title": "Aspirin",
...                 "text": "Aspirin reduces risk."}])
>>> tokenizer.decode(out["pairs"]["input_ids"][0])                             # doctest: +SKIP
'[CLS] aspirin heart [SEP] aspirin [SEP] aspirin reduces risk. [SEP]'
"""

from __future__ import annotations

from transformers import BatchEncoding

from led_hf.collators.encode import check_padding
from led_hf.collators.train import check_group_size


class CrossEncoderCollator:
    def __init__(self, tokenizer, max_length: int = 256, pad_to_multiple_of: int | None = None):
        if tokenizer.sep_token is None:
            raise ValueError("the cross-encoder format needs a tokenizer with a separator token")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.pad_to_multiple_of = pad_to_multiple_of
        check_padding(self.max_length, pad_to_multiple_of)

    def second_segment(self, title: str | None, text: str) -> str:
        """``"title [SEP] text"``, or the text alone without a title."""
        title = (title or "").strip()
        return f"{title} {self.tokenizer.sep_token} {text}" if title else text

    def encode(self, queries: list[str], titles: list[str], texts: list[str]) -> BatchEncoding:
        seconds = [self.second_segment(title, text) for title, text in zip(titles, texts)]
        return self.tokenizer(
            list(queries),
            seconds,
            max_length=self.max_length,
            truncation="longest_first",
            padding=True,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_tensors="pt",
        )

    def __call__(self, features: list[dict]) -> dict:
        if not features:
            raise ValueError("cannot collate an empty batch")
        if "pids" in features[0]:
            group_size = check_group_size(features)
            queries = [f["query"] for f in features for _ in range(group_size)]
            titles = [t for f in features for t in (f.get("titles") or [""] * group_size)]
            texts = [t for f in features for t in f["texts"]]
            return {"pairs": self.encode(queries, titles, texts), "group_size": group_size}
        return {
            "qids": [str(f["qid"]) for f in features],
            "pids": [str(f["pid"]) for f in features],
            "pairs": self.encode(
                [f["query"] for f in features],
                [f.get("title") or "" for f in features],
                [f["text"] for f in features],
            ),
        }
