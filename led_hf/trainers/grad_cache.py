"""GradCache: the per-device batch is no longer bounded by activation memory (Gao et al., 2021,
"Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").

The loss of a bi-encoder depends on the parameters θ only through the representations R = f_θ(texts)
(query and passage vectors). With L(R) the whole loss (contrastive over the gathered global batch, FLOPS,
rank consistency with the teacher, KL), the chain rule splits the gradient:

    dL/dθ = Σ_chunks (∂L/∂R_chunk)ᵀ · ∂R_chunk/∂θ

so one optimizer step runs in three passes over the micro-batch, split into chunks of `gc_chunk_size`
queries with their G passages each:

    1. no-grad forward of every chunk -> R (detached), remembering each chunk's RNG state
    2. the loss on R as a leaf with gradient -> ∂L/∂R (cheap: vectors only, no encoder activations)
    3. per chunk: restore its RNG state (same dropout masks), forward with grad, backward of
       <R_chunk, ∂L/∂R_chunk>: the encoder's parameter gradients accumulate chunk by chunk

Peak activation memory is that of one chunk instead of the whole micro-batch, for ~1/3 more compute
(the extra no-grad forward). The gradient equals the uncached one up to floating-point summation order.
Under DDP the chunks but the last backward under `no_sync`: gradients are all-reduced once per
micro-batch, as without the cache; cross-device negatives are gathered in pass 2 as usual. It runs its
own backward passes, so it works with DDP and a single device, not with DeepSpeed.

A trainer using it supplies `representations(outputs) -> (queries, passages)` and
`loss_from_representations(model, queries, passages, inputs) -> loss` (led_hf/trainers/base.py).
"""

from __future__ import annotations

import contextlib

import torch

from led_hf.errors import LedError


class RandomState:
    """The CPU (and, on a GPU, the device's) RNG state at construction; `with state:` replays from it and
    leaves the global RNG state as it found it."""

    def __init__(self, device: torch.device):
        self.cuda_devices = [device] if device.type == "cuda" else []
        self.cpu_state = torch.get_rng_state()
        self.cuda_states = [torch.cuda.get_rng_state(d) for d in self.cuda_devices]
        self._fork = None

    def __enter__(self):
        self._fork = torch.random.fork_rng(devices=self.cuda_devices)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu_state)
        for device, state in zip(self.cuda_devices, self.cuda_states):
            torch.cuda.set_rng_state(state, device)
        return self

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


def chunk_rows(encoding, start: int, stop: int) -> dict:
    """Rows [start, stop) of a tokenized batch (every tensor sliced alike)."""
    return {key: value[start:stop] for key, value in encoding.items()}


def chunk_bounds(num_queries: int, chunk_size: int) -> list[tuple[int, int]]:
    """[(0, c), (c, 2c), ...] covering `num_queries` queries."""
    if chunk_size < 1:
        raise LedError(f"gc_chunk_size must be at least 1, got {chunk_size}")
    return [(start, min(start + chunk_size, num_queries)) for start in range(0, num_queries, chunk_size)]


def grad_cache_training_step(trainer, model, inputs: dict, chunk_size: int) -> torch.Tensor:
    """One micro-batch of `trainer` (a RetrievalTrainer) by the three passes of the module docstring.

    Returns the detached loss divided by the gradient-accumulation steps, as `Trainer.training_step` does;
    the parameter gradients are accumulated into `.grad`.
    """
    if trainer.is_deepspeed_enabled:
        raise LedError(
            "gradient_cache runs its own backward passes: use it with DDP or one device, not DeepSpeed"
        )
    query, passage = inputs["query"], inputs["passage"]
    num_queries = query["input_ids"].shape[0]
    group_size = passage["input_ids"].shape[0] // num_queries
    bounds = chunk_bounds(num_queries, chunk_size)
    device = query["input_ids"].device

    def forward(start: int, stop: int):
        outputs = model(
            query=chunk_rows(query, start, stop),
            passage=chunk_rows(passage, start * group_size, stop * group_size),
        )
        return trainer.representations(outputs)

    # 1. representations without activations
    states, query_parts, passage_parts = [], [], []
    with torch.no_grad():
        for start, stop in bounds:
            states.append(RandomState(device))
            queries, passages = forward(start, stop)
            query_parts.append(queries.detach())
            passage_parts.append(passages.detach())
    queries = torch.cat(query_parts).requires_grad_(True)
    passages = torch.cat(passage_parts).requires_grad_(True)

    # 2. the whole loss on the cached representations, and its gradient with respect to them
    with trainer.compute_loss_context_manager():
        loss = trainer.loss_from_representations(model, queries, passages, inputs)
    if not trainer.loss_is_scaled_for_ga:
        loss = loss / getattr(
            trainer, "current_gradient_accumulation_steps", trainer.args.gradient_accumulation_steps
        )
    query_grads, passage_grads = torch.autograd.grad(loss, [queries, passages])

    # 3. per chunk: the same forward again, with grad, and backward of <R_chunk, dL/dR_chunk>
    for index, (start, stop) in enumerate(bounds):
        last = index == len(bounds) - 1
        sync = contextlib.nullcontext() if last else trainer.accelerator.no_sync(model)
        with sync, states[index]:
            chunk_queries, chunk_passages = forward(start, stop)
            surrogate = (chunk_queries.float() * query_grads[start:stop]).sum() + (
                chunk_passages.float() * passage_grads[start * group_size : stop * group_size]
            ).sum()
            trainer.accelerator.backward(surrogate)
    return loss.detach()
