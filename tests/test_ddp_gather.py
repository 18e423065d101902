"""Cross-device negatives: two real gloo processes (DDP) give the gradient of one process with the whole batch.

`accelerate launch --cpu --num_processes 2` silently runs one process (env.md), so the ranks are started
with torch.multiprocessing (spawn) and a file rendezvous.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from led_hf.losses import contrastive_loss, gather_with_grad

QUERIES = ["aspirin heart attack", "salt blood pressure", "sleep memory", "statins cholesterol"]
PASSAGES = [
    f"passage {i} about {word}"
    for i, word in enumerate(
        [
            "aspirin",
            "salt",
            "sleep",
            "heart",
            "blood",
            "memory",
            "statins",
            "cholesterol",
            "risk",
            "pressure",
            "attack",
            "study",
        ]
    )
]
GROUP_SIZE, TEMPERATURE, WORLD = 3, 0.5, 2


def _batch(tokenizer, query_rows: slice):
    queries = QUERIES[query_rows]
    passages = PASSAGES[query_rows.start * GROUP_SIZE : query_rows.stop * GROUP_SIZE]
    return (
        tokenizer(queries, padding=True, return_tensors="pt"),
        tokenizer(passages, padding="max_length", max_length=12, return_tensors="pt"),
    )


def _model(model_dir):
    from led_hf.modeling import DenseEncoder

    return DenseEncoder.from_pretrained(
        model_dir
    ).eval()  # eval: no dropout, so both runs see the same function


def _loss(model, tokenizer, rows: slice):
    query, passage = _batch(tokenizer, rows)
    output = model(query=query, passage=passage)
    return contrastive_loss(
        gather_with_grad(output.query_embeddings),
        gather_with_grad(output.passage_embeddings),
        GROUP_SIZE,
        temperature=TEMPERATURE,
    )


def _worker(rank: int, init_file: str, model_dir: str, out_dir: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model = torch.nn.parallel.DistributedDataParallel(_model(model_dir), broadcast_buffers=False)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        per_rank = len(QUERIES) // WORLD
        loss = _loss(model, tokenizer, slice(rank * per_rank, (rank + 1) * per_rank))
        loss.backward()
        grads = {
            name: param.grad.contiguous()
            for name, param in model.module.named_parameters()
            if param.grad is not None
        }

        # Uneven rows (an incomplete last batch): rank 0 has 2 rows, rank 1 has 1.
        local = torch.full((2 - rank, 3), float(rank + 1), requires_grad=True)
        gathered = gather_with_grad(local)
        weights = torch.arange(9, dtype=torch.float32).view(3, 3)
        (gathered * weights).sum().backward()
        if rank == 0:
            save_file(grads, os.path.join(out_dir, "grads.safetensors"))
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
            json.dump(
                {"loss": loss.item(), "gathered": gathered.tolist(), "uneven_grad": local.grad.tolist()},
                handle,
            )
    finally:
        dist.destroy_process_group()


def test_gather_is_identity_without_distributed():
    tensor = torch.randn(3, 2)
    assert gather_with_grad(tensor) is tensor


def test_two_gloo_processes_match_one_process(tmp_path, tiny_bert_dir):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    torch.multiprocessing.spawn(
        _worker,
        args=(str(tmp_path / "rendezvous"), str(tiny_bert_dir), str(tmp_path)),
        nprocs=WORLD,
        join=True,
    )

    model = _model(tiny_bert_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    loss = _loss(model, tokenizer, slice(0, len(QUERIES)))
    loss.backward()
    reference = {name: param.grad for name, param in model.named_parameters() if param.grad is not None}
    distributed = load_file(tmp_path / "grads.safetensors")
    assert set(distributed) == set(reference)
    for name, grad in reference.items():
        torch.testing.assert_close(distributed[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert max(grad.abs().max().item() for grad in reference.values()) > 1e-3  # the comparison is not vacuous

    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(WORLD)]
    for result in ranks:  # every rank computes the same global loss
        assert result["loss"] == pytest.approx(loss.item(), rel=1e-5)
        assert result["gathered"] == [[1.0] * 3, [1.0] * 3, [2.0] * 3]
    # d/d local of sum(gathered * weights), summed over the 2 ranks: 2 * that rank's rows of weights.
    assert ranks[0]["uneven_grad"] == [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]]
    assert ranks[1]["uneven_grad"] == [[12.0, 14.0, 16.0]]


def _trainer_worker(rank: int, port: int, model_dir: str, data_dir: str, out_dir: str) -> None:
    import sys

    from safetensors.torch import save_file

    sys.path.insert(0, os.path.dirname(__file__))
    from test_dense_trainer import _first_step_grads
    from trainer_helpers import join_gloo_ranks

    join_gloo_ranks(rank, port, WORLD)
    grads, trainer = _first_step_grads(
        model_dir, data_dir, os.path.join(out_dir, f"rank{rank}"), 2, 1, in_batch=True
    )
    assert trainer.accelerator.num_processes == WORLD
    if rank == 0:
        save_file(
            {name: grad.contiguous() for name, grad in grads.items()},
            os.path.join(out_dir, "trainer.safetensors"),
        )


@pytest.mark.slow
def test_dense_trainer_under_ddp_matches_one_process(tmp_path, no_dropout_bert_dir, prepared_msmarco):
    """The whole DenseTrainer path (Accelerate DDP, sharded batches, gather, loss): 2 x 2 == 1 x 4."""
    from safetensors.torch import load_file
    from test_dense_trainer import _first_step_grads
    from trainer_helpers import free_port

    port = free_port()
    model_dir = no_dropout_bert_dir
    torch.multiprocessing.spawn(
        _trainer_worker,
        args=(port, str(model_dir), str(prepared_msmarco), str(tmp_path)),
        nprocs=WORLD,
        join=True,
    )
    reference, _ = _first_step_grads(model_dir, prepared_msmarco, tmp_path / "single", 4, 1, in_batch=True)
    distributed = load_file(tmp_path / "trainer.safetensors")
    assert set(distributed) == set(reference)
    for name, grad in reference.items():
        torch.testing.assert_close(distributed[name], grad, atol=1e-5, rtol=1e-4, msg=name)
