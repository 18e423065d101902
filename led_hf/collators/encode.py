"""Tokenize queries and passages for encoding; the passage format every collator shares.

Passage: ``[CLS] title [SEP] text [SEP]`` when the title is non-empty, ``[CLS] text [SEP]`` otherwise
(docs/method.md §2), at most ``max_length`` tokens; a long passage loses tokens from its end ("longest_first"
truncation: with a short title only the text is cut). Padding is dynamic (to the longest in the
batch), optionally rounded up to ``pad_to_multiple_of``.
"""

from __future__ import annotations

from transformers import BatchEncoding

DEFAULT_MAX_LENGTH = {"query": 32, "passage": 128}


def check_padding(max_length: int, pad_to_multiple_of: int | None, name: str = "max_length") -> None:
    """Padding rounds up to the multiple, so the limit must be one (else the tokenizer raises mid-training)."""
    if pad_to_multiple_of and max_length % pad_to_multiple_of:
        raise ValueError(
            f"{name} ({max_length}) must be a multiple of pad_to_multiple_of ({pad_to_multiple_of})"
        )


def encode_texts(
    tokenizer, texts: list[str], max_length: int, pad_to_multiple_of: int | None = None
) -> BatchEncoding:
    """Single-segment encodings ``[CLS] text [SEP]`` -> BatchEncoding of tensors [N, L]."""
    return tokenizer(
        list(texts),
        max_length=max_length,
        truncation=True,
        padding=True,
        pad_to_multiple_of=pad_to_multiple_of,
        return_tensors="pt",
    )


def encode_passages(
    tokenizer,
    titles: list[str] | None,
    texts: list[str],
    max_length: int,
    pad_to_multiple_of: int | None = None,
) -> BatchEncoding:
    """Passages as (title, text) pairs where a title exists -> BatchEncoding of tensors [N, L].

    >>> batch = encode_passages(tokenizer, ["Aspirin", ""], ["reduces risk", "salt intake"], 16)  # doctest: +SKIP
    >>> tokenizer.batch_decode(batch["input_ids"])                                             # doctest: +SKIP
    ['[CLS] aspirin [SEP] reduces risk [SEP]', '[CLS] salt intake [SEP] [PAD] [PAD]']
    """
    texts = list(texts)
    titles = [t or "" for t in titles] if titles is not None else [""] * len(texts)
    if len(titles) != len(texts):
        raise ValueError(f"{len(titles)} titles for {len(texts)} texts")
    with_title = [i for i, title in enumerate(titles) if title.strip()]
    if not with_title:
        return encode_texts(tokenizer, texts, max_length, pad_to_multiple_of)
    if len(with_title) == len(texts):
        return tokenizer(
            titles,
            texts,
            max_length=max_length,
            truncation="longest_first",
            padding=True,
            pad_to_multiple_of=pad_to_multiple_of,
            return_tensors="pt",
        )
    # Mixed batch: a pair call would give an empty title "[CLS] [SEP] text [SEP]", so tokenize the two
    # kinds apart and pad them together.
    without_title = [i for i, title in enumerate(titles) if not title.strip()]
    pairs = tokenizer(
        [titles[i] for i in with_title],
        [texts[i] for i in with_title],
        max_length=max_length,
        truncation="longest_first",
    )
    singles = tokenizer([texts[i] for i in without_title], max_length=max_length, truncation=True)
    features: list[dict | None] = [None] * len(texts)
    for encoded, positions in ((pairs, with_title), (singles, without_title)):
        for k, i in enumerate(positions):
            features[i] = {key: values[k] for key, values in encoded.items()}
    return tokenizer.pad(features, padding=True, pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt")


class EncodeCollator:
    """Batch of records to embed -> ``{"ids": [str] * N, "batch": BatchEncoding [N, L]}``.

    A feature is ``{"id": str, "text": str, "title": str (optional)}``; ``pid``/``qid`` are accepted for
    ``id`` so corpus and queries rows can be fed as they are. ``kind="query"`` ignores titles and
    defaults to 32 tokens, ``kind="passage"`` uses the passage format above and 128 tokens.

    >>> collate = EncodeCollator(tokenizer, kind="passage")                      # doctest: +SKIP
    >>> out = collate([{"pid": "7", "title": "Sleep", "text": "Short sleep raises blood pressure."}])
    >>> out["ids"], out["batch"]["input_ids"].shape                               # doctest: +SKIP
    (['7'], torch.Size([1, 10]))
    """

    def __init__(
        self,
        tokenizer,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        kind: str = "passage",
    ):
        if kind not in DEFAULT_MAX_LENGTH:
            raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
        self.tokenizer = tokenizer
        self.kind = kind
        self.max_length = int(max_length or DEFAULT_MAX_LENGTH[kind])
        self.pad_to_multiple_of = pad_to_multiple_of
        check_padding(self.max_length, pad_to_multiple_of)

    def __call__(self, features: list[dict]) -> dict:
        ids = [str(_first(f, ("id", "pid", "qid"))) for f in features]
        texts = [f["text"] for f in features]
        if self.kind == "query":
            batch = encode_texts(self.tokenizer, texts, self.max_length, self.pad_to_multiple_of)
        else:
            titles = [f.get("title") or "" for f in features]
            batch = encode_passages(self.tokenizer, titles, texts, self.max_length, self.pad_to_multiple_of)
        return {"ids": ids, "batch": batch}


def _first(feature: dict, keys: tuple[str, ...]):
    for key in keys:
        if key in feature:
            return feature[key]
    raise KeyError(f"feature has none of {keys}: {sorted(feature)}")
