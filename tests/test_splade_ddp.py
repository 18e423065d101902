"""Two gloo processes under DDP give the SPLADE loss value and gradient of one process with the whole batch.

`accelerate launch --cpu --num_processes 2` silently runs one process, so the ranks are spawned here.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from led_hf.losses.splade import splade_loss, splade_pool

BATCH, GROUP, LENGTH, FEATURES, VOCAB = 4, 3, 5, 6, 16
WEIGHTS = {"query_flops_weight": 0.5, "passage_flops_weight": 0.8}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(FEATURES, VOCAB)


def _batch():
    generator = torch.Generator().manual_seed(1)
    queries = torch.randn(BATCH, LENGTH, FEATURES, generator=generator)
    passages = torch.randn(BATCH * GROUP, LENGTH, FEATURES, generator=generator)
    query_mask = torch.ones(BATCH, LENGTH, dtype=torch.long)
    query_mask[:, 3:] = 0
    passage_mask = torch.ones(BATCH * GROUP, LENGTH, dtype=torch.long)
    passage_mask[::2, 4:] = 0
    return queries, query_mask, passages, passage_mask


def _parts(model, queries, query_mask, passages, passage_mask, global_flops: bool):
    query_reps = splade_pool(model(queries), query_mask)
    passage_reps = splade_pool(model(passages), passage_mask)
    return splade_loss(query_reps, passage_reps, GROUP, flops_over_global_batch=global_flops, **WEIGHTS)


def _worker(rank: int, world: int, folder: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        queries, query_mask, passages, passage_mask = _batch()
        per_rank = BATCH // world
        q_rows = slice(rank * per_rank, (rank + 1) * per_rank)
        p_rows = slice(rank * per_rank * GROUP, (rank + 1) * per_rank * GROUP)
        results = {}
        for global_flops in (True, False):
            model = torch.nn.parallel.DistributedDataParallel(_model())
            parts = _parts(
                model,
                queries[q_rows],
                query_mask[q_rows],
                passages[p_rows],
                passage_mask[p_rows],
                global_flops,
            )
            parts["loss"].backward()
            tag = "global" if global_flops else "local"
            for name, value in parts.items():
                results[f"{tag}_{name}"] = value.detach().numpy()
            results[f"{tag}_weight_grad"] = model.module.weight.grad.numpy()
            results[f"{tag}_bias_grad"] = model.module.bias.grad.numpy()
            # DDP's reducer must go before its process group: destroyed after it, at interpreter exit,
            # it sometimes aborted the process ("terminate called without an active exception")
            del model, parts
            gc.collect()
        np.savez(f"{folder}/rank{rank}.npz", **results)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process_full_batch(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz", allow_pickle=False)) for r in range(2)]

    model = _model()
    reference = _parts(model, *_batch(), global_flops=True)
    reference["loss"].backward()
    for result in ranks:
        for name in ("loss", "contrastive", "flops_query", "flops_passage"):
            assert result[f"global_{name}"] == pytest.approx(reference[name].item(), rel=1e-5), name
        np.testing.assert_allclose(
            result["global_weight_grad"], model.weight.grad.numpy(), rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(result["global_bias_grad"], model.bias.grad.numpy(), rtol=1e-4, atol=1e-6)

    # The local option regularises each device's own mean: a different value, so the check above can fail.
    local_values = [result["local_flops_passage"] for result in ranks]
    assert all(abs(value - reference["flops_passage"].item()) > 1e-4 for value in local_values)
    assert ranks[0]["local_contrastive"] == pytest.approx(reference["contrastive"].item(), rel=1e-5)
