"""The Task interface and its registry: a third task needs only its own class and one registry line,
and then trains, evaluates, saves and reloads through the same trainer and commands."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from training import runs
from training.config import load_config
from training.errors import ConfigError
from training.metrics import LengthMetrics
from training.scoped import eval_mode, model_device
from training.tasks import registry
from training.tasks.base import Task, TaskShape
from training.trainer import train


@dataclass
class CopyConfig:
    """Predict the token just read (a task every model learns at once)."""

    v: int = 6
    length: int = 8
    train_len: int = 4

    def validate(self) -> None:
        if self.v < 2:
            raise ConfigError(f"copy.v must be at least 2, got {self.v}")


@dataclass
class CopyBatch:
    tokens: torch.Tensor


class CopyTask(Task):
    metric_names = ("acc",)
    table_metrics = ("acc",)

    @classmethod
    def shape(cls, cfg):
        return TaskShape(cfg.v, cfg.v, cfg.length, (1, cfg.train_len), f"copy length {cfg.length}")

    def __init__(self, cfg):
        self.cfg = cfg

    def sample_batch(self, batch_size, generator=None, device="cpu", max_len=None):
        n = max_len or self.cfg.train_len
        return CopyBatch(torch.randint(0, self.cfg.v, (batch_size, n), generator=generator, device=device))

    def loss(self, logits, batch):
        return F.cross_entropy(logits.flatten(0, 1), batch.tokens.flatten())

    @torch.no_grad()
    def evaluate(self, model, n, seed=0):
        gen = torch.Generator().manual_seed(seed)
        batch = self.sample_batch(n, gen, max_len=self.cfg.length)
        with eval_mode(model):
            pred = model(batch.tokens.to(model_device(model))).argmax(-1).cpu()
        acc = (pred == batch.tokens).float().mean(0)
        return LengthMetrics(list(range(1, self.cfg.length + 1)), (1, self.cfg.train_len), n, {"acc": acc.tolist()})


@pytest.fixture
def copy_task(monkeypatch):
    monkeypatch.setitem(registry.TASKS, "copy", registry.TaskEntry("copy", CopyConfig, CopyTask))


def test_a_third_task_trains_through_the_registry(copy_task, tmp_path):
    over = [
        "kind=copy",
        "copy.v=6",
        "model.d_model=16",
        "model.d_head=8",
        "model.positional=learned",
        "train.steps=60",
        "train.lr=1e-2",
        "train.eval_every=30",
        "train.checkpoint_every=30",
        "train.eval_sets=64",
        "train.final_eval_sets=128",
        "train.device=cpu",
    ]
    cfg = load_config(None, over)
    assert cfg.task_config == CopyConfig(v=6) and cfg.n_ctx() == 8 and cfg.vocab() == (6, 6)
    run = runs.create_run_dir(tmp_path / "run", cfg)
    result = train(cfg, run, progress=False)
    assert result.final["raw"].summary()["in_range"]["acc"] > 0.9  # copying is learned
    assert runs.read_run_config(run).to_dict() == cfg.to_dict()
    model = runs.load_run(run, "raw")
    assert CopyTask(cfg.task_config).evaluate(model, 128, cfg.train.eval_seed).values == result.final["raw"].values


def test_unknown_kind_and_missing_section_are_one_line_errors(copy_task):
    with pytest.raises(
        ConfigError, match="kind must be one of 'set_complement', 'othello', 'formal_language', 'copy', got 'chess'"
    ):
        load_config(None, ["kind=chess"])
    with pytest.raises(ConfigError, match="kind 'othello' needs an 'othello' section"):
        load_config(None, ["kind=othello"])


def test_context_check_names_the_task(copy_task):
    with pytest.raises(ConfigError, match="copy length 8 needs a context of 8, but model.n_ctx is 4"):
        load_config(None, ["kind=copy", "copy.v=6", "model.n_ctx=4"])


def test_partial_config_file_takes_defaults_for_the_rest(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"train": {"steps": 5}}')
    cfg = load_config(path, ["task.v=16"])  # the task section is absent from the file
    assert cfg.task.v == 16 and cfg.train.steps == 5 and cfg.model.d_model == 64
