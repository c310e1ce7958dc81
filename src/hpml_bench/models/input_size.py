"""`dataset.image_size=auto|<n>`: the input side a run feeds its model, checked against
what the model declares (its design size, the smallest input it accepts, the number the
side must divide by) before anything is built."""
from __future__ import annotations

import dataclasses

from hpml_bench.errors import HpmlError


def accepts(model, size: int) -> bool:
    """Whether `model` (a ModelConfig) takes square inputs of side `size`."""
    return size >= model.min_input_size and size % model.input_divisor == 0


def input_rule(model) -> str:
    rule = f"at least {model.min_input_size}"
    if model.input_divisor > 1:
        rule += f" and divisible by {model.input_divisor}"
    return rule


def resolve_image_size(model, dataset):
    """(model, dataset) with dataset.image_size a number.

    auto: the data set's own size when the model accepts it, else the model's design size.
    A number is kept if the model accepts it and refused (one line naming the model's
    minimum) otherwise. A model whose input follows the data (the MLP) takes the size.
    """
    size, name = dataset.image_size, model.name
    if getattr(dataset, "size_is_auto", False):  # set by DatasetConfig for image_size=auto
        size = dataset.native_size if accepts(model, dataset.native_size) else model.input_size
    elif not accepts(model, size):
        nearest = max(model.min_input_size, -(-size // model.input_divisor) * model.input_divisor)
        raise HpmlError(f"dataset.image_size={size} does not suit model {name}: its input must be {input_rule(model)} "
                        f"(e.g. {nearest}, or {model.input_size} as designed); or use dataset.image_size=auto")
    if model.input_follows_data:
        model = dataclasses.replace(model, input_size=size)
    return model, dataclasses.replace(dataset, image_size=size)

