"""LEDTrainer and `led train led` / `led score-teacher`: frozen teachers, logged parts, student-only
checkpoints, online vs precomputed teacher scores, the cross-encoder (RT) path, tokenization checks."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from trainer_helpers import (
    FirstStepGradients,
    declare_false_negative,
    eval_loss_with_parts,
    fixture_groups,
    free_port,
    join_gloo_ranks,
    run_settings,
    train_logs,
)
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertTokenizerFast,
)

from led_hf.arguments import LEDTrainingArguments
from led_hf.cli.main import main as led_main
from led_hf.collators.cross_encoder import CrossEncoderCollator
from led_hf.collators.led import LEDCollator, same_tokenization
from led_hf.data.scored_groups import ScoredTrainGroups
from led_hf.errors import LedError
from led_hf.losses import kl_distillation_loss, rank_consistency_loss, ranking_agreement
from led_hf.modeling import DenseEncoder
from led_hf.modeling.cross_encoder import CrossEncoder
from led_hf.modeling.splade import SpladeEncoder
from led_hf.trainers.led import LEDTrainer

GROUP = 3  # 1 positive + 2 negatives


@pytest.fixture(scope="module")
def student_dir(no_dropout_bert_dir):
    """The student: the tiny BERT without dropout (deterministic train-mode forwards, for gradient comparisons)."""
    return no_dropout_bert_dir


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_bert_mlm_dir):
    """The tiny MLM saved as a led-hf SPLADE checkpoint (same fixture vocabulary as the student)."""
    directory = tmp_path_factory.mktemp("led-teacher")
    SpladeEncoder.from_pretrained(tiny_bert_mlm_dir).save_pretrained(
        directory, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_mlm_dir)
    )
    return directory


@pytest.fixture()
def scored_data(tmp_path, prepared_msmarco):
    """A writable copy of the prepared fixture (score-teacher writes DATA/teacher_scores/<name>)."""
    return shutil.copytree(prepared_msmarco, tmp_path / "data")


def _args(output_dir, **overrides) -> LEDTrainingArguments:
    names = dict(
        teacher_model_name_or_path="given-to-the-trainer",
        cross_encoder_name_or_path="given-to-the-trainer",
    )
    return LEDTrainingArguments(**run_settings(output_dir, **{**names, **overrides}))


def _trainer(
    student,
    data,
    output_dir,
    teacher=None,
    cross_encoder=None,
    score_tables=None,
    teacher_tokenizer=None,
    callbacks=(),
    **overrides,
) -> LEDTrainer:
    tokenizer = AutoTokenizer.from_pretrained(student)
    groups = fixture_groups(data, ScoredTrainGroups, num_negatives=GROUP - 1, score_tables=score_tables)
    ce_collator = None
    if cross_encoder is not None:
        ce_collator = CrossEncoderCollator(AutoTokenizer.from_pretrained(cross_encoder), max_length=64)
        cross_encoder = CrossEncoder.from_pretrained(cross_encoder, allow_new_head=False)
    collator = LEDCollator(
        tokenizer,
        16,
        32,
        extra_keys=tuple(score_tables or ()),
        teacher_tokenizer=teacher_tokenizer,
        cross_encoder_collator=ce_collator,
    )
    return LEDTrainer(
        model=DenseEncoder.from_pretrained(student, pooling="mean"),
        args=_args(output_dir, **overrides),
        train_dataset=groups,
        data_collator=collator,
        processing_class=tokenizer,
        teacher=None if teacher is None else SpladeEncoder.from_pretrained(teacher),
        cross_encoder=cross_encoder,
        callbacks=list(callbacks),
    )


def _batch(trainer, rows=(0, 1, 2)):
    return trainer.data_collator([trainer.train_dataset[i] for i in rows])


def test_teacher_is_frozen_and_checkpoints_hold_only_the_student(
    student_dir, teacher_dir, prepared_msmarco, tmp_path
):
    trainer = _trainer(
        student_dir, prepared_msmarco, tmp_path / "out", teacher_dir, max_steps=4, rank_weight=2.0
    )
    teacher = trainer.teacher
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()

    # frozen: eval mode everywhere, no grad, no gradient ever stored, weights unchanged, not optimised
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[name]), name
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised and not optimised & {id(p) for p in teacher.parameters()}
    assert optimised <= {id(p) for p in trainer.model.parameters()}
    assert any(not torch.equal(v, student_before[k]) for k, v in trainer.model.state_dict().items())

    logs = train_logs(trainer)
    assert len(logs) == 4
    for entry in logs:
        for name in (
            "contrastive_loss",
            "rank_loss",
            "rank_agreement",
            "rank_weight",
            "kl_weight",
            "accuracy",
        ):
            assert name in entry, (name, entry)
        assert "kl_loss" not in entry
        assert entry["rank_weight"] == 2.0 and entry["kl_weight"] == 0.0
        assert 0.0 <= entry["rank_agreement"] <= 1.0
        assert entry["loss"] == pytest.approx(
            entry["contrastive_loss"] + 2.0 * entry["rank_loss"], rel=1e-3, abs=1e-4
        )
    assert any(entry["rank_loss"] > 0 for entry in logs)  # the term is live, not vacuously zero

    saved = tmp_path / "saved"
    trainer.save_model(str(saved))
    weights = load_file(saved / "model.safetensors")
    assert set(weights) == set(trainer.model.encoder.state_dict())  # the student's backbone, nothing else
    assert not any(
        "predictions" in key or key.startswith("model.") for key in weights
    )  # no MLM head / teacher
    backbone = AutoModel.from_pretrained(saved)
    for name, value in trainer.model.encoder.state_dict().items():
        torch.testing.assert_close(backbone.state_dict()[name], value)
    assert json.loads((saved / "led_config.json").read_text())["kind"] == "dense"
    assert "rank consistency" in (saved / "README.md").read_text()


def test_online_teacher_scores_each_querys_own_candidates(
    student_dir, teacher_dir, prepared_msmarco, tmp_path
):
    trainer = _trainer(student_dir, prepared_msmarco, tmp_path / "out", teacher_dir)
    batch = _batch(trainer)
    online = trainer.teacher_scores(batch, 3, GROUP)
    teacher = SpladeEncoder.from_pretrained(teacher_dir).eval()
    with torch.no_grad():
        full = teacher.score(teacher.encode(batch["query"]), teacher.encode(batch["passage"]))  # [3, 3*G]
    expected = torch.stack([full[i, i * GROUP : (i + 1) * GROUP] for i in range(3)])
    torch.testing.assert_close(online, expected, rtol=1e-5, atol=1e-5)
    assert online.std() > 0  # distinct scores: the comparison can fail

    # the chunked teacher pass (teacher_batch_size rows at a time) gives the same scores
    trainer.args.teacher_batch_size = 2
    torch.testing.assert_close(trainer.teacher_scores(batch, 3, GROUP), online, rtol=1e-5, atol=1e-5)

    # the loss the trainer adds is rank_consistency_loss of the student's own [B, G] block
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        out = trainer.model(query=batch["query"], passage=batch["passage"])
    student = torch.einsum("bh,bgh->bg", out.query_embeddings, out.passage_embeddings.view(3, GROUP, -1))
    parts = {name: float(values[-1]) for name, values in trainer._metrics["eval"].items()}
    assert parts["rank_loss"] == pytest.approx(
        rank_consistency_loss(student / trainer.model.temperature, expected).item(), rel=1e-5
    )
    assert parts["rank_agreement"] == pytest.approx(ranking_agreement(student, expected).item())
    assert loss.item() == pytest.approx(parts["contrastive_loss"] + parts["rank_loss"], rel=1e-5)


def test_false_negatives_leave_the_contrastive_and_rank_terms(
    student_dir, teacher_dir, prepared_msmarco, tmp_path
):
    """A hard negative that the qrels call relevant (declared here through the batch's positive_rows):
    out of the contrastive denominator and out of every rank pair, in the trainer's own loss."""
    from led_hf.losses import contrastive_loss
    from led_hf.losses.masking import false_negative_mask

    trainer = _trainer(student_dir, prepared_msmarco, tmp_path / "out", teacher_dir)
    batch = _batch(trainer)
    declare_false_negative(batch, query=0, column=1, group_size=GROUP)  # query 0's first hard negative
    loss, out, parts = eval_loss_with_parts(trainer, batch)
    mask = false_negative_mask(batch["positive_rows"], batch["passage_rows"], GROUP)
    assert mask[0, 1] and parts["masked_false_negatives"] == pytest.approx(mask.sum().item() / 3)
    temperature = trainer.model.temperature
    assert parts["contrastive_loss"] == pytest.approx(
        contrastive_loss(out.query_embeddings, out.passage_embeddings, GROUP, temperature, mask=mask).item(),
        rel=1e-5,
    )
    student = torch.einsum("bh,bgh->bg", out.query_embeddings, out.passage_embeddings.view(3, GROUP, -1))
    teacher = trainer.teacher_scores(batch, 3, GROUP)
    own = false_negative_mask(batch["positive_rows"], batch["passage_rows"], GROUP, in_batch_negatives=False)
    masked = rank_consistency_loss(student / temperature, teacher, mask=own).item()
    assert parts["rank_loss"] == pytest.approx(masked, rel=1e-5)
    assert masked != pytest.approx(rank_consistency_loss(student / temperature, teacher).item(), rel=1e-3)
    assert loss.item() == pytest.approx(parts["contrastive_loss"] + parts["rank_loss"], rel=1e-5)


@pytest.mark.parametrize("bf16", [True, False])
def test_teachers_run_in_the_students_autocast(
    student_dir, teacher_dir, cross_encoder_dir, prepared_msmarco, tmp_path, bf16
):
    """Accelerate wraps only the student's forward in autocast: the teachers, called beside it, must enter
    it themselves (under bf16 training they ran in fp32, at fp32 cost)."""
    trainer = _trainer(
        student_dir,
        prepared_msmarco,
        tmp_path / "out",
        teacher_dir,
        cross_encoder_dir,
        bf16=bf16,
        kl_weight=1.0,
    )
    seen = []

    def record(module, inputs, output):
        seen.append((torch.is_autocast_enabled("cpu"), output.logits.dtype))

    trainer.teacher.model.register_forward_hook(record)
    trainer.cross_encoder.model.register_forward_hook(record)
    batch = _batch(trainer)
    teacher, cross_encoder = (
        trainer.teacher_scores(batch, 3, GROUP),
        trainer.cross_encoder_scores(batch, 3, GROUP),
    )
    expected = (True, torch.bfloat16) if bf16 else (False, torch.float32)
    assert seen and all(entry == expected for entry in seen), seen
    assert teacher.dtype == cross_encoder.dtype == torch.float32  # scores stay fp32 either way


def test_precomputed_scores_equal_online_scores(student_dir, teacher_dir, scored_data, tmp_path, capsys):
    assert (
        led_main(
            [
                "score-teacher",
                "--data",
                str(scored_data),
                "--teacher",
                str(teacher_dir),
                "--name",
                "sp",
                "--negs-sources",
                "bm25",
                "--query-max-length",
                "16",
                "--passage-max-length",
                "32",
                "--queries-per-chunk",
                "2",
                "--batch-size",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    metadata = json.loads(capsys.readouterr().out)
    assert (
        metadata["kind"] == "splade" and metadata["num_queries"] == 5 and metadata["negs_sources"] == ["bm25"]
    )
    # each training query's positives + distinct bm25 negatives: 100: 1+4, 101: 1+2, 102: 2+3, 103: 1+6, 104: 1+2
    assert metadata["num_pairs"] == 23

    online = _trainer(student_dir, scored_data, tmp_path / "a", teacher_dir)
    precomputed = _trainer(
        student_dir,
        scored_data,
        tmp_path / "b",
        score_tables={"teacher_scores": "sp"},
        teacher_scores="precomputed",
        teacher_scores_name="sp",
    )
    for epoch in (0, 1):  # fresh draws each epoch, still looked up right
        online.train_dataset.set_epoch(epoch)
        precomputed.train_dataset.set_epoch(epoch)
        rows = list(range(len(online.train_dataset)))
        batch = _batch(precomputed, rows)
        assert batch["teacher_scores"].shape == (len(rows), GROUP)
        torch.testing.assert_close(
            batch["teacher_scores"],
            online.teacher_scores(_batch(online, rows), len(rows), GROUP),
            rtol=1e-5,
            atol=1e-5,
        )
    precomputed.train()  # no teacher model at all
    assert precomputed.teacher is None and "rank_loss" in train_logs(precomputed)[0]

    # rewriting needs --overwrite; a table that does not cover the training setup is refused
    assert (
        led_main(
            [
                "score-teacher",
                "--data",
                str(scored_data),
                "--teacher",
                str(teacher_dir),
                "--name",
                "sp",
                "--no-progress",
            ]
        )
        == 1
    )
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(LedError, match="num_negs_per_system"):
        ScoredTrainGroups(
            scored_data,
            negs_sources="bm25",
            num_negs_per_system=500,
            num_negatives=2,
            show_progress=False,
            score_tables={"teacher_scores": "sp"},
        )
    with pytest.raises(LedError, match="no teacher scores"):
        ScoredTrainGroups(
            scored_data,
            negs_sources="bm25",
            num_negatives=2,
            show_progress=False,
            score_tables={"teacher_scores": "missing"},
        )


def test_score_teacher_resumes_from_complete_parts(teacher_dir, scored_data, monkeypatch):
    from datasets import load_from_disk

    from led_hf.scoring import teacher_scores as ts

    options = dict(
        negs_sources="bm25",
        query_max_length=16,
        passage_max_length=32,
        batch_size=3,
        part_queries=2,
        precision="fp32",
        progress=False,
    )
    reference = ts.score_teacher(scored_data, str(teacher_dir), "whole", **options)
    real, scored = ts._score_part, []

    def killed_in_part_1(*args, **kwargs):  # (groups, scorer, queries, per_chunk, work, index, ...)
        scored.append(args[5])
        if args[5] == 1:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(ts, "_score_part", killed_in_part_1)
    with pytest.raises(RuntimeError, match="killed"):
        ts.score_teacher(scored_data, str(teacher_dir), "resumed", **options)
    work = scored_data / "teacher_scores" / ".work-resumed"
    assert [p.name for p in sorted(work.glob("part-*"))] == [
        "part-00000.arrow"
    ]  # 5 queries: parts of 2, 2, 1
    assert not (scored_data / "teacher_scores" / "resumed").exists()
    with pytest.raises(LedError, match="part_queries differs"):  # other options: the work is not reused
        ts.score_teacher(scored_data, str(teacher_dir), "resumed", **{**options, "part_queries": 3})

    scored.clear()
    monkeypatch.setattr(
        ts, "_score_part", lambda *args, **kwargs: (scored.append(args[5]), real(*args, **kwargs))
    )
    metadata = ts.score_teacher(scored_data, str(teacher_dir), "resumed", **options)
    assert scored == [1, 2] and not work.exists()
    assert metadata == reference
    tables = [
        load_from_disk(str(scored_data / "teacher_scores" / name)).to_dict() for name in ("whole", "resumed")
    ]
    assert tables[0] == tables[1] and tables[0]["qid"] == ["100", "101", "102", "103", "104"]


def test_score_teacher_looks_up_the_teachers_corpus_vectors(teacher_dir, scored_data, capsys):
    from datasets import load_from_disk

    common = [
        "score-teacher",
        "--data",
        str(scored_data),
        "--teacher",
        str(teacher_dir),
        "--negs-sources",
        "bm25",
        "--query-max-length",
        "16",
        "--passage-max-length",
        "32",
        "--no-progress",
    ]
    encode = ["encode", "--model", str(teacher_dir), "--data", str(scored_data), "--corpus", "--no-progress"]
    assert led_main([*encode, "--max-length", "32", "--output", str(scored_data / "enc32")]) == 0
    assert led_main([*encode, "--max-length", "24", "--output", str(scored_data / "enc24")]) == 0
    assert led_main([*common, "--name", "encoded"]) == 0
    assert led_main([*common, "--name", "looked-up", "--corpus-vectors", str(scored_data / "enc32")]) == 0
    capsys.readouterr()
    encoded, looked_up = (
        load_from_disk(str(scored_data / "teacher_scores" / name)).to_dict()
        for name in ("encoded", "looked-up")
    )
    assert encoded["pids"] == looked_up["pids"]
    for a, b in zip(encoded["scores"], looked_up["scores"]):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-5)
    # passages encoded at another length would give other scores: refused, naming the field
    assert led_main([*common, "--name", "bad", "--corpus-vectors", str(scored_data / "enc24")]) == 1
    assert "max_length=24" in capsys.readouterr().err


def test_cross_encoder_kl_path(student_dir, teacher_dir, cross_encoder_dir, scored_data, tmp_path):
    overrides = dict(
        rank_weight=1.2, kl_weight=1.5, kl_temperature=3.0, rank_include_positive=False, max_steps=2
    )
    trainer = _trainer(
        student_dir, scored_data, tmp_path / "rt", teacher_dir, cross_encoder=cross_encoder_dir, **overrides
    )
    batch = _batch(trainer)
    online = trainer.cross_encoder_scores(batch, 3, GROUP)
    reference = CrossEncoder.from_pretrained(cross_encoder_dir, allow_new_head=False).eval()
    collate = CrossEncoderCollator(AutoTokenizer.from_pretrained(cross_encoder_dir), max_length=64)
    features = [trainer.train_dataset[i] for i in range(3)]
    with torch.no_grad():
        expected = reference.score(**collate(features)["pairs"]).view(3, GROUP)
    torch.testing.assert_close(online, expected, rtol=1e-5, atol=1e-5)

    cross_before = {k: v.clone() for k, v in trainer.cross_encoder.state_dict().items()}
    trainer.train()
    assert not trainer.cross_encoder.training
    assert all(not p.requires_grad and p.grad is None for p in trainer.cross_encoder.parameters())
    for name, value in trainer.cross_encoder.state_dict().items():
        assert torch.equal(value, cross_before[name]), name
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in trainer.cross_encoder.parameters()}
    for entry in train_logs(trainer):
        assert entry["kl_weight"] == 1.5 and entry["rank_weight"] == 1.2
        assert 0.0 <= entry["cross_encoder_agreement"] <= 1.0
        expected_total = entry["contrastive_loss"] + 1.2 * entry["rank_loss"] + 1.5 * entry["kl_loss"]
        assert entry["loss"] == pytest.approx(expected_total, rel=1e-3, abs=1e-4)

    # the KL term of one batch is kl_distillation_loss of the student's [B, G] block, T = 3
    trainer.model.eval()
    with torch.no_grad():
        trainer.compute_loss(trainer.model, batch)
        out = trainer.model(query=batch["query"], passage=batch["passage"])
    student = torch.einsum("bh,bgh->bg", out.query_embeddings, out.passage_embeddings.view(3, GROUP, -1))
    kl = float(trainer._metrics["eval"]["kl_loss"][-1])
    assert kl == pytest.approx(
        kl_distillation_loss(student / trainer.model.temperature, expected, 3.0).item(), rel=1e-5
    )

    # precomputed cross-encoder scores are the same logits
    assert (
        led_main(
            [
                "score-teacher",
                "--data",
                str(scored_data),
                "--teacher",
                str(cross_encoder_dir),
                "--name",
                "ce",
                "--negs-sources",
                "bm25",
                "--no-progress",
            ]
        )
        == 0
    )
    precomputed = _trainer(
        student_dir,
        scored_data,
        tmp_path / "pre",
        teacher_scores="precomputed",
        teacher_scores_name="unused",
        cross_encoder_scores_name="ce",
        score_tables={"cross_encoder_scores": "ce"},
        **dict(overrides, rank_weight=0.0),
    )
    torch.testing.assert_close(_batch(precomputed)["cross_encoder_scores"], expected, rtol=1e-5, atol=1e-5)


def test_same_tokenization_and_a_teacher_that_tokenizes_itself(
    student_dir, teacher_dir, tiny_bert_mlm_dir, prepared_msmarco, tmp_path
):
    student_tokenizer = AutoTokenizer.from_pretrained(student_dir)
    assert same_tokenization(
        student_tokenizer, AutoTokenizer.from_pretrained(teacher_dir)
    )  # separate files, same vocab
    vocab = list(student_tokenizer.get_vocab())
    vocab.sort(key=student_tokenizer.get_vocab().get)
    # same size, different ids: two tokens swapped
    swapped = vocab[:]
    swapped[-1], swapped[-2] = swapped[-2], swapped[-1]
    (tmp_path / "swapped.txt").write_text("\n".join(swapped) + "\n")
    other = BertTokenizerFast(vocab=str(tmp_path / "swapped.txt"), do_lower_case=True)
    assert len(other) == len(student_tokenizer) and not same_tokenization(student_tokenizer, other)
    # same vocabulary dict, different normalisation (cased)
    (tmp_path / "same.txt").write_text("\n".join(vocab) + "\n")
    cased = BertTokenizerFast(vocab=str(tmp_path / "same.txt"), do_lower_case=False)
    assert cased.get_vocab() == student_tokenizer.get_vocab() and not same_tokenization(
        student_tokenizer, cased
    )

    # a teacher with its own (swapped) vocabulary gets its own token ids from the collator
    teacher_folder = tmp_path / "other-teacher"
    SpladeEncoder.from_pretrained(tiny_bert_mlm_dir).save_pretrained(teacher_folder, tokenizer=other)
    trainer = _trainer(
        student_dir, prepared_msmarco, tmp_path / "out", teacher=teacher_folder, teacher_tokenizer=other
    )
    batch = _batch(trainer)
    assert not torch.equal(batch["teacher_passage"]["input_ids"], batch["passage"]["input_ids"])
    teacher = SpladeEncoder.from_pretrained(teacher_folder).eval()
    with torch.no_grad():
        full = teacher.score(teacher.encode(batch["teacher_query"]), teacher.encode(batch["teacher_passage"]))
    expected = torch.stack([full[i, i * GROUP : (i + 1) * GROUP] for i in range(3)])
    torch.testing.assert_close(trainer.teacher_scores(batch, 3, GROUP), expected, rtol=1e-5, atol=1e-5)


def test_cli_recipe_online_precomputed_and_errors(student_dir, teacher_dir, scored_data, tmp_path, capsys):
    config = tmp_path / "led.json"
    config.write_text(
        json.dumps(
            {
                "model_name_or_path": str(student_dir),
                "teacher_model_name_or_path": str(teacher_dir),
                "data": str(scored_data),
                "negs_sources": "bm25",
                "num_negatives": 2,
                "query_max_length": 16,
                "passage_max_length": 32,
                "learning_rate": 1e-3,
                "per_device_train_batch_size": 2,
                "max_steps": 2,
                "save_strategy": "no",
                "use_cpu": True,
                "report_to": "none",
                "pooling": "mean",
                "output_dir": str(tmp_path / "ignored"),
            }
        )
    )
    out = tmp_path / "online"
    assert led_main(["train", "led", str(config), "--output_dir", str(out), "--rank_weight", "0.5"]) == 0
    resolved = json.loads((out / "led_args.json").read_text())
    assert resolved["rank_weight"] == 0.5 and resolved["teacher_scores"] == "online"
    AutoModel.from_pretrained(out)
    assert (
        not (out / "led_teacher").exists()
        and json.loads((out / "led_config.json").read_text())["kind"] == "dense"
    )
    assert "rank consistency" in (out / "README.md").read_text()

    assert (
        led_main(
            [
                "score-teacher",
                "--data",
                str(scored_data),
                "--teacher",
                str(teacher_dir),
                "--name",
                "sp",
                "--negs-sources",
                "bm25",
                "--query-max-length",
                "16",
                "--passage-max-length",
                "32",
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        led_main(
            [
                "train",
                "led",
                str(config),
                "--output_dir",
                str(tmp_path / "pre"),
                "--teacher_scores",
                "precomputed",
                "--teacher_scores_name",
                "sp",
                "--teacher_model_name_or_path",
                "no/such/dir",
            ]
        )
        == 0
    )

    # errors: one line, exit 1
    assert (
        led_main(
            [
                "train",
                "led",
                str(config),
                "--output_dir",
                str(tmp_path / "x"),
                "--teacher_scores",
                "precomputed",
            ]
        )
        == 1
    )
    assert "teacher_scores_name is not set" in capsys.readouterr().err
    assert (
        led_main(["train", "led", str(config), "--output_dir", str(tmp_path / "y"), "--kl_weight", "1.5"])
        == 1
    )
    assert "cross_encoder_name_or_path" in capsys.readouterr().err
    assert led_main(["train", "led", "--help"]) == 0
    assert "--min_teacher_gap" in capsys.readouterr().out


def _first_step(student, teacher, data, output_dir, batch_size):
    recorder = FirstStepGradients()
    trainer = _trainer(
        student,
        data,
        output_dir,
        teacher,
        callbacks=[recorder],
        max_steps=1,
        max_grad_norm=0.0,
        per_device_train_batch_size=batch_size,
        train_sampling_strategy="sequential",
    )
    trainer.train()
    return recorder.grads, trainer


def _ddp_worker(rank: int, port: int, student: str, teacher: str, data: str, out: str) -> None:
    import os
    import sys

    from safetensors.torch import save_file

    sys.path.insert(0, os.path.dirname(__file__))
    from test_led_trainer import _first_step

    join_gloo_ranks(rank, port)

    grads, trainer = _first_step(student, teacher, data, os.path.join(out, f"rank{rank}"), 2)
    assert trainer.accelerator.num_processes == 2
    assert all(p.grad is None and not p.requires_grad for p in trainer.teacher.parameters())
    assert "rank_loss" in trainer.state.log_history[0]
    if rank == 0:
        save_file(
            {name: grad.contiguous() for name, grad in grads.items()}, os.path.join(out, "ddp.safetensors")
        )


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(student_dir, teacher_dir, prepared_msmarco, tmp_path):
    """DDP with the teacher outside the wrapped model: 2 ranks x 2 queries == 1 process x 4 queries.

    Contrastive negatives are gathered across ranks; the rank loss is each rank's mean over its own
    queries' pairs (the same count on every rank: 3 per query), which DDP's averaging turns into the mean
    over all pairs.
    """
    port = free_port()
    torch.multiprocessing.spawn(
        _ddp_worker,
        args=(port, str(student_dir), str(teacher_dir), str(prepared_msmarco), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    reference, trainer = _first_step(student_dir, teacher_dir, prepared_msmarco, tmp_path / "single", 4)
    assert trainer.state.log_history[0]["rank_loss"] > 0
    distributed = load_file(tmp_path / "ddp.safetensors")
    assert set(distributed) == set(reference)
    for name, grad in reference.items():
        torch.testing.assert_close(distributed[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_configs_hold_the_reference_recipe():
    """configs/msmarco/led*.json carry docs/method.md §1's values; the SciFact demos take the checkpoints by flag."""
    from pathlib import Path

    from led_hf.arguments import DataArguments, ModelArguments
    from led_hf.config import parse_arguments

    configs = Path(__file__).resolve().parents[1] / "configs"
    types = (ModelArguments, DataArguments, LEDTrainingArguments)
    flags = ["--output_dir", "unused", "--use_cpu", "true", "--bf16", "false"]
    for name, rank_weight, include_positive, kl_weight in (
        ("led", 1.0, True, 0.0),
        ("led_rt", 1.2, False, 1.5),
    ):
        model, data, training = parse_arguments(types, [str(configs / "msmarco" / f"{name}.json"), *flags])
        assert model.model_name_or_path == "runs/msmarco/co-stg1" and model.pooling == "cls"
        assert training.teacher_model_name_or_path == "runs/msmarco/sp-stg2"
        assert data.negs_sources == ["co-stg1", "sp-stg1", "sp-stg2"] and data.num_negs_per_system == 200
        assert data.num_negatives == 32 and not data.dedupe_negatives
        assert (training.learning_rate, training.per_device_train_batch_size, training.num_train_epochs) == (
            5e-6,
            16,
            3,
        )
        assert (training.rank_weight, training.rank_include_positive, training.kl_weight) == (
            rank_weight,
            include_positive,
            kl_weight,
        )
        assert (
            training.kl_temperature == 3.0
            and training.rank_margin == 0.0
            and training.min_teacher_gap is None
        )
        assert (name == "led_rt") == (training.cross_encoder_name_or_path is not None)
        demo = configs / "demo" / f"{name}_scifact.json"
        with pytest.raises(SystemExit):  # the student checkpoint is a required flag
            parse_arguments(types, [str(demo), *flags])
        checkpoints = [
            "--model_name_or_path",
            "runs/den",
            "--teacher_model_name_or_path",
            "runs/lex",
            "--cross_encoder_name_or_path",
            "runs/ce",
        ]
        model, data, training = parse_arguments(types, [str(demo), *flags, *checkpoints])
        assert data.negs_sources == ["co-stg1", "sp-stg1", "sp-stg2"]
        assert (training.rank_weight, training.rank_include_positive, training.kl_weight) == (
            rank_weight,
            include_positive,
            kl_weight,
        )


@pytest.mark.slow
def test_accelerate_launch_script_with_two_gloo_processes(
    student_dir, teacher_dir, prepared_msmarco, tmp_path
):
    """`accelerate launch --multi_gpu --num_processes 2 scripts/train_led.py CONFIG` on CPU: two gloo ranks."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    config = tmp_path / "led.json"
    config.write_text(
        json.dumps(
            {
                "model_name_or_path": str(student_dir),
                "pooling": "mean",
                "teacher_model_name_or_path": str(teacher_dir),
                "data": str(prepared_msmarco),
                "negs_sources": "bm25,dense",
                "num_negatives": 4,
                "query_max_length": 16,
                "passage_max_length": 32,
                "per_device_train_batch_size": 2,
                "max_steps": 2,
                "learning_rate": 1e-3,
                "save_strategy": "no",
                "use_cpu": True,
                "report_to": "none",
                "logging_steps": 1,
            }
        )
    )
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--main_process_port",  # not accelerate's fixed 29500, which an earlier run may still hold
            str(free_port()),
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(root / "scripts" / "train_led.py"),
            str(config),
            "--output_dir",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    logs = done.stdout + done.stderr
    # 6 groups / (2 ranks x 2 queries) = one step per epoch (one process would need three)
    assert "'rank_loss'" in logs and "'epoch': '1'" in logs and "'epoch': '0.3333'" not in logs
    AutoModel.from_pretrained(out)
    assert json.loads((out / "led_args.json").read_text())["negs_sources"] == ["bm25", "dense"]
