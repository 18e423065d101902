"""`led mine` (led_hf.mining.job): dense / SPLADE / BM25 mining against independent exact searches,
filters, reuse of encodings, resume after SIGKILL, two processes, and training on the mined source."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from trainer_helpers import free_port, join_gloo_ranks
from transformers import AutoTokenizer

from led_hf.cli.main import main
from led_hf.collators.encode import encode_passages, encode_texts
from led_hf.data.store import PreparedData
from led_hf.mining.filters import NegativeFilters, select_negatives

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dense_model(tiny_bert_dir, tmp_path_factory) -> Path:
    """A led-hf dense checkpoint (led_config.json: kind dense, mean pooling: distinct scores on a random BERT)."""
    from led_hf.modeling.dense import DenseEncoder

    out = tmp_path_factory.mktemp("dense-ckpt")
    DenseEncoder.from_pretrained(tiny_bert_dir, pooling="mean").save_pretrained(
        out, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_dir)
    )
    return out


@pytest.fixture(scope="module")
def splade_model(tiny_bert_mlm_dir, tmp_path_factory) -> Path:
    from led_hf.modeling.splade import SpladeEncoder

    out = tmp_path_factory.mktemp("splade-ckpt")
    SpladeEncoder.from_pretrained(tiny_bert_mlm_dir).save_pretrained(
        out, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_mlm_dir)
    )
    return out


@pytest.fixture
def data(prepared_msmarco, tmp_path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(prepared_msmarco, out)
    return out


def mine(data, *args) -> int:
    return main(["mine", "--data", str(data), "--no-progress", *map(str, args)])


def read_negatives(data, name) -> dict[str, tuple[list[str], list[float]]]:
    table = PreparedData(data).negatives(name)
    return {row["qid"]: (row["pids"], row["scores"]) for row in table}


def positives(data, split="train") -> dict[str, set[str]]:
    return {
        qid: {pid for pid, grade in judged.items() if grade > 0}
        for qid, judged in PreparedData(data).qrels_dict(split).items()
    }


def reference_scores(model_dir, data, kind) -> tuple[list[str], list[str], np.ndarray]:
    """Exact float64 scores [Q, N] of the split's queries against every passage, each text encoded alone."""
    from led_hf.modeling.dense import DenseEncoder
    from led_hf.modeling.splade import SpladeEncoder

    prepared = PreparedData(data)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = (DenseEncoder if kind == "dense" else SpladeEncoder).from_pretrained(model_dir).eval()
    call = (lambda f, batch: f(**batch)) if kind == "dense" else (lambda f, batch: f(batch))
    corpus = prepared.corpus.to_dict()
    qids = sorted(positives(data))
    texts = dict(zip(prepared.queries["qid"], prepared.queries["text"]))
    with torch.no_grad():
        passages = np.concatenate(
            [
                call(model.encode_passage, encode_passages(tokenizer, [title], [text], 128)).double().numpy()
                for title, text in zip(corpus["title"], corpus["text"])
            ]
        )
        queries = np.concatenate(
            [call(model.encode_query, encode_texts(tokenizer, [texts[q]], 32)).double().numpy() for q in qids]
        )
    return qids, corpus["pid"], queries @ passages.T


def expected_lists(qids, pids, scores, judged, depth, keep):
    """Top `depth` by score (stable: corpus order on ties), positives removed, first `keep`."""
    out = {}
    for i, qid in enumerate(qids):
        order = np.argsort(-scores[i], kind="stable")[:depth]
        kept = [(pids[j], scores[i, j]) for j in order if pids[j] not in judged.get(qid, set())][:keep]
        if kept:
            out[qid] = kept
    return out


def assert_same_ranking(mined, expected, atol):
    """Same queries, scores equal position by position, pids equal wherever scores are not (near-)tied."""
    assert sorted(mined) == sorted(expected)
    for qid, pairs in expected.items():
        pids, scores = mined[qid]
        want = np.array([s for _, s in pairs])
        np.testing.assert_allclose(scores, want, atol=atol, rtol=0)
        for k, (pid, score) in enumerate(pairs):
            near = np.abs(want - score) <= 2 * atol
            if near.sum() == 1:
                assert pids[k] == pid, (qid, k)
            else:  # a tie: the same passages over the tied positions
                assert set(np.array(pids)[near]) == {p for (p, s), n in zip(pairs, near) if n}


