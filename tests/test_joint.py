"""The joint recipe (issue 11 §1): every exit trained together, layer dropout, curricula, distillation."""
import math
import pytest, torch
from eelab.config import ExperimentConfig, ConfigError, smoke_config
from eelab.model import EarlyExitLM, ModelConfig
from eelab.losses import layer_drop_probs, layer_keep_masks, exit_weights, joint_hidden, distill_loss
from eelab.train import _joint_loss, _lm_loss, train_two_phase


def _model(n_layers=4, exits=(2, 4), seed=0):
    torch.manual_seed(seed)
    return EarlyExitLM(ModelConfig(vocab_size=40, dim=16, num_heads=2, n_layers=n_layers, exit_layers=exits))


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 40, (4, 8), generator=g), torch.randint(0, 40, (4, 8), generator=g)


@pytest.mark.parametrize("weights", ["uniform", "linear", "gradual", "rotational"])
def test_joint_loss_with_one_exit_is_the_plain_loss(weights):
    # breaks if the weights do not sum to 1, or joint_hidden differs from forward_hidden
    model = _model(2, (2,)).train()
    x, y = _batch()
    cfg = ExperimentConfig(recipe="joint", joint_weights=weights)
    joint = _joint_loss(cfg, 10)(model, (x, y, 3))
    torch.testing.assert_close(joint, _lm_loss(2)(model, (x, y)), rtol=1e-6, atol=1e-6)


def test_layer_dropout_probabilities_follow_the_formula():
    probs = layer_drop_probs(4, 0.2)
    expected = [0.2 * (math.exp(l * math.log(2) / 3) - 1) for l in range(4)]
    torch.testing.assert_close(probs, torch.tensor(expected), rtol=0, atol=1e-7)
    assert probs[0] == 0 and abs(probs[-1] - 0.2) < 1e-7 and bool((probs.diff() > 0).all())


def test_layer_dropout_is_per_sample_and_every_parameter_gets_a_gradient():
    # a dropped sample's hidden state skips the layer; the layer still runs (DDP sees every parameter)
    model = _model().train()
    x, y = _batch()
    keep = layer_keep_masks(torch.tensor([0.0, 0.0, 0.0, 0.5]), 4, seed=0)       # (L, B)
    assert keep[:3].all() and keep[3].any() and not keep[3].all(), keep           # seed 0: 2 of 4 dropped
    h_drop, h_full = joint_hidden(model, x, keep)[4], joint_hidden(model, x)[4]
    same = [torch.equal(h_drop[b], h_full[b]) for b in range(4)]
    assert same == keep[3].tolist()
    rates = layer_keep_masks(layer_drop_probs(4, 0.3), 200_000, seed=1).float().mean(1)
    torch.testing.assert_close(rates, 1 - layer_drop_probs(4, 0.3), rtol=0, atol=0.005)
    cfg = ExperimentConfig(recipe="joint", joint_weights="rotational", layer_dropout=0.9)
    _joint_loss(cfg, 10)(model, (x, y, 0)).backward()     # step 0: only the shallow exit has weight
    assert all(p.grad is not None for p in model.parameters())


def test_curricula_enable_the_right_exits():
    exits = (1, 2, 4)
    # gradual: from the top down over the first half (10 steps), all exits from step 5 on
    assert [e for e, w in exit_weights("gradual", exits, 0, 10).items() if w] == [4]
    assert [e for e, w in exit_weights("gradual", exits, 3, 10).items() if w] == [2, 4]
    assert [e for e, w in exit_weights("gradual", exits, 5, 10).items() if w] == [1, 2, 4]
    assert [e for e, w in exit_weights("gradual", exits, 9, 10).items() if w] == [1, 2, 4]
    # rotational: one exit per step in turn
    assert [[e for e, w in exit_weights("rotational", exits, s, 10).items() if w] for s in range(4)] == \
        [[1], [2], [4], [1]]
    linear = exit_weights("linear", exits, 0, 10)
    assert abs(sum(linear.values()) - 1) < 1e-12 and linear[4] == 4 * linear[1]
    with pytest.raises(ConfigError, match="joint_weights"): exit_weights("cubic", exits, 0, 10)


