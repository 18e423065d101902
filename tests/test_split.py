"""`led split` and `led prepare --dev-from-train`: a seeded, disjoint dev split carved from the train queries."""

from __future__ import annotations

import json

from led_hf.cli.main import main as led_main
from led_hf.data.store import PreparedData


def _qrels(root, split) -> list[tuple[str, str, int]]:
    table = PreparedData(root).qrels(split)
    return list(zip(table["qid"], table["pid"], table["score"]))


def test_prepare_with_a_dev_split_from_train(beir_dir, tmp_path, capsys):
    plain = tmp_path / "plain"
    assert led_main(["prepare", "--format", "beir", "--input", str(beir_dir), "--output", str(plain)]) == 0
    train = _qrels(plain, "train")
    out = tmp_path / "with-dev"
    args = ["prepare", "--format", "beir", "--input", str(beir_dir), "--output", str(out)]
    assert led_main([*args, "--dev-from-train", "0.4", "--seed", "3"]) == 0
    assert "queries moved to qrels/dev (seed 3): 2" in capsys.readouterr().out
    new_train, dev = _qrels(out, "train"), _qrels(out, "dev")
    train_queries = {q for q, _, _ in train}
    dev_queries = {q for q, _, _ in dev}
    assert len(dev_queries) == 2 and len(train_queries) == 5  # round(0.4 * 5)
    assert not dev_queries & {q for q, _, _ in new_train}  # the dev queries left training
    assert sorted(new_train + dev) == sorted(train)  # every row kept, none duplicated
    assert _qrels(out, "test") == _qrels(plain, "test")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dev_splits"] == [
        {
            "source": "train",
            "target": "dev",
            "fraction": 0.4,
            "seed": 3,
            "fold": 0,
            "queries": {"train": 3, "dev": 2},
            "rows": {"train": len(new_train), "dev": len(dev)},
        }
    ]
    assert not [p.name for p in (out / "qrels").iterdir() if p.name.startswith(".")]  # no leftovers

    # `led split` on the plain copy with the same seed draws the same dev queries; other seeds differ
    assert led_main(["split", "--data", str(plain), "--fraction", "0.4", "--seed", "3"]) == 0
    assert sorted(_qrels(plain, "dev")) == sorted(dev)
    drawn = set()
    for seed in range(8):
        copy = tmp_path / f"seed{seed}"
        assert (
            led_main([*args[:-1], str(copy), "--dev-from-train", "0.4", "--seed", str(seed), "--quiet"]) == 0
        )
        drawn.add(frozenset(q for q, _, _ in _qrels(copy, "dev")))
    assert len(drawn) > 1


def test_bad_requests_fail_cleanly(beir_dir, tmp_path, capsys):
    out = tmp_path / "data"
    args = ["prepare", "--format", "beir", "--input", str(beir_dir), "--output", str(out)]
    assert led_main([*args, "--dev-from-train", "1.5"]) == 1
    assert "between 0 and 1" in capsys.readouterr().err and not out.exists()  # nothing half-written
    assert led_main([*args, "--quiet"]) == 0
    assert led_main(["split", "--data", str(out), "--fraction", "0.2", "--to", "test"]) == 1
    assert "qrels/test already exists" in capsys.readouterr().err
    assert led_main(["split", "--data", str(out), "--fraction", "0.2", "--from", "nope"]) == 1
    assert "no qrels split 'nope'" in capsys.readouterr().err
    assert led_main(["split", "--data", str(tmp_path / "missing"), "--fraction", "0.2"]) == 1
    assert "not a prepared dataset" in capsys.readouterr().err
    assert led_main(["split", "--data", str(out)]) == 2  # --fraction is required: a one-line usage error
    assert "--fraction" in capsys.readouterr().err