def test_dense_mining_equals_exact_search_minus_positives(data, dense_model):
    assert (
        mine(data, "--name", "co-stg1", "--model", dense_model, "--depth", 6, "--keep", 4, "--num-shards", 2)
        == 0
    )
    mined = read_negatives(data, "co-stg1")
    judged = positives(data)
    qids, pids, scores = reference_scores(dense_model, data, "dense")
    assert_same_ranking(mined, expected_lists(qids, pids, scores, judged, depth=6, keep=4), atol=1e-4)
    for qid, (negatives, _) in mined.items():
        assert not set(negatives) & judged[qid] and 1 <= len(negatives) <= 4
    assert all(len(n) == 4 for n, _ in mined.values())  # depth 6 minus at most 2 positives: keep is reached

    manifest = json.loads((data / "negatives" / "co-stg1" / "manifest.json").read_text())
    assert (manifest["kind"], manifest["backend"], manifest["depth"], manifest["keep"]) == (
        "dense",
        "faiss",
        6,
        4,
    )
    assert manifest["model"] == str(dense_model.resolve()) and manifest["split"] == "train"
    assert set(manifest["inputs_sha256"]) == {"model", "corpus", "queries", "qrels/train"}
    assert all(len(digest) == 64 for digest in manifest["inputs_sha256"].values())
    assert manifest["started"] <= manifest["finished"] and manifest["wall_seconds"] >= 0
    assert manifest["num_queries"] == len(qids) and manifest["num_queries_written"] == len(mined)
    assert not (data / ".mine-co-stg1").exists()  # the work folder goes once the table is written


def test_splade_mining_equals_exact_sparse_search(data, splade_model, tiny_bert_mlm_dir, capsys):
    assert mine(data, "--name", "sp-stg1", "--model", splade_model, "--depth", 7, "--keep", 5) == 0
    mined = read_negatives(data, "sp-stg1")
    qids, pids, scores = reference_scores(splade_model, data, "splade")
    expected = expected_lists(
        qids, pids, np.where(scores > 0, scores, -np.inf), positives(data), depth=7, keep=5
    )
    expected = {
        q: [(p, s) for p, s in pairs if np.isfinite(s)] for q, pairs in expected.items()
    }  # score 0 = no match
    assert_same_ranking(mined, {q: v for q, v in expected.items() if v}, atol=1e-4)
    manifest = json.loads((data / "negatives" / "sp-stg1" / "manifest.json").read_text())
    assert (manifest["kind"], manifest["backend"]) == ("splade", "inverted")
    # a plain masked-LM folder is SPLADE without --kind (detect_model_kind), and gives the same result
    assert mine(data, "--name", "raw", "--model", tiny_bert_mlm_dir, "--depth", 7, "--keep", 5) == 0
    assert read_negatives(data, "raw") == mined
    assert json.loads((data / "negatives" / "raw" / "manifest.json").read_text())["kind"] == "splade"


def test_filters_through_the_cli(data, dense_model):
    qids, pids, scores = reference_scores(dense_model, data, "dense")
    judged = positives(data)
    assert (
        mine(
            data,
            "--name",
            "f",
            "--model",
            dense_model,
            "--depth",
            12,
            "--keep",
            3,
            "--skip-top",
            1,
            "--absolute-margin",
            0.1,
        )
        == 0
    )
    # independent: full ranking, the model's best-positive score, the same rules
    order = np.argsort(-scores, axis=1, kind="stable")
    rows = order
    best = np.array([max(scores[i, pids.index(p)] for p in judged[q]) for i, q in enumerate(qids)])
    positive_rows = [np.array([pids.index(p) for p in judged[q]]) for q in qids]
    mask = select_negatives(
        rows,
        np.take_along_axis(scores, order, 1),
        positive_rows,
        qids,
        NegativeFilters(keep=3, skip_top=1, absolute_margin=0.1),
        best,
    )
    expected = {
        q: [(pids[r], scores[i, r]) for r in rows[i][mask[i]]] for i, q in enumerate(qids) if mask[i].any()
    }
    assert_same_ranking(read_negatives(data, "f"), expected, atol=1e-4)
    without_margin = select_negatives(
        rows,
        np.take_along_axis(scores, order, 1),
        positive_rows,
        qids,
        NegativeFilters(keep=3, skip_top=1),
        best,
    )
    assert (without_margin != mask).any()  # the margin changed the lists: the comparison is not vacuous

    for name in ("s1", "s2"):
        assert (
            mine(
                data,
                "--name",
                name,
                "--model",
                dense_model,
                "--depth",
                12,
                "--keep",
                2,
                "--sample-ranks",
                "2:6",
                "--seed",
                3,
            )
            == 0
        )
    sampled = read_negatives(data, "s1")
    assert sampled == read_negatives(data, "s2")  # deterministic given the seed
    for i, qid in enumerate(qids):
        ranking = [pids[r] for r in order[i] if pids[r] not in judged[qid]]
        assert all(2 <= ranking.index(p) + 1 <= 6 for p in sampled[qid][0]) and len(sampled[qid][0]) == 2