def test_distillation_gradient_does_not_reach_the_deep_exit():
    # breaks if the teacher's hidden state or head is not detached: layers 3 and 4 would get a gradient
    model = _model(exits=(2, 4)).train()
    x, _ = _batch()
    hidden = model.forward_hidden(x)
    kl = distill_loss(hidden[2], hidden[4], model.head(2).proj.weight, model.head(4).proj.weight)
    assert kl.item() > 0
    kl.backward()
    assert all(p.grad is None for layer in model.layers[2:] for p in layer.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.layers[0].parameters())
    # the KL itself: equals F.kl_div on the full logits
    ls, ld = torch.log_softmax(model(x)[2], -1), torch.log_softmax(model(x)[4], -1)
    full = torch.nn.functional.kl_div(ls.reshape(-1, 40), ld.reshape(-1, 40), log_target=True,
                                      reduction="batchmean")
    torch.testing.assert_close(kl, full, rtol=1e-5, atol=1e-6)


def test_joint_fields_fail_by_name():
    bad = [dict(recipe="joint", layer_dropout=1.0), dict(recipe="clean", distill=0.5),
           dict(recipe="joint", joint_weights="x"), dict(recipe="joint", precision="fp16")]
    for fields, name in zip(bad, ("layer_dropout", "distill", "joint_weights", "precision")):
        with pytest.raises(ConfigError, match=name): ExperimentConfig(**fields)


def test_smoke_joint_run_trains_and_reports_every_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("EELAB_DATA", str(tmp_path))
    cfg = smoke_config(recipe="joint", joint_weights="linear", layer_dropout=0.1, distill=0.5)
    run = train_two_phase(cfg, progress=False)
    vocab = run.corpus.tokenizer.vocab_size
    print({p: run.metrics["reported"][p] for p in ("phase1", "phase2")}, "vocab", vocab)
    assert run.metrics["reported"]["phase2"]["ppl"] < vocab / 4      # an untrained model is near vocab
    rep = run.metrics["reported"]
    assert rep["split"] == "test" and 0 < rep["threshold"] < 1
    for p in ("phase1", "phase2"):
        for k in ("ppl", "acc", "hard_ppl"): assert math.isfinite(rep[p][k]), (p, k, rep)
    assert run.model.exit_layers == (2, 4) and run.phase1_model.exit_layers == (2,)
    # the shallow part is the joint model's first two layers: same shallow statistics
    x = run.corpus.windows("test")[:4, :-1]
    with torch.no_grad():
        torch.testing.assert_close(run.phase1_model(x)[2], run.model(x)[2])
    again = train_two_phase(cfg, progress=False)
    assert again.reused and again.metrics == run.metrics


def _agreement(run):
    "Fraction of test tokens where the shallow exit's top-1 equals the deep exit's (the exit's agreement)."
    x = run.corpus.windows("test")[:, :-1]
    with torch.no_grad(): logits = run.model(x)
    return (logits[2].argmax(-1) == logits[4].argmax(-1)).float().mean().item()


def test_joint_shallow_exit_next_to_the_two_phase_one(tmp_path, monkeypatch, capsys):
    # measured, not assumed: prints both; asserts only that the joint shallow exit learned (acc above chance)
    monkeypatch.setenv("EELAB_DATA", str(tmp_path))
    joint = train_two_phase(smoke_config(recipe="joint"), progress=False)
    clean = train_two_phase(smoke_config(recipe="clean"), progress=False)
    rows = {name: dict(shallow_test_acc=r.metrics["phase1"]["test"]["acc"],
                       shallow_test_ppl=r.metrics["phase1"]["test"]["ppl"],
                       deep_test_ppl=r.metrics["phase2"]["test"]["ppl"], agreement=_agreement(r))
            for name, r in (("joint", joint), ("clean", clean))}
    with capsys.disabled(): print("\nsmoke, joint vs clean two-phase:", rows)
    assert rows["joint"]["shallow_test_acc"] > 1 / joint.corpus.tokenizer.vocab_size


