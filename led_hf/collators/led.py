"""Training groups -> student encodings + what LED's online teachers need (docs/method.md §4).

Output of `LEDCollator` = `TrainCollator`'s ``{"query" [B, Lq], "passage" [B*G, Lp]}`` plus, when set up:

    "teacher_query" [B, Lq'], "teacher_passage" [B*G, Lp']   the SPLADE teacher's own tokenization, only when
                                                             it cannot reuse the student's token ids
    "cross_encoder_pairs" [B*G, L]                           "[CLS] query [SEP] title [SEP] text [SEP]"
    "teacher_scores" / "cross_encoder_scores" [B, G]         precomputed scores (``extra_keys``)

Tokenizing here (in DataLoader workers) keeps the training step free of string work.
"""

from __future__ import annotations

from led_hf.collators.cross_encoder import CrossEncoderCollator
from led_hf.collators.encode import check_padding, encode_passages, encode_texts
from led_hf.collators.train import TrainCollator

# Texts whose tokenization tells tokenizers with the same vocabulary apart (casing, accents, CJK, digits).
_PROBES = (
    "Aspirin reduces the RISK of heart-attacks: naïve café, 1,234 mg/dL (p<0.05)!",
    "東京 résumé ÉCOLE",
)


def same_tokenization(student_tokenizer, teacher_tokenizer) -> bool:
    """True when both tokenizers give the same ids for any text: equal vocabularies (token -> id, compared
    as dicts, not by size) and the same normalisation (checked on probe texts with casing and accents)."""
    if student_tokenizer is teacher_tokenizer:
        return True
    if student_tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        return False
    return all(
        student_tokenizer(text)["input_ids"] == teacher_tokenizer(text)["input_ids"] for text in _PROBES
    )


class LEDCollator(TrainCollator):
    """`TrainCollator` plus the teachers' inputs.

    Args (besides `TrainCollator`'s):
        teacher_tokenizer: give it when the SPLADE teacher must tokenize itself (different vocabulary or
            lengths); None: the teacher reads the student's ``query``/``passage`` encodings.
        teacher_query_max_length / teacher_passage_max_length: the teacher's token limits.
        cross_encoder_collator: a `CrossEncoderCollator` for the cross-encoder teacher (online), or None.
    """

    def __init__(
        self,
        tokenizer,
        query_max_length: int = 32,
        passage_max_length: int = 128,
        pad_to_multiple_of: int | None = None,
        extra_keys: tuple[str, ...] = (),
        teacher_tokenizer=None,
        teacher_query_max_length: int | None = None,
        teacher_passage_max_length: int | None = None,
        cross_encoder_collator: CrossEncoderCollator | None = None,
    ):
        super().__init__(tokenizer, query_max_length, passage_max_length, pad_to_multiple_of, extra_keys)
        self.teacher_tokenizer = teacher_tokenizer
        self.teacher_query_max_length = int(teacher_query_max_length or query_max_length)
        self.teacher_passage_max_length = int(teacher_passage_max_length or passage_max_length)
        self.cross_encoder_collator = cross_encoder_collator
        if teacher_tokenizer is not None:
            check_padding(self.teacher_query_max_length, pad_to_multiple_of, "teacher_query_max_length")
            check_padding(self.teacher_passage_max_length, pad_to_multiple_of, "teacher_passage_max_length")

    def __call__(self, features: list[dict]) -> dict:
        batch = super().__call__(features)
        if self.teacher_tokenizer is not None:
            titles = [t for f in features for t in f.get("titles") or [""] * len(f["pids"])]
            batch["teacher_query"] = encode_texts(
                self.teacher_tokenizer,
                [f["query"] for f in features],
                self.teacher_query_max_length,
                self.pad_to_multiple_of,
            )
            batch["teacher_passage"] = encode_passages(
                self.teacher_tokenizer,
                titles,
                [t for f in features for t in f["texts"]],
                self.teacher_passage_max_length,
                self.pad_to_multiple_of,
            )
        if self.cross_encoder_collator is not None:
            batch["cross_encoder_pairs"] = self.cross_encoder_collator(features)["pairs"]
        return batch
