"""Turn token states into one vector per text.

    cls:   e = h[0]                                  (coCondenser, the reference dense model)
    mean:  e = sum_t m[t] * h[t] / max(sum_t m[t], 1e-9)   (MiniLM / sentence-transformers style)

`h` is the last hidden state [N, L, H], `m` the attention mask [N, L]. Reductions run in fp32 and the
result is fp32 even under bf16/fp16 weights or autocast, so that scores and losses never see half precision.
"""

from __future__ import annotations

import torch

POOLING_MODES = ("cls", "mean")


def pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, mode: str = "cls") -> torch.Tensor:
    """[N, L, H] token states + [N, L] mask -> [N, H] fp32 embeddings.

    >>> h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]]); m = torch.tensor([[1, 1, 0]])
    >>> pool(h, m, "cls").tolist(), pool(h, m, "mean").tolist()
    ([[1.0, 2.0]], [[2.0, 3.0]])
    """
    if mode == "cls":
        # Tokenizers that pad on the left would put padding at 0; every BERT-family tokenizer pads right.
        return last_hidden_state[:, 0].float()
    if mode == "mean":
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        summed = (last_hidden_state.float() * mask).sum(dim=1)
        return summed / mask.sum(dim=1).clamp(min=1e-9)
    raise ValueError(f"unknown pooling mode {mode!r} (expected one of {', '.join(POOLING_MODES)})")
