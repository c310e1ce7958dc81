"""`dataset.image_size=auto|<n>`: the input side a run feeds its model, checked against
what the model declares (its design size, the smallest input it accepts, the number the
side must divide by) before anything is built."""
from __future__ import annotations

import dataclasses

from hpml_bench.errors import HpmlError


def accepts(model, size: int) -> bool:
    """Whether `model` (a ModelConfig) takes square inputs of side `size`."""
    top = model.max_input_size
    return size >= model.min_input_size and size % model.input_divisor == 0 and (top is None or size <= top)


def input_rule(model) -> str:
    top = model.max_input_size
    if top == model.min_input_size:
        return f"exactly {top}"
    rule = f"at least {model.min_input_size}"
    if model.input_divisor > 1:
        rule += f" and divisible by {model.input_divisor}"
    if top is not None:
        rule += f" and at most {top}"
    return rule


def resolve_image_size(model, dataset):
    """(model, dataset) with dataset.image_size a number.

    auto: the data set's own size when the model accepts it, else the model's design size.
    A number is kept if the model accepts it and refused (one line naming the model's
    minimum) otherwise. A model whose input follows the data (the MLP) takes the size.
    """
    size = dataset.image_size
    if getattr(dataset, "size_is_auto", False):  # set by DatasetConfig for image_size=auto
        size = dataset.native_size if accepts(model, dataset.native_size) else model.input_size
    elif not accepts(model, size):
        nearest = max(model.min_input_size, -(-size // model.input_divisor) * model.input_divisor)
        nearest = min(nearest, model.max_input_size or nearest)
        designed = "" if nearest == model.input_size else f", or {model.input_size} as designed"
        raise HpmlError(f"dataset.image_size={size} does not suit {model.describe_build()}: its input must be "
                        f"{input_rule(model)} (e.g. {nearest}{designed}); or use dataset.image_size=auto")
    if model.input_follows_data:
        model = dataclasses.replace(model, input_size=size)
    return model, dataclasses.replace(dataset, image_size=size)

