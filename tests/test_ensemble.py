"""The batched ensemble against separately trained runs (the ground truth), per member."""

from __future__ import annotations

import json

import pytest
import torch
from torch.func import functional_call, vmap

from training import runs
from training.config import load_config, preset_path
from training.ensemble import RATES, EnsembleTrainer, _dropout_hook, check_members, train_ensemble
from training.errors import ConfigError
from training.trainer import train

TINY = [
    "task.v=10",
    "task.train_max_len=4",
    "train.steps=60",
    "train.eval_every=30",
    "train.checkpoint_every=60",
    "train.eval_sets=32",
    "train.final_eval_sets=64",
    "train.warmup_steps=5",
    "model.d_model=16",
    "model.d_head=8",
    "model.n_heads=2",
    "train.device=cpu",
    "averaging.mode=bema",
    'averagers=[{"name": "ema", "mode": "ema", "decay": 0.9, "warmup": true},'
    ' {"name": "extrap", "mode": "extrapolation"}]',
]


def tiny(*extra: str):
    return load_config(preset_path("demo"), TINY + list(extra))


def _max_diff(a: dict, b: dict) -> float:
    # skip the -inf IGNORE buffers: inf - inf is NaN even where the two are equal
    return max(float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point() and a[k].isfinite().all())


def test_members_equal_separate_runs(tmp_path):
    """Seeds x targets at dropout 0, plus a dropout member that must not disturb them: every
    dropout-free member's raw weights, averages and metrics match its own separate run."""
    cfgs = [
        tiny(f"train.seed={s}", f"task.target={t}", f"model.attn_dropout={p}")
        for s in (0, 3)
        for t in ("sampled", "exact")
        for p in (0.0, 0.3)
    ]
    dirs = [runs.prepare_run(tmp_path / f"m{i}", c) for i, c in enumerate(cfgs)]
    results = train_ensemble(cfgs, dirs, progress=False)
    assert all(r.error is None for r in results)
    for i, cfg in enumerate(cfgs):
        if cfg.model.attn_dropout:
            continue
        sep = runs.prepare_run(tmp_path / f"sep{i}", cfg)
        train(cfg, sep, progress=False)
        for name in ("raw", "averaged", "ema", "extrap"):
            mine = runs.load_weights(dirs[i] / runs.weights_file(name))
            theirs = runs.load_weights(sep / runs.weights_file(name))
            assert mine.keys() == theirs.keys()
            # float rounding of vmap's batched kernels, amplified by Adam where its second
            # moment is small: measured 1e-5 to 7e-5 after 60 steps
            assert _max_diff(mine, theirs) < 2e-4, (i, name)
        a, b = runs.read_final_metrics(dirs[i]), runs.read_final_metrics(sep)
        for name in ("raw", "averaged", "ema", "extrap"):
            assert a[name]["values"]["tv"] == pytest.approx(b[name]["values"]["tv"], abs=1e-5)
        # the periodic evaluation lines match too (same steps, same losses)
        la, lb = runs.read_metrics(dirs[i]), runs.read_metrics(sep)
        assert [r["step"] for r in la] == [r["step"] for r in lb] == [30, 60]
        assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], abs=1e-5)
    # a member's directory loads as a plain run, and its final metrics describe those weights
    model = runs.load_run(dirs[0], weights="ema")
    again = cfgs[0].make_task().evaluate(model, 64, cfgs[0].train.eval_seed)
    assert again.values["tv"] == pytest.approx(results[0].final["ema"].values["tv"], abs=1e-6)
    # dropout changed the trajectory of its member (same seed and data as member 0)
    assert (
        _max_diff(
            runs.load_weights(dirs[1] / runs.weights_file("raw")), runs.load_weights(dirs[0] / runs.weights_file("raw"))
        )
        > 1e-3
    )
    assert json.loads((dirs[1] / runs.CONFIG).read_text())["model"]["attn_dropout"] == 0.3


class _Site(torch.nn.Module):
    """One dropout site reading its member's rates from the ensemble's buffer."""

    def __init__(self):
        super().__init__()
        self.register_buffer(RATES, torch.zeros(3), persistent=False)
        self.hook = _dropout_hook(self, 1)

    def forward(self, x):
        return self.hook(x, None)


def _check_member_rates(mapped) -> None:
    p = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.25, 0.0], [0.0, 0.5, 0.0]])
    out = mapped(torch.ones(3, 200_000), p)
    for i, rate in enumerate((0.0, 0.25, 0.5)):
        dropped = float((out[i] == 0).float().mean())
        assert dropped == pytest.approx(rate, abs=0.005)
        kept = out[i][out[i] != 0]
        assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - rate)))
    # members draw different masks
    assert not torch.equal(out[1] == 0, mapped(torch.ones(3, 200_000), p)[2] == 0)


