"""The widths a written model takes from its ModelSpec, the same for every framework (no framework import).

Each framework's model classes take their widths as constructor arguments whose defaults are
the real model's, so that building on harness.plan.spec.shrunk(model) gives the same classes and
layers with every hidden width 1 (the overhead probe's models).
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.plan.spec import Conv, Dense, ModelSpec


@dataclass(frozen=True)
class Widths:
    """What a model's constructor needs: input size, hidden units, conv filters, classes."""
    height: int
    width: int
    channels: int
    hidden: tuple[int, ...]  # every Dense's units but the output layer's
    filters: tuple[int, ...]  # every Conv's filters, in order
    classes: int

    @property
    def features(self) -> int:
        """Inputs of the first dense layer of a model that starts with Flatten."""
        return self.height * self.width * self.channels

    @property
    def image_size(self) -> tuple[int, int]:
        return self.height, self.width


def widths(spec: ModelSpec) -> Widths:
    """The spec's sizes, in layer order."""
    height, width, channels = spec.input_shape
    units = tuple(layer.units for layer in spec.layers if isinstance(layer, Dense))
    filters = tuple(layer.filters for layer in spec.layers if isinstance(layer, Conv))
    return Widths(height, width, channels, units[:-1], filters, spec.num_classes)
