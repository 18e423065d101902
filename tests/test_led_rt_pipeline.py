"""LED w/ RT end to end through the CLI: a cross-encoder trained by `led train cross-encoder` is the KL
teacher of `led train led`, beside a SPLADE teacher trained by `led train splade`."""

from __future__ import annotations

import json

from transformers import AutoModel

from led_hf.cli.main import main as led


def _write(path, settings):
    path.write_text(json.dumps(settings))
    return path


def test_led_with_rt_runs_end_to_end_from_trained_teachers(
    tiny_bert_dir, tiny_bert_mlm_dir, prepared_msmarco, tmp_path
):
    common = {
        "data": str(prepared_msmarco),
        "negs_sources": ["bm25"],
        "num_negatives": 2,
        "per_device_train_batch_size": 2,
        "max_steps": 2,
        "learning_rate": 1e-3,
        "save_strategy": "no",
        "use_cpu": True,
        "report_to": "none",
        "output_dir": str(tmp_path / "unused"),
    }
    cross_encoder, splade, student = tmp_path / "ce", tmp_path / "sp", tmp_path / "led-rt"
    assert (
        led(
            [
                "train",
                "cross-encoder",
                str(
                    _write(
                        tmp_path / "ce.json",
                        {**common, "model_name_or_path": str(tiny_bert_dir), "max_length": 48},
                    )
                ),
                "--output_dir",
                str(cross_encoder),
            ]
        )
        == 0
    )
    assert (
        led(
            [
                "train",
                "splade",
                str(
                    _write(
                        tmp_path / "sp.json",
                        {
                            **common,
                            "model_name_or_path": str(tiny_bert_mlm_dir),
                            "query_max_length": 16,
                            "passage_max_length": 32,
                        },
                    )
                ),
                "--output_dir",
                str(splade),
            ]
        )
        == 0
    )

    # the reference LED w/ RT settings (docs/method.md §1): KL weight 1.5 at T=3, rank weight 1.2 without the positive
    assert (
        led(
            [
                "train",
                "led",
                str(
                    _write(
                        tmp_path / "led_rt.json",
                        {
                            **common,
                            "model_name_or_path": str(tiny_bert_dir),
                            "teacher_model_name_or_path": str(splade),
                            "cross_encoder_name_or_path": str(cross_encoder),
                            "kl_weight": 1.5,
                            "kl_temperature": 3.0,
                            "rank_weight": 1.2,
                            "rank_include_positive": False,
                            "query_max_length": 16,
                            "passage_max_length": 32,
                            "logging_steps": 1,
                        },
                    )
                ),
                "--output_dir",
                str(student),
            ]
        )
        == 0
    )

    resolved = json.loads((student / "led_args.json").read_text())
    assert resolved["kl_weight"] == 1.5 and resolved["cross_encoder_name_or_path"] == str(cross_encoder)
    assert json.loads((student / "led_config.json").read_text())["kind"] == "dense"
    AutoModel.from_pretrained(student)  # only the student was saved, as a plain backbone
    assert not any(p.name.startswith(("ce", "cross")) for p in student.iterdir() if p.is_dir())
    # the card carries the last logged loss parts: the cross-encoder KL term was computed and weighted
    card = (student / "README.md").read_text()
    kl_rows = [line for line in card.splitlines() if line.startswith("| kl_loss |")]
    assert kl_rows and float(kl_rows[0].split("|")[2]) > 0
    assert "| kl_weight | 1.5 |" in card and "| cross_encoder_agreement |" in card
