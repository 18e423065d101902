"""On a CUDA device (skipped elsewhere; run by benchmarks/gpu/run.sh): GradCache and gradient checkpointing
give the plain step's gradients there too, and under bf16 the LED teacher's forward runs in bf16 autocast."""

from __future__ import annotations

import pytest
import torch
from test_grad_cache import assert_same_grads, first_step_grads, make_trainer, models  # noqa: F401

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 products in fp32 (not TF32), so that gradients compare at fp32 tolerance."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("kind", ["dense", "splade", "led"])
def test_grad_cache_and_checkpointing_on_cuda(kind, models, prepared_msmarco, tmp_path):  # noqa: F811
    plain, trainer = first_step_grads(kind, models, prepared_msmarco, tmp_path / "plain", use_cpu=False)
    assert trainer.args.device.type == "cuda"
    for name, overrides in {
        "cache": dict(gradient_cache=True, gc_chunk_size=3),
        "checkpointing": dict(gradient_checkpointing=True),
    }.items():
        other, _ = first_step_grads(
            kind, models, prepared_msmarco, tmp_path / name, use_cpu=False, **overrides
        )
        assert_same_grads({n: g.cpu() for n, g in other.items()}, {n: g.cpu() for n, g in plain.items()})


def test_bf16_led_step_runs_its_teacher_in_bf16(models, prepared_msmarco, tmp_path):  # noqa: F811
    trainer = make_trainer("led", models, prepared_msmarco, tmp_path, use_cpu=False, bf16=True, max_steps=2)
    seen = []
    trainer.teacher.model.register_forward_hook(
        lambda module, args, output: seen.append((torch.get_autocast_dtype("cuda"), output.logits.dtype))
    )
    trainer.train()
    assert seen and all(dtype == torch.bfloat16 for pair in seen for dtype in pair), seen
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(loss == loss and abs(loss) < 1e4 for loss in losses)  # finite
