"""configs/accelerate: the launch configs parse as accelerate configs, point at files that exist, and the
plain multi-GPU one starts two real (gloo) ranks on a CPU-only machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"


def test_configs_parse_and_agree():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    plain = load_config_from_file(str(CONFIGS / "multi_gpu_bf16.yaml"))
    assert plain.distributed_type == DistributedType.MULTI_GPU and plain.mixed_precision == "bf16"
    zero2 = load_config_from_file(str(CONFIGS / "deepspeed_zero2.yaml"))
    assert zero2.distributed_type == DistributedType.DEEPSPEED
    ds_file = ROOT / zero2.deepspeed_config["deepspeed_config_file"]  # relative to the repository root
    settings = json.loads(ds_file.read_text())
    assert settings["zero_optimization"]["stage"] == 2
    # batch sizes, accumulation, clipping and precision come from the TrainingArguments ("auto")
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert settings[key] == "auto"
    assert settings["bf16"]["enabled"] == "auto"


@pytest.mark.slow
def test_multi_gpu_config_launches_two_gloo_ranks_on_cpu(tiny_bert_dir, prepared_msmarco, tmp_path):
    """`accelerate launch --config_file configs/accelerate/multi_gpu_bf16.yaml --num_processes 2 ...`: the
    MULTI_GPU config starts 2 ranks; without GPUs they talk over gloo (bf16 autocast off on CPU)."""
    out = tmp_path / "out"
    config = tmp_path / "dense.json"
    config.write_text(
        json.dumps(
            {
                "model_name_or_path": str(tiny_bert_dir),
                "data": str(prepared_msmarco),
                "negs_sources": "bm25",
                "num_negatives": 2,
                "query_max_length": 16,
                "passage_max_length": 32,
                "per_device_train_batch_size": 2,
                "max_steps": 2,
                "save_strategy": "no",
                "use_cpu": True,
                "report_to": "none",
                "logging_steps": 1,
                "output_dir": str(out),
            }
        )
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(CONFIGS / "multi_gpu_bf16.yaml"),
        "--num_processes", "2",
        "--mixed_precision", "no",
        str(ROOT / "scripts" / "train_dense.py"), str(config),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = done.stdout + done.stderr
    # 5 groups, 2 ranks x 2 queries, last incomplete batch dropped: one step per epoch (one rank: two)
    assert "'epoch': '1'" in logs and "'epoch': '0.5'" not in logs
    assert (out / "model.safetensors").is_file()
