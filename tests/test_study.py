"""The paired study command: arms, storage, workers, kill -9 recovery, failures per arm, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from commands.train import main
from training.config import preset_path
from training.errors import ConfigError
from training.experiments.study import (
    arm_config,
    arms,
    check_spec,
    compiled_spec,
    completed_records,
    draw_configs,
    load_spec,
    open_study,
    run_study,
    with_steps,
)
from training.scoped import optuna_quiet

ROOT = Path(__file__).resolve().parents[1]


def tiny_spec(tmp_path, steps: int = 40, n_configs: int = 2, **changes) -> Path:
    spec = load_spec(preset_path("study_quick"))
    spec["fixed"] = [
        f for f in spec["fixed"] if not f.startswith(("train.steps", "train.eval_every", "train.checkpoint_every"))
    ]
    spec["fixed"] += [
        f"train.steps={steps}",
        f"train.eval_every={steps}",
        f"train.checkpoint_every={steps}",
        "train.final_eval_sets=64",
    ]
    spec.update(n_configs=n_configs, measure_sets=32, **changes)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_quick_spec_is_valid_and_draws_are_reproducible():
    spec = load_spec(preset_path("study_quick"))
    assert draw_configs(spec) == draw_configs(spec)
    assert len(arms(spec)) == len(spec["seeds"]) * len(spec["dropouts"]) * len(spec["targets"])
    default = load_spec(preset_path("study_default"))
    assert set(default["dropouts"]) == {0.0, 0.1, 0.2, 0.3} and set(default["targets"]) == {"sampled", "exact"}
    remedies = load_spec(preset_path("study_remedies"))
    assert {"baseline", "prenorm", "prenorm_nofinal", "postnorm", "ssmax", "out_rescale"} == set(remedies["variants"])
    control = load_spec(preset_path("study_ema_control"))
    assert control["variants"]["anneal"] == ["train.min_lr_ratio=0"] and control["dropouts"] == [0.0]


def test_formal_remedies_preset_pairs_the_suite_model_with_the_remedies_on_the_same_configs():
    remedies = load_spec(preset_path("study_formal_remedies"))
    formal = load_spec(preset_path("study_formal"))
    # the same configs and region as the formal study, so its claims and these sit side by side
    assert draw_configs(remedies) == draw_configs(formal) and remedies["region"] == formal["region"]
    values = draw_configs(remedies)[0]
    cfg = {a.variant: arm_config(remedies, values, a) for a in arms(remedies) if a.seed == 0 and a.target == "sampled"}
    assert set(cfg) == {"baseline", "postnorm", "out_rescale"}
    assert cfg["baseline"].model.normalization == "LN" and cfg["baseline"].model.norm_position == "pre"
    assert cfg["postnorm"].model.norm_position == "post" and cfg["postnorm"].model.out_rescale_len is None
    # rescaling starts past the most positions a query attends to in training: BOS plus the longest word
    assert cfg["out_rescale"].model.out_rescale_len == 1 + cfg["baseline"].task_config.train_max_len
    assert {a.dropout for a in arms(remedies)} == {0.0}  # the remedy family is measured at dropout 0


def test_with_steps_replaces_every_step_setting_and_the_preset_still_checks():
    """``with_steps`` drops the file's own step settings (not just overrides them) and trains,
    evaluates and checkpoints at the new count; a real preset shrunk with it passes the checks and
    its arms train that many steps."""
    spec = {"fixed": ["train.steps=900", "model.d_model=16", "train.eval_every=300", "train.checkpoint_every=9"]}
    assert with_steps(spec, 40)["fixed"] == [
        "model.d_model=16",
        "train.steps=40",
        "train.eval_every=40",
        "train.checkpoint_every=40",
    ]
    assert spec["fixed"][0] == "train.steps=900"  # the caller's file is left alone
    quick = with_steps(load_spec(preset_path("study_quick")), 40)
    check_spec(quick, "shrunk study")
    cfg = arm_config(quick, draw_configs(quick)[0], arms(quick)[0])
    assert (cfg.train.steps, cfg.train.eval_every, cfg.train.checkpoint_every) == (40, 40, 40)


def test_strata_balance_the_draws_in_permuted_blocks():
    spec = load_spec(preset_path("study_quick"))
    spec["n_configs"] = 8
    plain = draw_configs(spec)
    spec["strata"] = ["train.batch_size"]
    check_spec(spec, "spec")  # a valid study file: 8 configs fill the 2 cells equally
    balanced = draw_configs(spec)
    # every block of two configs holds each batch size once; the other parameters are the
    # unstratified draws
    for start in range(0, 8, 2):
        assert sorted(c["train.batch_size"] for c in balanced[start : start + 2]) == [32, 64]
    assert [c["train.lr"] for c in balanced] == [c["train.lr"] for c in plain]
    assert draw_configs(spec) == balanced
    assert load_spec(preset_path("study_default"))["strata"] == ["model.n_heads"]


def test_configs_are_queued_costliest_first(tmp_path):
    """Cost by hand: the demo model (1 layer, attention only, d_model 32, 1 head of d_head 16 in
    the quick study, 12 output items) costs 4*32*1*16 + 32*12 = 2432 per token, times steps and
    batch size; the queue runs the batch-64 configs before the batch-32 ones."""
    from training.experiments.study import config_cost

    spec = load_spec(preset_path("study_quick"))
    assert config_cost(spec, {"train.lr": 0.005, "train.batch_size": 32}) == 200 * 32 * (4 * 32 * 16 + 32 * 12)
    assert config_cost(spec, {"train.lr": 0.001, "train.batch_size": 64}) == 2 * config_cost(
        spec, {"train.lr": 0.005, "train.batch_size": 32}
    )
    out = tmp_path / "st"
    # balanced over batch size, so the draw interleaves 32 and 64 and the queue must reorder it
    run_study(out, tiny_spec(tmp_path, steps=2, n_configs=4, strata=["train.batch_size"]), workers=1, progress=False)
    _, configs, study = open_study(out)
    order = [
        configs[t.params["config"]]["train.batch_size"] for t in sorted(study.get_trials(), key=lambda t: t.number)
    ]
    assert order == [64, 64, 32, 32] != [c["train.batch_size"] for c in configs], (order, configs)


def test_two_workers_train_every_config_once(tmp_path):
    out = tmp_path / "st"
    from interp.set_complement.dispersion import study_measures

    s = run_study(out, tiny_spec(tmp_path, n_configs=3), workers=2, progress=False, measures=study_measures)
    assert s["completed"] == 3 and s["failed_configs"] == 0 and s["arms"] == 3 * 8
    spec, configs, study = open_study(out)
    records = completed_records(study)
    assert sorted({r["config"] for r in records}) == [0, 1, 2]
    assert len(records) == len({(r["config"], r["seed"], r["dropout"], r["target"]) for r in records}) == 24
    for r in records:  # every arm's directory holds its weights and measures for every average
        assert (out / r["run_dir"] / "weights_extrap.safetensors").is_file()
        assert set(r["weights"]) == {"raw", "ema", "bema", "extrap"}
        assert {"tv", "cal_tv", "norm_entropy", "margin_law"} <= set(r["weights"]["bema"]["summary"]["beyond"])
    # arms of one config and seed share initialisation: equal raw in-range TV at step 0 is not
    # observable, but the configs' arms.json files list every arm
    assert len(json.loads((out / "runs" / "c001" / "arms.json").read_text())["arms"]) == 8
    # resuming a finished study trains nothing more
    again = run_study(out, resume=True, progress=False)
    assert again["completed"] == 3 and len(open_study(out)[2].get_trials()) == len(study.get_trials())


def test_killed_worker_config_is_retried_and_nothing_is_duplicated(tmp_path):
    out = tmp_path / "st"
    env = {**os.environ, "WM_SWEEP_HEARTBEAT_S": "1", "WM_SWEEP_GRACE_S": "3"}
    spec = tiny_spec(tmp_path, steps=4000, n_configs=2)
    # two worker processes: killing the command must also end them (no orphan keeps training)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training",
            "study",
            "--out",
            str(out),
            "--spec",
            str(spec),
            "--quiet",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        if (out / "study.json").exists() and any(
            t.state == TrialState.RUNNING for t in open_study(out)[2].get_trials()
        ):
            break
        time.sleep(0.3)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = [t.params["config"] for t in open_study(out)[2].get_trials() if t.state == TrialState.RUNNING]
    assert killed, "no config was running when the worker was killed"
    # make the retry fast: same design, fewer steps
    meta = json.loads((out / "study.json").read_text())
    meta["spec"]["fixed"] = [
        f.replace("train.steps=4000", "train.steps=40").replace("=4000", "=40") for f in meta["spec"]["fixed"]
    ]
    (out / "study.json").write_text(json.dumps(meta))
    done = subprocess.run(
        [sys.executable, "-m", "training", "study", "--resume", str(out), "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    study = open_study(out)[2]
    trials = study.get_trials()
    states = [(t.number, t.params.get("config"), t.state.name, t.user_attrs.get("error")) for t in trials]
    assert done.returncode == 0, (done.stderr[-1500:], states)
    assert "completed configs: 2 of 2" in done.stdout, (done.stdout, done.stderr[-1500:], states)
    complete = [t.params["config"] for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(complete) == [0, 1], states  # each config completed exactly once
    assert all(
        t.state == TrialState.FAIL
        for t in trials
        if t.params.get("config") in killed
        and t.number < min(u.number for u in trials if u.state == TrialState.COMPLETE and u.params["config"] in killed)
    )
    assert len(completed_records(study)) == 16


def test_failures_are_counted_per_arm(tmp_path, monkeypatch, capsys):
    """Arms with dropout diverge (planted); they are counted, the other arms are analysed."""
    from training import ensemble

    original = ensemble.EnsembleTrainer.__init__

    def poisoned(self, cfgs, run_dirs):
        original(self, cfgs, run_dirs)
        with torch.no_grad():
            for i, c in enumerate(cfgs):
                if c.model.attn_dropout > 0:
                    self.params["embed.W_E"][i].fill_(float("nan"))

    monkeypatch.setattr(ensemble.EnsembleTrainer, "__init__", poisoned)
    assert (
        main(["study", "--out", str(tmp_path / "st"), "--spec", str(tiny_spec(tmp_path)), "--quiet", "--workers", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "failed arms with dropout 0.2, sampled: 4" in out and "failed arms with dropout 0.2, exact: 4" in out
    from interp.analysis.study_report import study_report

    result = study_report(tmp_path / "st", n_boot=200)
    assert result["failures"]["dropout 0.2, sampled"] == {"failed": 4, "of": 4}
    assert result["failures"]["dropout 0, exact"] == {"failed": 0, "of": 4}
    # a post hoc re-analysis within strata says so; a parameter that is not a sampled choice is
    # a one-line error
    from commands.interp import main as interp_main

    assert interp_main(["study-report", str(tmp_path / "st"), "--boot", "200", "--strata", "train.batch_size"]) == 0
    assert "within strata of train.batch_size (POST HOC" in capsys.readouterr().out
    assert interp_main(["study-report", str(tmp_path / "st"), "--strata", "train.lr"]) == 2
    err = capsys.readouterr().err
    assert "'train.lr' is not a sampled choice parameter" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "change, words",
    [
        ({"dropouts": [0.1, 0.2]}, "must include 0"),
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"params": {"train.seed": {"type": "int", "low": 0, "high": 3}}}, "set by the study's arms"),
        ({"targets": ["noisy"]}, "targets must be a non-empty list"),
        ({"delta": 0}, "delta"),
        ({"deltas": {"bogus": 0.1}}, "'bogus' is not a measure the study records"),
        ({"deltas": {"tv": 2}}, "deltas.tv must be in (0, 1)"),
        ({"deltas": []}, "deltas must map claim measures"),
        ({"interval": "bca"}, "interval must be 'bootstrap' or 't'"),
        ({"averagers": []}, "averagers is empty"),
        ({"params": {"train.lr": {"type": "loguniform", "low": -1, "high": 1}}}, "must be positive"),
        ({"strata": ["train.lr"]}, "'train.lr' is not a sampled choice parameter"),
        ({"strata": ["train.batch_size"], "n_configs": 5}, "must be a multiple of the 2 strata cells"),
    ],
)
def test_bad_study_files_are_one_line_errors(tmp_path, capsys, change, words):
    spec = load_spec(preset_path("study_quick"))
    spec.update(change)
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    assert main(["study", "--out", str(tmp_path / "st"), "--spec", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "st").exists()  # nothing written


def test_compiled_spec_compiles_every_arm_and_draws_the_same_configs():
    spec = load_spec(preset_path("study_default"))
    compiled = compiled_spec({**spec, "fixed": spec["fixed"] + ["train.compile=false"]})  # a later setting wins
    assert draw_configs(compiled) == draw_configs(spec)
    values = draw_configs(spec)[0]
    for arm in arms(spec):
        assert arm_config(compiled, values, arm).train.compile is True
        assert arm_config(spec, values, arm).train.compile is False
    assert spec["fixed"] == load_spec(preset_path("study_default"))["fixed"]  # the caller's spec untouched


def test_study_command_errors(tmp_path, capsys):
    assert main(["study"]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    assert main(["study", "--resume", str(tmp_path)]) == 2
    assert "no study to resume" in capsys.readouterr().err
    assert main(["study", "--resume", str(tmp_path), "--compile"]) == 2
    assert "--compile applies to a new study" in capsys.readouterr().err
    from commands.interp import main as interp_main

    assert interp_main(["study-report", str(tmp_path)]) == 2
    assert "holds no study" in capsys.readouterr().err


def test_variants_that_change_the_model_train_as_their_own_ensembles(tmp_path):
    from interp.analysis.study_report import analyse

    variants = {
        "baseline": [],
        "postnorm": ["model.normalization=LN", "model.norm_position=post"],
        "ssmax": ["model.ssmax=true"],
    }
    spec = tiny_spec(tmp_path, n_configs=1, variants=variants, dropouts=[0.0], seeds=[0])
    s = run_study(tmp_path / "st", spec, workers=1, progress=False)
    assert s["completed"] == 1 and s["arms"] == 3 * 2
    records = completed_records(open_study(tmp_path / "st")[2])
    assert sorted({r["variant"] for r in records}) == ["baseline", "postnorm", "ssmax"]
    post = next(r for r in records if r["variant"] == "postnorm")
    assert post["run_dir"].endswith("postnorm_s0_p0_sampled") or post["run_dir"].endswith("postnorm_s0_p0_exact")
    from training import runs

    assert runs.read_run_config(tmp_path / "st" / post["run_dir"]).model.norm_position == "post"
    result = analyse(records, load_spec(spec), 1, n_boot=200)
    assert {e["contrast"] for e in result["effects"] if e["family"] == "remedy"} == {
        "postnorm - baseline",
        "ssmax - baseline",
    }
    from interp.analysis.study_report import plot_variant_lengths

    fig = plot_variant_lengths(records, load_spec(spec), 0)
    assert {line.get_label() for line in fig.axes[0].lines} >= {"baseline", "postnorm", "ssmax"}


def test_bad_variants_are_one_line_errors(tmp_path, capsys):
    spec = load_spec(preset_path("study_quick"))
    spec["variants"] = {"baseline": [], "broken": ["model.norm_position=post"]}
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    assert main(["study", "--out", str(tmp_path / "st"), "--spec", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "variants.broken" in err and "needs model.normalization" in err and err.count("\n") == 1
    spec["variants"] = {"fix": []}
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    assert main(["study", "--out", str(tmp_path / "st"), "--spec", str(tmp_path / "bad.json")]) == 2
    assert "one of them 'baseline'" in capsys.readouterr().err
    spec["variants"] = {"baseline": [], "fix": ["model.ssmax=true"]}
    for contrasts in ([["fix", "nope"]], [["fix", "fix"]], [["fix"]], "fix - baseline"):
        spec["contrasts"] = contrasts
        (tmp_path / "bad.json").write_text(json.dumps(spec))
        assert main(["study", "--out", str(tmp_path / "st"), "--spec", str(tmp_path / "bad.json")]) == 2
        err = capsys.readouterr().err
        assert "contrasts must be a list of [variant, variant] pairs" in err and err.count("\n") == 1


def test_arms_of_one_config_and_seed_share_initialisation_and_batches(tmp_path):
    """The pairing the analysis relies on: arms of one config train as one ensemble, and two arms
    start from the same weights and see the same batches exactly when they share a seed (dropout
    and target change the step, never the draw); targets differ exactly between sampled and exact."""
    from training.ensemble import EnsembleTrainer, ensemble_key

    spec = load_spec(tiny_spec(tmp_path))
    values = draw_configs(spec)[0]
    members = arms(spec)
    cfgs = [arm_config(spec, values, a) for a in members]
    assert len({json.dumps(ensemble_key(c), sort_keys=True) for c in cfgs}) == 1
    tr = EnsembleTrainer(cfgs, [tmp_path / a.name for a in members])
    fields, targets = tr._batches()
    for i, a in enumerate(members):
        for j, b in enumerate(members):
            same_init = all(torch.equal(p[i], p[j]) for p in tr.params.values())
            assert same_init == (a.seed == b.seed), (a, b)
            assert torch.equal(fields["tokens"][i], fields["tokens"][j]) == (a.seed == b.seed), (a, b)
            if a.seed == b.seed:
                assert torch.equal(targets[i], targets[j]) == (a.target == b.target), (a, b)


def test_a_config_queued_twice_runs_once(tmp_path, monkeypatch):
    """Two processes that notice a dead worker at once queue its config twice (a race seen in the
    kill -9 test); of the live copies only the lowest-numbered trial runs, the other is pruned."""
    import optuna

    from training.experiments.study import run as study_run

    ran = []

    def fake_run_config(study_dir, spec, index, values, measures, progress=False):
        ran.append(index)
        return [{"config": index, "error": None, "weights": {"raw": {"summary": {"in_range": {"tv": 0.1}}}}}]

    monkeypatch.setattr(study_run, "run_config", fake_run_config)
    with optuna_quiet():
        study = optuna.create_study(direction="minimize")
        for _ in range(2):  # the same config, queued twice
            study.enqueue_trial({"config": 0}, user_attrs={"config": 0})
        study.enqueue_trial({"config": 1}, user_attrs={"config": 1})
        study.optimize(study_run.objective_factory(tmp_path, {}, [{}, {}], None), n_trials=3)
    states = [(t.params["config"], t.state.name) for t in study.get_trials()]
    assert ran == [0, 1] and states == [(0, "COMPLETE"), (0, "PRUNED"), (1, "COMPLETE")]


def test_a_moved_study_folder_uses_its_own_database(tmp_path):
    """study.json names its SQLite file relative to the folder: a copy, moved away from the
    original (which is then deleted), resumes and reports from its own database."""
    import shutil

    out = tmp_path / "st"
    run_study(out, tiny_spec(tmp_path, steps=2, n_configs=1), workers=1, progress=False)
    assert json.loads((out / "study.json").read_text())["storage"] == "study.db"
    moved = tmp_path / "elsewhere" / "st2"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    spec, configs, study = open_study(moved)
    assert len(completed_records(study)) == 8 and not out.exists()
    again = run_study(moved, resume=True, progress=False)
    assert again["completed"] == 1 and not out.exists()  # nothing recreated at the old place


def test_a_scale_adds_its_fixed_settings_and_replaces_the_rest(tmp_path, capsys):
    from training.experiments.study.design import scaled_spec

    spec = load_spec(preset_path("study_quick"))
    spec["scales"] = {"big": {"fixed": ["train.steps=300", "model.d_model=48"], "n_configs": 3}}
    (tmp_path / "s.json").write_text(json.dumps(spec))
    big = load_spec(tmp_path / "s.json", "big")
    assert big["scale"] == "big" and "scales" not in big and big["n_configs"] == 3
    cfg = arm_config(big, draw_configs(big)[0], arms(big)[0])
    assert (cfg.train.steps, cfg.model.d_model, cfg.model.d_head) == (300, 48, 16)  # later wins; the rest kept
    # the committed Othello file's GPU scale is a valid study at the published shape
    gpu = load_spec(preset_path("study_othello"), "gpu")
    cfg = arm_config(gpu, draw_configs(gpu)[0], arms(gpu)[0])
    assert (cfg.model.n_layers, cfg.model.d_model, cfg.train.steps) == (8, 512, 5000)
    with pytest.raises(ConfigError, match="has no scale 'huge' \\(it has: big\\)"):
        scaled_spec(spec, "huge")
    # from the command line: an unknown scale, a scale with a key it may not change, a scale on
    # resume: one line each, nothing written
    spec["scales"]["bad"] = {"dropouts": [0.0]}
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    for argv, words in (
        (["--spec", str(tmp_path / "s.json"), "--scale", "huge"], "has no scale 'huge'"),
        (["--spec", str(tmp_path / "bad.json")], "scales.bad: a scale may not change 'dropouts'"),
    ):
        assert main(["study", "--out", str(tmp_path / "st"), *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
        assert not (tmp_path / "st").exists()
    assert main(["study", "--resume", str(tmp_path / "st"), "--scale", "big"]) == 2
    assert "--scale applies to a new study" in capsys.readouterr().err


def test_study_set_adds_fixed_settings_after_the_file(tmp_path, capsys):
    """--set adds 'section.key=value' after the study file's fixed settings (later wins), checked in
    full before anything is written; a resumed study keeps its file's settings."""
    spec = load_spec(preset_path("study_quick"), fixed=["task.v=24"])
    assert spec["fixed"][-1] == "task.v=24"
    assert arm_config(spec, draw_configs(spec)[0], arms(spec)[0]).task.v == 24
    for argv, words in (
        (["--set", "task.vv=3"], "unknown config key 'task.vv'"),
        (["--set", "task.v=1"], "task.v must be at least 2"),
    ):
        assert main(["study", "--out", str(tmp_path / "st"), "--quick", *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
        assert not (tmp_path / "st").exists()
    assert main(["study", "--resume", str(tmp_path / "st"), "--set", "task.v=24"]) == 2
    assert "--set applies to a new study" in capsys.readouterr().err