def test_dev_folds_are_disjoint_and_cover_the_training_queries(beir_dir, tmp_path, capsys):
    """--fold K takes the K-th block of the same seeded draw: fold 0 is the plain carve, the folds are
    disjoint and together hold every training query once (cross-validation on a small collection)."""
    args = ["prepare", "--format", "beir", "--input", str(beir_dir), "--quiet"]
    plain = tmp_path / "plain"
    assert led_main([*args, "--output", str(plain)]) == 0
    train_queries = {q for q, _, _ in _qrels(plain, "train")}
    folds = []
    for fold in range(5):  # fraction 0.2 of 5 queries: 1 query a fold, 5 folds
        out = tmp_path / f"fold{fold}"
        flags = ["--output", str(out), "--dev-from-train", "0.2", "--seed", "3", "--dev-fold", str(fold)]
        assert led_main([*args, *flags]) == 0
        dev = {q for q, _, _ in _qrels(out, "dev")}
        assert dev | {q for q, _, _ in _qrels(out, "train")} == train_queries
        assert json.loads((out / "manifest.json").read_text())["dev_splits"][0]["fold"] == fold
        folds.append(dev)
    assert all(len(dev) == 1 for dev in folds)
    assert set().union(*folds) == train_queries  # disjoint (5 of 1) and covering

    # `led split --fold` draws the same fold; fold 0 is the plain carve
    assert led_main(["split", "--data", str(plain), "--fraction", "0.2", "--seed", "3", "--fold", "2"]) == 0
    assert {q for q, _, _ in _qrels(plain, "dev")} == folds[2]
    plain0 = tmp_path / "plain0"
    assert led_main([*args, "--output", str(plain0), "--dev-from-train", "0.2", "--seed", "3"]) == 0
    assert {q for q, _, _ in _qrels(plain0, "dev")} == folds[0]

    capsys.readouterr()
    assert (
        led_main([*args, "--output", str(tmp_path / "f5"), "--dev-from-train", "0.2", "--dev-fold", "5"]) == 1
    )
    assert "dev fold 5 does not exist: a fraction of 0.2 gives folds 0 to 4" in capsys.readouterr().err
    assert not (tmp_path / "f5").exists()
    assert led_main([*args, "--output", str(tmp_path / "nf"), "--dev-fold", "1"]) == 1
    assert "--dev-fold needs --dev-from-train" in capsys.readouterr().err
    assert led_main(["split", "--data", str(plain0), "--fraction", "0.3", "--to", "dev2", "--fold", "3"]) == 1
    assert "dev fold 3 does not exist: a fraction of 0.3 gives folds 0 to 2" in capsys.readouterr().err


def test_a_shipped_dev_split_is_kept(beir_dir, tmp_path, capsys):
    """A collection with its own qrels/dev.tsv (many BEIR collections) keeps it under --dev-from-train:
    a recipe written for collections without one runs unchanged on those with one."""
    import shutil

    source = tmp_path / "with-dev-split"
    shutil.copytree(beir_dir, source)
    lines = (beir_dir / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    (source / "qrels" / "dev.tsv").write_text("\n".join(lines[:2]) + "\n", encoding="utf-8")  # header + 1 row
    out = tmp_path / "data"
    args = ["prepare", "--format", "beir", "--input", str(source), "--output", str(out)]
    assert led_main([*args, "--dev-from-train", "0.4", "--seed", "3"]) == 0
    assert "queries in the collection's own qrels/dev, kept (nothing moved): 1" in capsys.readouterr().out
    plain = tmp_path / "plain"
    assert (
        led_main(["prepare", "--format", "beir", "--input", str(source), "--output", str(plain), "--quiet"])
        == 0
    )
    assert _qrels(out, "train") == _qrels(plain, "train")  # no training query moved
    assert _qrels(out, "dev") == _qrels(plain, "dev")
    assert "dev_splits" not in json.loads((out / "manifest.json").read_text())

    fold = tmp_path / "fold"
    flags = ["--output", str(fold), "--dev-from-train", "0.2", "--dev-fold", "1"]
    assert led_main([*args[:-2], *flags]) == 1
    assert "ships its own dev split (qrels/dev): --dev-fold 1" in capsys.readouterr().err
    assert not fold.exists()