def test_last_step_evaluation_is_the_final_one(tmp_path, monkeypatch):
    """At the last step the ensemble and the single trainer evaluate once, on ``final_eval_sets``:
    metrics.jsonl's last line and final_metrics.json are that one evaluation. TINY evaluates at
    steps 30 and 60 (``eval_every`` 30 of 60): two evaluations of each of the 4 weight sets
    (raw, BEMA, EMA, extrapolation) per run, where an extra final one would make three."""
    from training.tasks.set_complement.task import SetComplementTask

    calls = []
    real = SetComplementTask.evaluate

    def counting(self, model, n=2048, seed=0, logit_scale=1.0):
        calls.append(n)
        return real(self, model, n, seed, logit_scale)

    monkeypatch.setattr(SetComplementTask, "evaluate", counting)
    cfgs = [tiny(f"train.seed={s}") for s in (0, 1)]
    dirs = [runs.prepare_run(tmp_path / f"m{i}", c) for i, c in enumerate(cfgs)]
    assert all(r.error is None for r in train_ensemble(cfgs, dirs, progress=False))
    sep = runs.prepare_run(tmp_path / "sep", cfgs[0])
    train(cfgs[0], sep, progress=False)
    # 3 runs x 4 weight sets: 32 sets per length at step 30, the final 64 at step 60
    assert sorted(calls) == [32] * 12 + [64] * 12
    for d in [*dirs, sep]:
        lines, final = runs.read_metrics(d), runs.read_final_metrics(d)
        assert [r["step"] for r in lines] == [30, 60] and final["step"] == 60
        assert lines[0]["raw"]["sets_per_length"] == 32
        assert {k: v for k, v in lines[-1].items() if k in final and k != "step"} == {
            k: v for k, v in final.items() if k != "step"
        }
        assert final["raw"]["sets_per_length"] == 64


def test_dropout_hook_uses_each_members_rate():
    """Under vmap each member drops its own fraction and rescales the rest by 1/(1-p)."""
    site = _Site()
    _check_member_rates(vmap(lambda x, r: functional_call(site, {RATES: r}, (x,)), randomness="different"))


def test_compiled_ensemble_matches_separate_run_and_keeps_member_rates(tmp_path, capsys, monkeypatch):
    """``train.compile``: the compiled step trains a dropout-free member as its separate (eager)
    run does, and inside the compiled graph each member still drops its own fraction. A second
    ensemble in the same process (another loss range, data and batch size) compiles a second
    static graph and must still read its own model, task and batches."""
    real_compile, statics = torch.compile, []

    def recording(fn, **kwargs):
        statics.append(kwargs.get("dynamic"))
        return real_compile(fn, **kwargs)

    monkeypatch.setattr(torch, "compile", recording)
    for k, extra in enumerate([[], ["task.train_min_len=2", "train.batch_size=24"]]):
        steps = ["train.steps=20", "train.eval_every=20", "train.checkpoint_every=20", *extra]
        cfgs = [
            tiny(*steps, "train.compile=true", f"train.seed={s}", f"model.attn_dropout={p}")
            for s, p in ((0, 0.0), (1, 0.3))
        ]
        dirs = [runs.prepare_run(tmp_path / f"m{k}{i}", c) for i, c in enumerate(cfgs)]
        assert all(r.error is None for r in train_ensemble(cfgs, dirs, progress=False))
        assert "training eagerly" not in capsys.readouterr().err  # the compiled step ran, no fallback
        sep = runs.prepare_run(tmp_path / f"sep{k}", tiny(*steps, "train.seed=0"))
        train(tiny(*steps, "train.seed=0"), sep, progress=False)
        assert _max_diff(*(runs.load_weights(d / runs.weights_file("raw")) for d in (dirs[0], sep))) < 2e-4, k
    assert statics == [False, False]  # one static graph per shape (batch 16, then 24)
    site = _Site()
    _check_member_rates(
        torch.compile(vmap(lambda x, r: functional_call(site, {RATES: r}, (x,)), randomness="different"))
    )


