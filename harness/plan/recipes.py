"""The seeds' recipes as named presets, with the figure each seed published.

    python -m harness.run --recipe force-of-mlp            every framework, the seed's setting
    python -m harness.run --recipe mnist-study --epochs 100   the seed's full length

Where a recipe differs from its seed, `deviations` says how and why; the report puts
our numbers next to `published`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.plan.errors import HarnessError
from harness.plan.spec import DataSpec, Hyper


@dataclass(frozen=True)
class Recipe:
    name: str
    seed: str  # the seed document it comes from
    data: DataSpec
    runs: tuple[tuple[str, Hyper], ...]  # (model, recipe) pairs
    metric: str  # which accuracy the seed reported: test_accuracy or val_accuracy
    published: dict[str, float] = field(default_factory=dict)  # model -> the seed's figure
    published_by: str = ""
    deviations: str = ""


def _adam(lr, batch, epochs):
    return Hyper(optimizer="adam", lr=lr, batch_size=batch, epochs=epochs)


def _sgd(lr, momentum, batch, epochs):
    return Hyper(optimizer="sgd", lr=lr, momentum=momentum, batch_size=batch, epochs=epochs)


STUDY_SGD = _sgd(0.001, 0.01, 12, 5)
SUBSET_ADAM_LR = {"logistic": 0.01, "mlp30": 0.005}  # seed 004's two train() calls
SUBSET_SGD = _sgd(0.1, 0.9, 64, 3)  # seed 004's train() defaults

RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("vanangamudi", "000", DataSpec("tiny5x5"),
           runs=(("toy25", _sgd(1.0, 0.1, 1, 12)),), metric="test_accuracy",  # train = test here
           published={"toy25": 1.0}, published_by="PyTorch: 10/10 correct by epoch 12",
           deviations="log-softmax + NLL on logits is the same loss as softmax cross-entropy"),
    Recipe("mnist-study", "001", DataSpec("mnist"),
           runs=tuple((f"study{i}", STUDY_SGD) for i in range(11)), metric="test_accuracy",
           published=dict(zip((f"study{i}" for i in range(11)),
                              (0.925, 0.901, 0.9121, 0.9189, 0.9237, 0.9267, 0.9251, 0.9244,
                               0.924, 0.9253, 0.9232))),
           published_by="PyTorch, 100 epochs",
           deviations="5 epochs by default, not the seed's 100 (--epochs 100 for the full run)"),
    Recipe("force-of-mlp", "002", DataSpec("mnist", test_val=2000),
           runs=(("mlp", _adam(1e-3, 32, 5)),), metric="test_accuracy",
           published={"mlp": 0.97975}, published_by="Keras 2, test accuracy on 8000 rows",
           deviations="Adam in the torch/optax form (eps 1e-8) everywhere, canonical init"),
    Recipe("three-vs-seven", "003", DataSpec("mnist", classes=(3, 7)),
           runs=(("logistic", _sgd(1.0, 0.0, 256, 20)), ("mlp30", _sgd(1.0, 0.0, 256, 20))),
           metric="test_accuracy", published={"logistic": 0.9348, "mlp30": 0.9602},
           published_by="fastai book style, plain SGD lr 1, validation accuracy after 20 epochs",
           deviations="two-way softmax cross-entropy instead of the seed's sigmoid mnist_loss"),
    Recipe("small-subset", "004", DataSpec("mnist", train_rows=2000, val_rows=500),
           runs=(("logistic", _adam(SUBSET_ADAM_LR["logistic"], 64, 3)),
                 ("mlp30", _adam(SUBSET_ADAM_LR["mlp30"], 64, 3)),
                 ("logistic", SUBSET_SGD), ("mlp30", SUBSET_SGD), ("cnn", SUBSET_SGD)),
           metric="val_accuracy", published={}, published_by="the seed plots curves, no figure"),
]}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise HarnessError(f"unknown recipe {name!r}; valid recipes: {', '.join(RECIPES)}")
    return RECIPES[name]