def test_reusing_encodings_and_indexes(data, dense_model, splade_model, tmp_path):
    assert mine(data, "--name", "own", "--model", dense_model, "--depth", 6, "--keep", 4) == 0
    assert (
        main(
            [
                "encode",
                "--model",
                str(dense_model),
                "--data",
                str(data),
                "--corpus",
                "--output",
                str(tmp_path / "enc"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        mine(
            data,
            "--name",
            "reused",
            "--model",
            dense_model,
            "--depth",
            6,
            "--keep",
            4,
            "--corpus-embeddings",
            tmp_path / "enc",
        )
        == 0
    )
    assert read_negatives(data, "reused") == read_negatives(data, "own")
    manifest = json.loads((data / "negatives" / "reused" / "manifest.json").read_text())
    assert manifest["corpus_embeddings"] == str((tmp_path / "enc").resolve())
    assert "corpus_embeddings" in manifest["inputs_sha256"]

    assert (
        mine(
            data,
            "--name",
            "sp-own",
            "--model",
            splade_model,
            "--depth",
            7,
            "--keep",
            5,
            "--absolute-margin",
            0.0,
        )
        == 0
    )
    assert (
        main(
            [
                "encode",
                "--model",
                str(splade_model),
                "--data",
                str(data),
                "--corpus",
                "--output",
                str(tmp_path / "sparse"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(["index", "--vectors", str(tmp_path / "sparse"), "--output", str(tmp_path / "idx"), "--quiet"])
        == 0
    )
    assert (
        mine(
            data,
            "--name",
            "sp-idx",
            "--model",
            splade_model,
            "--depth",
            7,
            "--keep",
            5,
            "--absolute-margin",
            0.0,
            "--index",
            tmp_path / "idx",
        )
        == 0
    )
    own, quantised = read_negatives(data, "sp-own"), read_negatives(data, "sp-idx")
    assert sorted(own) == sorted(quantised)
    for qid in own:  # round(100 w) weights: scores agree to the quantisation error, in the model's units
        width = min(len(own[qid][1]), len(quantised[qid][1]))
        np.testing.assert_allclose(own[qid][1][:width], quantised[qid][1][:width], atol=0.05)
    # a dense model with a sparse encoding (and the reverse) is refused
    assert (
        mine(data, "--name", "bad", "--model", dense_model, "--corpus-embeddings", tmp_path / "sparse") == 1
    )
    assert mine(data, "--name", "bad", "--model", splade_model, "--backend", "faiss") == 1


def test_bm25_mining_matches_led_bm25_negatives(data):
    assert (
        main(
            [
                "bm25",
                "--data",
                str(data),
                "--split",
                "train",
                "--negatives",
                "ref",
                "--depth",
                "8",
                "--keep",
                "3",
            ]
        )
        == 0
    )
    assert mine(data, "--name", "bm25-mined", "--bm25", "--depth", 8, "--keep", 3) == 0
    assert read_negatives(data, "bm25-mined") == read_negatives(data, "ref")


def test_refusals_and_overwrite(data, dense_model, capsys):
    assert mine(data, "--name", "x", "--model", dense_model, "--depth", 4, "--keep", 2, "--keep-work") == 0
    assert (data / ".mine-x" / "plan.json").is_file()
    before = read_negatives(data, "x")
    assert mine(data, "--name", "x", "--model", dense_model, "--depth", 4, "--keep", 2) == 1
    assert "already exists" in capsys.readouterr().err
    assert read_negatives(data, "x") == before
    # the kept work folder was made for depth 4: another run must not resume into it
    assert (
        mine(
            data,
            "--name",
            "x",
            "--model",
            dense_model,
            "--depth",
            5,
            "--keep",
            2,
            "--overwrite",
            "--work-dir",
            data / ".mine-x",
            "--keep-work",
        )
        == 0
    )
    plan = json.loads((data / ".mine-x" / "plan.json").read_text())
    assert plan["depth"] == 5
    assert (
        mine(data, "--name", "y", "--model", dense_model, "--depth", 4, "--work-dir", data / ".mine-x") == 1
    )
    assert "holds mining work for another run" in capsys.readouterr().err
    assert mine(data, "--name", "z", "--bm25", "--absolute-margin", 0.1) == 1
    assert "margin" in capsys.readouterr().err
    for bad in (
        ["--name", "../evil", "--bm25"],
        ["--name", "k", "--bm25", "--sample-ranks", "5"],
        ["--name", "k", "--model", data / "nope"],
    ):
        assert mine(data, *bad) == 1
    assert mine(data, "--name", "k", "--bm25", "--keep", "0") == 2  # a usage error, caught by the parser
    assert "--keep: expected a positive integer, got 0" in capsys.readouterr().err
    assert not (data / "negatives" / "k").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["mine", "--help"])
    assert exit_info.value.code == 0 and "--skip-top" in capsys.readouterr().out


def test_trainers_consume_the_mined_source(data, dense_model, tmp_path):
    from led_hf.data.groups import TrainGroups

    assert mine(data, "--name", "co-stg1", "--model", dense_model, "--depth", 8, "--keep", 4) == 0
    mined = read_negatives(data, "co-stg1")
    groups = TrainGroups(data, negs_sources="co-stg1", num_negatives=3, seed=0, show_progress=False)
    for i in range(len(groups)):
        item = groups[i]
        assert set(item["pids"][1:]) <= set(mined[item["qid"]][0])
    out = tmp_path / "co-stg2"
    assert (
        main(
            [
                "train",
                "dense",
                "--model_name_or_path",
                str(dense_model),
                "--data",
                str(data),
                "--negs_sources",
                "bm25,co-stg1",
                "--num_negatives",
                "2",
                "--query_max_length",
                "16",
                "--passage_max_length",
                "32",
                "--per_device_train_batch_size",
                "2",
                "--max_steps",
                "2",
                "--save_strategy",
                "no",
                "--use_cpu",
                "true",
                "--report_to",
                "none",
                "--output_dir",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "led_args.json").read_text())["negs_sources"] == ["bm25", "co-stg1"]


def test_stage2_configs_point_at_mined_sources():
    den = json.loads((ROOT / "configs" / "msmarco" / "den_continue.json").read_text())
    lex = json.loads((ROOT / "configs" / "msmarco" / "lex_continue.json").read_text())
    # docs/method.md §1: co-stg2 trains on co-stg1's own top-200, sp-stg2 on sp-stg1's own top-200
    assert (den["model_name_or_path"], den["negs_sources"], den["num_negs_per_system"]) == (
        "runs/msmarco/co-stg1",
        ["co-stg1"],
        200,
    )
    assert (lex["model_name_or_path"], lex["negs_sources"], lex["num_negs_per_system"]) == (
        "runs/msmarco/sp-stg1",
        ["sp-stg1"],
        200,
    )


@pytest.mark.slow
def test_sigkill_midway_resumes_to_identical_output(data, dense_model):
    command = [
        sys.executable,
        "-m",
        "led_hf",
        "mine",
        "--data",
        str(data),
        "--name",
        "killed",
        "--model",
        str(dense_model),
        "--depth",
        "6",
        "--keep",
        "4",
        "--num-shards",
        "3",
        "--no-progress",
    ]
    env = {**os.environ, "LED_TEST_KILL_AFTER_SHARDS": "1", "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (data / "negatives" / "killed").exists()  # no partial dataset is ever visible
    assert not [p for p in (data / "negatives").iterdir() if p.name.startswith(".killed")]
    assert len(list((data / ".mine-killed" / "results").glob("shard-*"))) == 1
    env.pop("LED_TEST_KILL_AFTER_SHARDS")
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    manifest = json.loads((data / "negatives" / "killed" / "manifest.json").read_text())
    assert (manifest["shards_resumed"], manifest["shards_this_run"]) == (1, 2)
    assert (
        mine(data, "--name", "whole", "--model", dense_model, "--depth", 6, "--keep", 4, "--num-shards", 3)
        == 0
    )
    assert read_negatives(data, "killed") == read_negatives(data, "whole")


def _mine_rank(rank: int, port: int, data: str, model: str, kind: str) -> None:
    # a fresh (spawned) process per rank, as `accelerate launch` / torchrun would start them
    if kind == "dense-sharded":  # each process searches its half of the corpus, top-k merged
        os.environ["LED_TEST_SHARDED_SEARCH"] = "1"
    join_gloo_ranks(rank, port)
    code = main(
        [
            "mine",
            "--data",
            data,
            "--name",
            f"{kind}-ddp",
            "--model",
            model,
            "--depth",
            "6",
            "--keep",
            "4",
            "--num-shards",
            "3",
            "--corpus-shards",
            "2",
            "--no-progress",
        ]
    )
    if code != 0:
        raise RuntimeError(f"rank {rank} exited with {code}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dense", "splade", "dense-sharded"])
def test_two_gloo_processes_equal_one_process(data, dense_model, splade_model, kind):
    port = free_port()
    model = str(splade_model if kind == "splade" else dense_model)
    torch.multiprocessing.spawn(_mine_rank, args=(port, str(data), model, kind), nprocs=2, join=True)
    assert (
        mine(
            data,
            "--name",
            f"{kind}-one",
            "--model",
            model,
            "--depth",
            6,
            "--keep",
            4,
            "--num-shards",
            3,
            "--corpus-shards",
            2,
        )
        == 0
    )
    two, one = read_negatives(data, f"{kind}-ddp"), read_negatives(data, f"{kind}-one")
    assert two == one and len(one) == len(positives(data))
    manifest = json.loads((data / "negatives" / f"{kind}-ddp" / "manifest.json").read_text())
    assert manifest["num_processes"] == 2 and manifest["shards_this_run"] + manifest["shards_resumed"] == 2
    if kind == "dense-sharded":  # every process searched all 3 query shards; the main one wrote 0 and 2
        assert manifest["shards_this_run"] == 2


def test_index_factory_flat_equals_exact_mining(data, dense_model, capsys):
    common = ["--model", dense_model, "--depth", 6, "--keep", 4, "--num-shards", 2]
    assert mine(data, "--name", "exact", *common) == 0
    assert mine(data, "--name", "factory", *common, "--index-factory", "Flat") == 0
    exact, factory = read_negatives(data, "exact"), read_negatives(data, "factory")
    assert exact.keys() == factory.keys()
    for qid in exact:
        assert exact[qid][0] == factory[qid][0]
        np.testing.assert_allclose(exact[qid][1], factory[qid][1], rtol=1e-5)
    capsys.readouterr()
    assert mine(data, "--name", "bad", *common, "--nprobe", 4) == 1
    assert "--nprobe and --ef-search need --index-factory" in capsys.readouterr().err
    assert mine(data, "--name", "bad", *common, "--index-factory", "NoSuchIndex") == 1
    assert "--index-factory 'NoSuchIndex': faiss cannot build it" in capsys.readouterr().err


def test_a_refused_input_leaves_no_work_folder_blocking_the_corrected_command(data, dense_model, capsys):
    """issue 13 item 6: a mine refused after its plan was written (here: sparse --corpus-embeddings for a
    dense model) used to leave DATA/.mine-NAME/ whose plan then refused the corrected command."""
    wrong = data.parent / "sparse-enc"
    wrong.mkdir()
    (wrong / "manifest.json").write_text(json.dumps({"kind": "sparse"}), encoding="utf-8")
    assert mine(data, "--name", "m", "--model", dense_model, "--corpus-embeddings", wrong, "--depth", 4) == 1
    assert "holds 'sparse' vectors" in capsys.readouterr().err
    assert not (data / ".mine-m").exists()
    assert mine(data, "--name", "m", "--model", dense_model, "--depth", 4, "--keep", 2) == 0
    assert read_negatives(data, "m")