def test_diverged_member_is_failed_and_leaves_others_untouched(tmp_path):
    cfgs = [tiny("train.seed=0"), tiny("train.seed=1")]
    both = EnsembleTrainer(cfgs, [tmp_path / "a", tmp_path / "b"])
    alone = EnsembleTrainer(cfgs[:1], [tmp_path / "c"])
    with torch.no_grad():
        both.params["unembed.W_U"][1, 0, 0] = float("nan")
    for _ in range(12):
        losses = both.train_step()
        alone.train_step()
    both.check_finite(losses)
    assert list(both.errors) == [1] and "non-finite" in both.errors[1]
    for k in both.params:  # finite, and equal up to the rounding of a batch of 2 against 1
        assert torch.isfinite(both.params[k][0]).all(), k
        assert torch.allclose(both.params[k][0], alone.params[k][0], atol=1e-4), k


def test_train_ensemble_reports_failed_member(tmp_path, monkeypatch):
    cfgs = [tiny("train.seed=0"), tiny("train.seed=1")]
    dirs = [runs.prepare_run(tmp_path / f"m{i}", c) for i, c in enumerate(cfgs)]
    original = EnsembleTrainer.__init__

    def poisoned(self, *a, **k):
        original(self, *a, **k)
        with torch.no_grad():
            self.params["embed.W_E"][1].fill_(float("inf"))

    monkeypatch.setattr(EnsembleTrainer, "__init__", poisoned)
    res = train_ensemble(cfgs, dirs, progress=False)
    assert res[0].error is None and res[0].final is not None
    assert res[1].final is None and "step 10" in res[1].error
    assert not (dirs[1] / runs.FINAL).exists() and (dirs[0] / runs.FINAL).exists()


def test_members_must_share_everything_else():
    with pytest.raises(ConfigError, match="'train'"):
        check_members([tiny(), tiny("train.lr=0.01")])
    with pytest.raises(ConfigError, match="'model'"):
        check_members([tiny(), tiny("model.d_model=32")])
    with pytest.raises(ConfigError, match="'task'"):
        check_members([tiny(), tiny("task.v=11")])
    check_members([tiny(), tiny("train.seed=4", "model.attn_dropout=0.2", "task.target=exact")])


def test_target_loss_equals_each_tasks_own_loss():
    """The set task's cross-entropy against its precomputed target (one-hot next items, p*) gives
    each target's own loss (``loss`` gathers the sampled item and builds p* itself)."""
    from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask

    tasks = [
        SetComplementTask(SetComplementConfig(v=9, train_min_len=2, train_max_len=5, target=t))
        for t in ("exact", "sampled")
    ]
    batch = tasks[0].sample_batch(40, generator=torch.Generator().manual_seed(3))
    logits = torch.randn(40, 5, 9, generator=torch.Generator().manual_seed(4)) * 3
    for task in tasks:
        target = task.loss_target(batch)
        assert target.shape == (40, 4, 9) and torch.allclose(target.sum(-1), torch.ones(40, 4))
        assert float(tasks[0].target_loss(logits, batch, target)) == pytest.approx(
            float(task.loss(logits, batch)), abs=1e-6
        )


def test_task_without_loss_target_uses_each_members_own_loss(tmp_path, monkeypatch):
    """A task whose loss has no precomputable target (``loss_target`` None, the base default):
    every member computes every task's loss and keeps its own, and still matches its separate run."""
    from training.tasks.base import Task
    from training.tasks.set_complement.task import SetComplementTask

    cfgs = [tiny("train.steps=20", "train.eval_every=20", f"task.target={t}") for t in ("sampled", "exact")]
    dirs = [runs.prepare_run(tmp_path / f"m{i}", c) for i, c in enumerate(cfgs)]
    monkeypatch.setattr(SetComplementTask, "loss_target", Task.loss_target)
    train_ensemble(cfgs, dirs, progress=False)
    monkeypatch.undo()
    for i, cfg in enumerate(cfgs):
        sep = runs.prepare_run(tmp_path / f"sep{i}", cfg)
        train(cfg, sep, progress=False)
        assert _max_diff(*(runs.load_weights(d / runs.weights_file("raw")) for d in (dirs[i], sep))) < 2e-4, i


def test_post_norm_member_equals_its_separate_run(tmp_path):
    """The post-norm LayerNorms live on the blocks and act through hooks: under functional_call
    they must read each member's own weights."""
    cfgs = [tiny("model.normalization=LN", "model.norm_position=post", f"train.seed={s}") for s in (0, 1)]
    dirs = [runs.prepare_run(tmp_path / f"m{i}", c) for i, c in enumerate(cfgs)]
    train_ensemble(cfgs, dirs, progress=False)
    sep = runs.prepare_run(tmp_path / "sep", cfgs[1])
    train(cfgs[1], sep, progress=False)
    mine, theirs = (runs.load_weights(d / runs.weights_file("raw")) for d in (dirs[1], sep))
    assert "blocks.0.ln_post_attn.w" in mine and _max_diff(mine, theirs) < 2e-4