# The ablation's inference columns (issue 11 §1): true-exit agreement at a fixed exit ratio, self-speculation.

@pytest.fixture(scope="module")
def joint_run(private_data_dir):
    "The smoke joint run (uniform weights), trained once in this module's data folder."
    return train_two_phase(smoke_config(recipe="joint"), progress=False)


def test_ratio_threshold_exits_the_requested_share_of_validation(joint_run):
    # breaks if the quantile is taken on another confidence or the wrong side of it
    from eelab.estimators import max_softmax
    from eelab.exits import teacher_forced_quality
    from eelab.analysis import ratio_threshold
    model, valid = joint_run.model, joint_run.corpus.windows("valid")
    with torch.no_grad(): conf = max_softmax(model(valid[:, :-1])[2]).flatten()     # (N,) independently
    for ratio in (0.1, 0.5, 0.9, 1.0):
        th = ratio_threshold(model, valid, ratio, exit_layer=2, batch_size=16)
        row, = teacher_forced_quality(model, valid, "skip", "softmax_max", [th], 2, 16)
        assert abs(row["exit_rate"] - ratio) <= 1 / row["tokens"], (ratio, th, row)
        assert abs(int((conf >= th).sum()) - ratio * len(conf)) <= 2, (ratio, th)
    assert ratio_threshold(model, valid, 0.0) == math.inf
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(ConfigError, match="exit_ratio"): ratio_threshold(model, valid, bad)


def test_agreement_at_ratio_uses_the_validation_threshold_on_test(joint_run):
    from eelab.estimators import max_softmax
    from eelab.analysis import agreement_at_ratio, ratio_threshold
    model, bs = joint_run.model, joint_run.cfg.batch_size
    valid, test = joint_run.corpus.windows("valid"), joint_run.corpus.windows("test")
    none = agreement_at_ratio(joint_run, 0.0)               # nothing exits: every fill is the deep exit
    assert (none["exit_rate"], none["agreement_skip"], none["agreement_recompute"]) == (0.0, 1.0, 1.0)
    half = agreement_at_ratio(joint_run, 0.5)
    assert half["threshold"] == ratio_threshold(model, valid, 0.5, exit_layer=2, batch_size=bs)
    assert half["threshold"] != ratio_threshold(model, test, 0.5, exit_layer=2, batch_size=bs)
    # recompute: a deep token gets the full model's output, so only exited tokens where the exits differ
    # disagree; counted here from plain forward passes
    with torch.no_grad(): logits = model(test[:, :-1])
    exited = max_softmax(logits[2]) >= half["threshold"]                              # (N, T)
    differ = logits[2].argmax(-1) != logits[4].argmax(-1)
    n = exited.numel()
    assert abs(half["exit_rate"] - exited.float().mean().item()) <= 2 / n
    assert abs(half["agreement_recompute"] - (1 - (exited & differ).float().mean().item())) <= 2 / n
    assert 0 < half["agreement_skip"] <= 1, half


