"""Under `--bf16 true` the frozen LED teacher's forward runs in the Trainer's bf16 autocast, as the
student's does (Accelerate only wraps the student's own forward), and its scores stay fp32."""

from __future__ import annotations

import torch
from transformers import AutoTokenizer

from led_hf.arguments import LEDTrainingArguments
from led_hf.collators.led import LEDCollator
from led_hf.data.scored_groups import ScoredTrainGroups
from led_hf.modeling import DenseEncoder
from led_hf.modeling.splade import SpladeEncoder
from led_hf.trainers.led import LEDTrainer


def test_teacher_forward_runs_under_the_training_autocast(
    tiny_bert_dir, tiny_bert_mlm_dir, prepared_msmarco, tmp_path
):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    teacher = SpladeEncoder.from_pretrained(tiny_bert_mlm_dir)
    seen = []
    teacher.model.register_forward_hook(
        lambda module, args, output: seen.append(
            (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), output.logits.dtype)
        )
    )
    trainer = LEDTrainer(
        model=DenseEncoder.from_pretrained(tiny_bert_dir),
        args=LEDTrainingArguments(
            output_dir=str(tmp_path),
            use_cpu=True,
            bf16=True,
            per_device_train_batch_size=2,
            max_steps=1,
            report_to="none",
            save_strategy="no",
            dataloader_num_workers=0,
            teacher_model_name_or_path="given-to-the-trainer",
        ),
        train_dataset=ScoredTrainGroups(
            prepared_msmarco, negs_sources="bm25", num_negatives=2, seed=0, show_progress=False
        ),
        data_collator=LEDCollator(tokenizer, 16, 32),
        processing_class=tokenizer,
        teacher=teacher,
    )
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in (0, 1)]))
    assert trainer.teacher_scores(batch, 2, 3).dtype == torch.float32  # scores in fp32 whatever the forward
    seen.clear()
    trainer.train()
    assert seen and all(enabled and dtype == torch.bfloat16 for enabled, dtype, _ in seen), seen
    assert all(logits_dtype == torch.bfloat16 for *_, logits_dtype in seen)
