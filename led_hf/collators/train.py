"""Training groups -> query and passage encodings for a bi-encoder.

Input: B items of `led_hf.data.groups.TrainGroups`, each ``{"qid", "query", "pids", "titles", "texts"}``
with G passages, positive first. Output:

    {"query":   BatchEncoding, tensors [B, Lq]      (Lq <= query_max_length, 32 by default)
     "passage": BatchEncoding, tensors [B * G, Lp]} (Lp <= passage_max_length, 128 by default)

Passage rows are in group order: rows ``i*G .. i*G + G-1`` belong to query i, row ``i*G`` is its
positive, which is the target column the contrastive loss uses. Small literal example (G = 2):

>>> collate = TrainCollator(tokenizer)                                          # doctest: +SKIP
>>> batch = collate([{"qid": "1", "query": "aspirin heart", "pids": ["0", "8"],
...                   "titles": ["Aspirin", ""], "texts": ["Aspirin reduces risk.", "Salt raises pressure."]}])
>>> batch["query"]["input_ids"].shape, batch["passage"]["input_ids"].shape      # doctest: +SKIP
(torch.Size([1, 4]), torch.Size([2, 8]))
>>> tokenizer.batch_decode(batch["passage"]["input_ids"], skip_special_tokens=False)  # doctest: +SKIP
['[CLS] aspirin [SEP] aspirin reduces risk. [SEP]', '[CLS] salt raises pressure. [SEP] [PAD] [PAD]']

Per-candidate numeric extras that a dataset adds (``extra_keys``, e.g. teacher scores of length G)
are passed through as float tensors [B, G].

When the items carry corpus row numbers (`TrainGroups` items do: ``candidate_rows``, the G candidates,
and ``positive_rows``, every qrels positive of the query), the batch also holds what false-negative
masking needs (`led_hf.losses.masking.false_negative_mask`):

    "passage_rows":  LongTensor [B * G]   corpus row of every passage, in passage order
    "positive_rows": LongTensor [B, P]    corpus rows of each query's positives, -1-padded to the longest
"""

from __future__ import annotations

import torch

from led_hf.collators.encode import check_padding, encode_passages, encode_texts


class TrainCollator:
    """Collate training groups; needs nothing but the tokenizer.

    Args:
        tokenizer: any HF tokenizer (fast or slow) with pair support.
        query_max_length / passage_max_length: token limits, special tokens included.
        pad_to_multiple_of: round padded lengths up (e.g. 8 for tensor cores).
        extra_keys: per-candidate numeric item keys to pass through as float tensors [B, G].
    """

    def __init__(
        self,
        tokenizer,
        query_max_length: int = 32,
        passage_max_length: int = 128,
        pad_to_multiple_of: int | None = None,
        extra_keys: tuple[str, ...] = (),
    ):
        self.tokenizer = tokenizer
        self.query_max_length = int(query_max_length)
        self.passage_max_length = int(passage_max_length)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.extra_keys = tuple(extra_keys)
        check_padding(self.query_max_length, pad_to_multiple_of, "query_max_length")
        check_padding(self.passage_max_length, pad_to_multiple_of, "passage_max_length")

    def __call__(self, features: list[dict]) -> dict:
        if not features:
            raise ValueError("cannot collate an empty batch")
        group_size = check_group_size(features)
        titles = [title for f in features for title in f.get("titles") or [""] * len(f["pids"])]
        texts = [text for f in features for text in f["texts"]]
        batch = {
            "query": encode_texts(
                self.tokenizer, [f["query"] for f in features], self.query_max_length, self.pad_to_multiple_of
            ),
            "passage": encode_passages(
                self.tokenizer, titles, texts, self.passage_max_length, self.pad_to_multiple_of
            ),
        }
        for key in self.extra_keys:
            batch[key] = torch.tensor([f[key] for f in features], dtype=torch.float32).view(-1, group_size)
        if all("candidate_rows" in f and "positive_rows" in f for f in features):
            batch.update(positive_id_tensors(features))
        return batch


def positive_id_tensors(features: list[dict]) -> dict[str, torch.Tensor]:
    """``passage_rows`` [B*G] and -1-padded ``positive_rows`` [B, P] of items with corpus row numbers."""
    width = max(1, max(len(f["positive_rows"]) for f in features))
    positives = torch.full((len(features), width), -1, dtype=torch.long)
    for i, f in enumerate(features):
        positives[i, : len(f["positive_rows"])] = torch.as_tensor(f["positive_rows"], dtype=torch.long)
    passages = torch.as_tensor([row for f in features for row in f["candidate_rows"]], dtype=torch.long)
    return {"passage_rows": passages, "positive_rows": positives}


def check_group_size(features: list[dict]) -> int:
    """The one G of a batch; items with different group sizes are an error (the loss needs one G)."""
    sizes = {len(f["pids"]) for f in features}
    for f in features:
        if len(f["texts"]) != len(f["pids"]) or ("titles" in f and len(f["titles"]) != len(f["pids"])):
            raise ValueError(f"item {f.get('qid')!r}: pids, titles and texts differ in length")
    if len(sizes) != 1:
        raise ValueError(f"training groups of different sizes {sorted(sizes)} in one batch")
    size = sizes.pop()
    if size < 1:
        raise ValueError("a training group needs at least its positive")
    return size