def test_speculation_acceptance_is_counted_from_the_passes(joint_run):
    from eelab.speculate import self_speculative
    from eelab.analysis import speculation_acceptance, speculation_prompts
    spec = speculation_acceptance(joint_run, n_prompts=12, draft_len=3)
    prompts = speculation_prompts(joint_run, n_prompts=12)
    test = joint_run.corpus.windows("test")
    assert torch.equal(prompts[0], test[0, :8]) and torch.equal(prompts[-1], test[-1, :8])   # fixed places
    n_new = joint_run.cfg.seq_len - 8 + 1
    runs = [self_speculative(joint_run.model, p[None], n_new, 3, exit_layer=2) for p in prompts]
    rates = [sum(v.accepted for v in r.passes) / sum(len(v.drafted) for v in r.passes) for r in runs]
    per_pass = [n_new / len(r.passes) for r in runs]
    assert 0 <= spec["acceptance"] <= 1 and 1 <= spec["tokens_per_pass"] <= 4, spec
    assert spec["acceptance"] == pytest.approx(sum(rates) / len(rates), abs=1e-12)
    assert spec["tokens_per_pass"] == pytest.approx(sum(per_pass) / len(per_pass), abs=1e-12)


def test_ablation_table_has_the_inference_columns(joint_run):
    from eelab.analysis import ablation, agreement_at_ratio, speculation_acceptance
    table = ablation(smoke_config(), variants={"uniform": {}}, baselines=("clean",), n_prompts=8)
    print(table.T)
    new = ["ratio_exit_rate", "ratio_agreement_skip", "ratio_agreement_recompute", "spec_acceptance",
           "spec_tokens_per_pass"]
    assert list(table.index) == ["clean", "uniform"]
    assert {"shallow_ppl", "deep_acc", "agreement", "train_s", *new} <= set(table.columns)
    assert table[new].notna().all().all() and (table[new[:4]].values <= 1).all()
    row = table.loc["uniform"]                              # the same config as joint_run: the same run
    assert row["ratio_agreement_skip"] == agreement_at_ratio(joint_run)["agreement_skip"]
    assert row["spec_acceptance"] == speculation_acceptance(joint_run, n_prompts=8)["acceptance"]


def test_cli_names_the_scale_config():
    from eelab.config import scale_config
    from eelab.train import cli_config
    assert cli_config("scale", "joint") == scale_config() == cli_config("scale")
    clean = cli_config("scale", "clean", ["dim=128"])
    assert clean == scale_config(recipe="clean", dim=128) and clean.layer_dropout == 0


def test_three_recipes_side_by_side_with_exit_precision_recall():
    # breaks if a row mixes up the shallow and deep exits, reads another split than test, or counts the
    # precision/recall at another threshold or exit than the recipe's own
    from eelab.analysis import compare_recipes
    table = compare_recipes(smoke_config())
    assert list(table.index) == ["reference", "clean", "joint"]
    for recipe in table.index:
        run = train_two_phase(smoke_config(recipe=recipe), progress=False)          # loaded: same run
        row = table.loc[recipe]
        assert row["shallow_ppl"] == pytest.approx(run.metrics["phase1"]["test"]["ppl"])
        assert row["deep_hard_ppl"] == pytest.approx(run.metrics["phase2"]["test"]["hard_ppl"])
        # counted here, not by eelab.exits: the shallow exit's max softmax on every test target, against
        # the corpus's labels (window i predicts tokens i*s+1 .. i*s+s)
        windows, s = run.corpus.windows("test"), run.corpus.seq_len
        with torch.no_grad():
            logits = run.model.eval()(windows[:, :-1])[run.model.exit_layers[0]]    # (N, s, V)
        exited = (torch.softmax(logits.float(), -1).amax(-1) >= run.threshold).flatten()
        targets = (torch.arange(len(windows))[:, None] * s + 1 + torch.arange(s)).flatten()
        easy = run.corpus.difficulty["test"][targets] > 0
        hits = (exited & easy).sum().item()
        one_token = 1.5 / len(exited)             # batching may move a confidence at the threshold by 1 ulp
        assert row["precision"] == pytest.approx(hits / exited.sum().item(), abs=one_token * 2)
        assert row["recall"] == pytest.approx(hits / easy.sum().item(), abs=one_token * 2)
        assert row["exit_rate"] == pytest.approx(exited.float().mean().item(), abs=one_token)
        assert 0 < row["recall"] < 1
    assert table.loc["clean", "threshold"] != table.loc["reference", "threshold"]
