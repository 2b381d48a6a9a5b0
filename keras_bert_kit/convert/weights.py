"""Shared machinery for loading another implementation's weights into our encoders.

Every importer (keras-hub, Model Garden, and later Hugging Face and TF1
checkpoints) reduces to the same step: a list of `WeightAssignment`s, each
pairing one of our variables with a numpy value and the name of the source
tensor it came from. `assign_weights` checks the whole list before touching
anything, so a conversion either loads every variable of the target or raises
naming what is wrong; nothing is ever silently left at its random init.

The layout helpers below turn the per-head attention tensors of Keras'
`MultiHeadAttention` (keras-hub, Model Garden) into the fused `[hidden, 3 * hidden]`
projection of `MultiHeadSelfAttention`.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

import keras
import numpy as np

WeightAssignment = collections.namedtuple("WeightAssignment", ["target", "value", "source"])
WeightAssignment.__doc__ = """One variable to load.

Fields:
    target: a Keras variable of the model being loaded.
    value: its new value (a numpy array, or anything `to_numpy` reads).
    source: the name of the source tensor(s) `value` was made from; shown in errors.
"""


def to_numpy(tensor):
    """A numpy copy of a Keras 3 or tf_keras variable, a tensor or an array."""
    if hasattr(tensor, "numpy"):
        return np.asarray(tensor.numpy())
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def variable_name(variable):
    """A readable name of a Keras 3 variable (its path) or a tf.Variable."""
    path = getattr(variable, "path", None)
    if path:
        return path
    name = variable.name
    return name[:-2] if name.endswith(":0") else name


def assign_weights(model, assignments: Iterable[WeightAssignment]) -> list[str]:
    """Loads `assignments` into `model`, which must end up fully assigned.

    All checks run before any variable changes, so a failed call leaves
    `model` as it was.

    Args:
        model: the model (or layer) being loaded; each of its `weights` must be
            the target of exactly one assignment.
        assignments: `WeightAssignment`s or `(target, value, source)` tuples.

    Returns:
        The source names used, in order, so that a caller holding a checkpoint
        can tell which of its tensors were not needed.

    Raises:
        ValueError: naming every source whose shape differs from its target's
            (with both shapes), every target assigned twice, every target that
            is not a variable of `model`, and every variable of `model` that no
            assignment covers.
    """
    assignments = [WeightAssignment(*a) for a in assignments]
    model_name = getattr(model, "name", type(model).__name__)
    model_variables = {id(v): v for v in model.weights}

    problems = []
    values = []
    seen = {}
    for target, value, source in assignments:
        value = to_numpy(value)
        values.append(value)
        target_name = variable_name(target)
        if tuple(value.shape) != tuple(target.shape):
            problems.append(
                f"shape mismatch: source {source!r} has shape {tuple(value.shape)}, "
                f"target {target_name!r} has shape {tuple(target.shape)}"
            )
        if id(target) in seen:
            problems.append(
                f"target {target_name!r} is assigned twice: from {seen[id(target)]!r} "
                f"and from {source!r}"
            )
        seen[id(target)] = source
        if id(target) not in model_variables:
            problems.append(
                f"target {target_name!r} (from {source!r}) is not a variable of {model_name!r}"
            )
    unassigned = [variable_name(v) for key, v in model_variables.items() if key not in seen]
    if unassigned:
        problems.append(
            f"{len(unassigned)} variable(s) would be left at their initial values: "
            + ", ".join(unassigned)
        )
    if problems:
        raise ValueError(
            f"Cannot load weights into {model_name!r}:\n  "
            + "\n  ".join(problems)
        )

    for (target, _, _), value in zip(assignments, values):
        # Cast on the Keras side: numpy has no bfloat16 of its own.
        target.assign(keras.ops.cast(value, target.dtype))
    return [a.source for a in assignments]


# -- layouts -----------------------------------------------------------------------


def copy_assignment(target, source) -> WeightAssignment:
    """Copies the variable `source` into `target` as is (same layout on both sides)."""
    return WeightAssignment(target, to_numpy(source), variable_name(source))


def merge_heads_kernel(kernel, source: str) -> np.ndarray:
    """`[hidden, heads, head_size]` -> `[hidden, heads * head_size]`, head-major.

    A flat `[hidden, hidden]` kernel is returned unchanged.
    """
    kernel = to_numpy(kernel)
    if kernel.ndim == 2:
        return kernel
    if kernel.ndim != 3:
        raise ValueError(f"{source!r}: expected a 2-D or 3-D kernel, got shape {kernel.shape}.")
    return kernel.reshape(kernel.shape[0], -1)


def merge_heads_bias(bias, source: str) -> np.ndarray:
    """`[heads, head_size]` -> `[heads * head_size]`; a flat bias is returned unchanged."""
    bias = to_numpy(bias)
    if bias.ndim == 1:
        return bias
    if bias.ndim != 2:
        raise ValueError(f"{source!r}: expected a 1-D or 2-D bias, got shape {bias.shape}.")
    return bias.reshape(-1)


def merge_heads_output_kernel(kernel, source: str) -> np.ndarray:
    """`[heads, head_size, hidden]` -> `[heads * head_size, hidden]`, head-major.

    A flat `[hidden, hidden]` kernel is returned unchanged.
    """
    kernel = to_numpy(kernel)
    if kernel.ndim == 2:
        return kernel
    if kernel.ndim != 3:
        raise ValueError(
            f"{source!r}: expected a 2-D or 3-D output kernel, got shape {kernel.shape}."
        )
    return kernel.reshape(-1, kernel.shape[-1])


def concat_qkv(query, key, value, source: str) -> np.ndarray:
    """Our fused QKV layout: `[query | key | value]` along the last axis.

    Takes flat kernels (`[hidden, hidden]`, input-major as in Keras) or biases
    (`[hidden]`), output index `head * head_size + d` (see `merge_heads_*`);
    returns `[hidden, 3 * hidden]` or `[3 * hidden]`.

    Args:
        source: names of the three source tensors, for the error message.
    """
    parts = [to_numpy(part) for part in (query, key, value)]
    if len({part.shape for part in parts}) != 1:
        raise ValueError(
            f"Query, key and value tensors {source!r} differ in shape: "
            f"{[part.shape for part in parts]}."
        )
    return np.concatenate(parts, axis=-1)


def keras_mha_assignments(target, mha) -> list[WeightAssignment]:
    """Assignments loading a Keras `MultiHeadAttention` into a `MultiHeadSelfAttention`.

    Keras 3 and tf_keras `MultiHeadAttention` (used by keras-hub and Model
    Garden) keep separate query/key/value `EinsumDense` layers with
    `[hidden, heads, head_size]` kernels and `[heads, head_size]` biases, and a
    `[heads, head_size, hidden]` output kernel. Flattening `(heads, head_size)`
    head-major gives exactly the column order our fused projection splits by.

    Args:
        target: our `MultiHeadSelfAttention` (built).
        mha: the source self-attention layer (built, with biases).
    """
    dense = {part: getattr(mha, f"_{part}_dense") for part in ("query", "key", "value", "output")}
    names = {
        part: {w: variable_name(getattr(layer, w)) for w in ("kernel", "bias")}
        for part, layer in dense.items()
    }
    qkv = ("query", "key", "value")
    kernel_source = " + ".join(names[p]["kernel"] for p in qkv)
    bias_source = " + ".join(names[p]["bias"] for p in qkv)
    return [
        WeightAssignment(
            target.qkv_dense.kernel,
            concat_qkv(
                *(merge_heads_kernel(dense[p].kernel, names[p]["kernel"]) for p in qkv),
                source=kernel_source,
            ),
            kernel_source,
        ),
        WeightAssignment(
            target.qkv_dense.bias,
            concat_qkv(
                *(merge_heads_bias(dense[p].bias, names[p]["bias"]) for p in qkv),
                source=bias_source,
            ),
            bias_source,
        ),
        WeightAssignment(
            target.output_dense.kernel,
            merge_heads_output_kernel(dense["output"].kernel, names["output"]["kernel"]),
            names["output"]["kernel"],
        ),
        copy_assignment(target.output_dense.bias, dense["output"].bias),
    ]


def layer_norm_assignments(target, source) -> list[WeightAssignment]:
    """Assignments loading one LayerNormalization (gamma, beta) into another.

    Works for Keras 3 and tf_keras sources, which name the two variables alike.
    """
    return [copy_assignment(target.gamma, source.gamma), copy_assignment(target.beta, source.beta)]


def dense_assignments(target, source) -> list[WeightAssignment]:
    """Assignments loading a Dense/EinsumDense layer with an `[in, out]` kernel and a bias."""
    return [
        copy_assignment(target.kernel, source.kernel),
        copy_assignment(target.bias, source.bias),
    ]