def test_bf16_runs_the_training_forward_in_bf16_and_keeps_weights_and_evaluation_fp32(tmp_path):
    """``train.bf16`` on a CPU: the attention scores the training step computes are bf16 (seen by a
    hook on the template the mapped forward runs), the evaluation's are fp32, the weights stay fp32,
    and the first step's loss moves from the fp32 ensemble's by bf16 rounding only: at most 0.02
    nats (bf16 keeps 8 significant bits, ~0.4% per operation), yet not zero."""
    from training.trainer import bf16_autocast

    cpu = torch.device("cpu")
    a = torch.randn(4, 4)
    with bf16_autocast(True, cpu):
        assert (a @ a).dtype == torch.bfloat16
    with bf16_autocast(False, cpu):
        assert (a @ a).dtype == torch.float32

    first = {}
    for bf16 in (False, True):
        cfgs = [tiny(f"train.seed={s}", f"train.bf16={str(bf16).lower()}") for s in (0, 1)]
        dirs = [runs.prepare_run(tmp_path / f"{bf16}{i}", c) for i, c in enumerate(cfgs)]
        ens = EnsembleTrainer(cfgs, dirs)
        seen = []
        ens.template.blocks[0].attn.hook_attn_scores.add_hook(lambda x, hook, s=seen: s.append(x.dtype))
        first[bf16] = ens.train_step()
        ens.train_step()
        assert set(seen) == {torch.bfloat16 if bf16 else torch.float32}
        assert all(p.dtype == torch.float32 for p in ens.params.values())
        assert all(p.isfinite().all() for p in ens.params.values())
        seen_eval = []
        ens.eval_model.blocks[0].attn.hook_attn_scores.add_hook(lambda x, hook, s=seen_eval: s.append(x.dtype))
        ens.evaluate(0, 8)
        assert set(seen_eval) == {torch.float32}
    diff = (first[True] - first[False]).abs()
    assert first[False].dtype == torch.float32 and 0 < diff.max() < 0.02, diff


def test_bf16_cuda_setting_is_fp32_on_a_cpu_and_bad_values_are_one_line_errors(tmp_path):
    """``train.bf16="cuda"`` (the othello_full preset's) autocasts on CUDA only: on a CPU the
    training forward's matmuls stay fp32 and the run's weights equal the fp32 run's bit for bit;
    a value other than true, false or "cuda" is a ConfigError naming the key."""
    from training.trainer import bf16_autocast

    a = torch.randn(4, 4)
    with bf16_autocast("cuda", torch.device("cpu")):
        assert (a @ a).dtype == torch.float32
    assert load_config(preset_path("othello_full")).train.bf16 == "cuda"
    weights = {}
    for setting in ("false", "cuda"):
        cfg = tiny(f"train.bf16={setting}", "train.steps=5", "train.checkpoint_every=5")
        d = runs.prepare_run(tmp_path / setting, cfg)
        train(cfg, d, progress=False)
        weights[setting] = runs.load_weights(d / runs.weights_file("raw"))
    assert _max_diff(weights["false"], weights["cuda"]) == 0
    for bad in ("yes", "bf16"):
        with pytest.raises(ConfigError, match='train.bf16 must be true, false or "cuda"'):
            tiny(f"train.bf16={bad}")
    with pytest.raises(ConfigError, match="train.bf16 must be true or false or a string, got 1"):
        tiny("train.bf16=1")  # the type check names every form the union allows


def test_bf16_single_run_trains_with_fp32_weights_near_the_fp32_run(tmp_path):
    """The single trainer's ``train.bf16`` on a CPU trains to a loss near the fp32 run's (same
    seed, same data), with fp32 weights, and its weights differ from the fp32 run's (bf16 took part)."""
    losses, weights = {}, {}
    for bf16 in (False, True):
        cfg = tiny(f"train.bf16={str(bf16).lower()}", "train.steps=30", "train.checkpoint_every=30")
        d = runs.prepare_run(tmp_path / str(bf16), cfg)
        train(cfg, d, progress=False)
        losses[bf16] = runs.read_metrics(d)[-1]["loss"]
        weights[bf16] = runs.load_weights(d / runs.weights_file("raw"))
    assert all(w.dtype == torch.float32 for w in weights[True].values() if w.is_floating_point())
    assert losses[True] == pytest.approx(losses[False], abs=0.05)
    assert _max_diff(weights[True], weights[False]) > 1e-5
