"""Optimizers, schedules and adaptive batch sizes selected through a method's config (issue 5)."""

import pytest

from lifelong.data import make_blobs
from lifelong.errors import ConfigError
from lifelong.evaluation import run
from lifelong.methods import make_learner
from lifelong.scenarios import class_incremental


@pytest.fixture
def stream():
    return class_incremental(make_blobs(num_classes=4, per_class=60, dim=8, seed=0), tasks=2, seed=0)


def test_lamb_and_adagradnorm_selectable(stream):
    for opt, lr in (("lamb", "0.02"), ("adagradnorm", "0.5")):
        learner = make_learner("finetune", {"optimizer": opt, "lr": lr, "epochs": "5", "hidden": "16"})
        r = run(stream, learner, progress=False)
        assert type(learner.optimizer).__name__.lower().startswith(opt[:4])
        assert r.accuracy_matrix[0, 0] > 0.75  # two classes: chance is 0.5


def test_linear_schedule_decays_to_zero_each_experience(stream):
    learner = make_learner(
        "finetune",
        {"lr_schedule": "linear", "warmup_steps": "2", "epochs": "1", "hidden": "16", "reset_optimizer": "false"},
    )
    learner.learn(stream[0])
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.0)
    learner.learn(stream[1])  # a new schedule per experience: no "more steps than built for"
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.0)


def test_adaptive_batch_grows_and_takes_fewer_steps(stream):
    fixed = make_learner("finetune", {"batch_size": "4", "epochs": "3", "hidden": "16"})
    grow = make_learner(
        "finetune", {"batch_size": "4", "epochs": "3", "hidden": "16", "optimizer": "sgd+norm_test:eta=0.5"}
    )
    steps = {}
    for name, learner in (("fixed", fixed), ("grow", grow)):
        count = 0
        original = learner.train_step

        def counting(x, y, e, _orig=original):
            nonlocal count
            count += 1
            return _orig(x, y, e)

        learner.train_step = counting
        learner.learn(stream[0])
        steps[name] = count
    assert steps["grow"] < steps["fixed"]


def test_bad_schedule_or_batch_test():
    with pytest.raises(ConfigError, match="lr_schedule"):
        make_learner("finetune", {"lr_schedule": "refined"})
    with pytest.raises(ConfigError, match="unknown optimizer component 'magic'"):
        make_learner("er", {"optimizer": "sgd+magic"})
    with pytest.raises(ConfigError, match="norm_test takes eta=..., max_batch_size=...; got 'theta=1'"):
        make_learner("er", {"optimizer": "sgd+norm_test:theta=1"})
    with pytest.raises(ConfigError, match="eta must be a number > 0"):
        make_learner("er", {"optimizer": "sgd+norm_test:eta=-1"})
    with pytest.raises(ConfigError, match="max_batch_size must be an integer"):
        make_learner("er", {"optimizer": "sgd+inner_product_test:max_batch_size=1.5"})
    with pytest.raises(ConfigError, match="needs batch_size >= 2 and max_batch_size >= batch_size"):
        make_learner("er", {"optimizer": "sgd+norm_test:max_batch_size=8", "batch_size": 16})
    with pytest.raises(ConfigError, match="does not apply; use optimizer=sgd"):
        make_learner("aper", {"optimizer": "sgd+norm_test"})
    with pytest.raises(ConfigError, match="unknown optimizer 'sgdd'"):
        make_learner("er", {"optimizer": "sgdd+norm_test"})


def test_the_spec_builds_the_controller_with_its_options():
    from lifelong.optim import InnerProductTestBatchController, NormTestBatchController
    from lifelong.optim.spec import parse_optimizer_spec

    assert parse_optimizer_spec("adam").batch_controller(8, 100) is None
    c = parse_optimizer_spec("sgd+norm_test:eta=0.25,max_batch_size=64").batch_controller(8, 100)
    assert isinstance(c, NormTestBatchController) and c.eta == 0.25 and c.max_batch_size == 64
    c = parse_optimizer_spec("sgd+inner_product_test").batch_controller(8, 50)
    assert isinstance(c, InnerProductTestBatchController) and c.max_batch_size == 50 and c.theta == 0.5
