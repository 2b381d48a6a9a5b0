"""Shared machinery for moving weights between our models and other implementations.

Each format (keras-hub, Model Garden, Hugging Face, TF1 checkpoints) describes
itself once, as a table of `TensorLink`s: one of our variables, the source
tensors it corresponds to, and the layout between them. Import reads the
sources and calls `assign_weights`, which checks the whole list before touching
anything, so a conversion either loads every variable of the target or raises
naming what is wrong; nothing is ever silently left at its random init. Export
reads the same table backwards (`export_links`).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

import keras
import numpy as np

from keras_bert_kit.keras_internals import attention_projections

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


def assign_weights(
    model, assignments: Iterable[WeightAssignment], left_at_init=()
) -> list[str]:
    """Loads `assignments` into `model`, which must end up fully assigned.

    All checks run before any variable changes, so a failed call leaves
    `model` as it was.

    Args:
        model: the model (or layer) being loaded; each of its `weights` must be
            the target of exactly one assignment.
        assignments: `WeightAssignment`s or `(target, value, source)` tuples.
        left_at_init: variables of `model` knowingly left as they are (the
            caller reports them); they do not count as unassigned.

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
    seen.update((id(v), None) for v in left_at_init)
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


# -- links: one table per source format, read in both directions ---------------------

LAYOUTS = ("copy", "transpose", "qkv", "qkv_transpose")

TensorLink = collections.namedtuple("TensorLink", ["target", "sources", "layout"])
TensorLink.__doc__ = """How one of our variables relates to tensors of another implementation.

One table of links serves import and export alike, so the two directions
cannot drift apart.

Fields:
    target: our Keras variable.
    sources: the other side's tensors it is made of: their variables, or
        their names in a checkpoint.
    layout: how values map between the two sides:
        "copy": the same values, reshaped (Keras `MultiHeadAttention` keeps
            per-head `[heads, head_size]` biases and `[heads, head_size, hidden]`
            output kernels; flattened head-major they are ours);
        "transpose": a torch `Linear` weight, `[out, in]`, against our `[in, out]`;
        "qkv": query, key and value (Keras layout, per-head or flat)
            concatenated along the output axis into our fused projection;
        "qkv_transpose": the same from torch `Linear` weights (biases as "qkv").
"""


def _flatten_heads(part, kernel):
    # [in, heads, head_size] -> [in, heads * head_size]; [heads, head_size] -> [-1].
    return part.reshape(part.shape[0], -1) if kernel else part.reshape(-1)


def to_ours(layout, parts, target_shape):
    """Our value of a link's target from its source values (numpy arrays)."""
    target_shape = tuple(target_shape)
    if layout == "copy":
        (part,) = parts
        # A size mismatch is left as is, for `assign_weights` to report.
        return part.reshape(target_shape) if part.size == np.prod(target_shape) else part
    if layout == "transpose":
        (part,) = parts
        return part.T
    if layout in ("qkv", "qkv_transpose"):
        kernel = len(target_shape) == 2
        if kernel and layout == "qkv_transpose":
            parts = [part.T for part in parts]
        parts = [_flatten_heads(part, kernel) for part in parts]
        if len({part.shape for part in parts}) != 1:
            raise ValueError(
                f"query, key and value differ in shape: {[part.shape for part in parts]}"
            )
        return np.concatenate(parts, axis=-1)
    raise ValueError(f"Unknown layout {layout!r}; known: {LAYOUTS}.")


def to_theirs(layout, value):
    """The source values of a link from our target's value, in their natural shapes.

    Per-head Keras shapes come back flat: the caller reshapes to its variables.
    """
    if layout == "copy":
        return [value]
    if layout == "transpose":
        return [value.T]
    if layout in ("qkv", "qkv_transpose"):
        parts = np.split(value, 3, axis=-1)
        if layout == "qkv_transpose" and value.ndim == 2:
            parts = [part.T for part in parts]
        return parts
    raise ValueError(f"Unknown layout {layout!r}; known: {LAYOUTS}.")


def _source_name(source):
    return source if isinstance(source, str) else variable_name(source)


def load_links(model, links, read=to_numpy, left_at_init=()):
    """Loads every link's sources into its target; see `assign_weights`.

    Args:
        model: the model being loaded.
        links: `TensorLink`s covering every variable of `model` except
            `left_at_init`.
        read: source -> numpy value (default: read a variable).
        left_at_init: variables knowingly not loaded (the caller reports them).
    """
    assignments = []
    for link in links:
        parts = [np.asarray(read(source)) for source in link.sources]
        source = " + ".join(_source_name(s) for s in link.sources)
        try:
            value = to_ours(link.layout, parts, link.target.shape)
        except ValueError as e:
            raise ValueError(f"Cannot load {source!r}: {e}.") from None
        assignments.append(WeightAssignment(link.target, value, source))
    return assign_weights(model, assignments, left_at_init=left_at_init)


def export_links(links):
    """`(source, value)` pairs giving the other side every link's value from ours."""
    pairs = []
    for link in links:
        values = to_theirs(link.layout, to_numpy(link.target))
        pairs += zip(link.sources, values)
    return pairs


def keras_mha_links(target, mha) -> list[TensorLink]:
    """Links between our `MultiHeadSelfAttention` and a Keras `MultiHeadAttention`.

    Keras 3 and tf_keras `MultiHeadAttention` (keras-hub, Model Garden) keep
    separate query/key/value `EinsumDense` layers with `[hidden, heads, head_size]`
    kernels and `[heads, head_size]` biases, and a `[heads, head_size, hidden]`
    output kernel. Flattening `(heads, head_size)` head-major gives exactly the
    column order our fused projection splits by.
    """
    dense = attention_projections(mha)
    qkv = [dense[part] for part in ("query", "key", "value")]
    return [
        TensorLink(target.qkv_dense.kernel, tuple(d.kernel for d in qkv), "qkv"),
        TensorLink(target.qkv_dense.bias, tuple(d.bias for d in qkv), "qkv"),
        TensorLink(target.output_dense.kernel, (dense["output"].kernel,), "copy"),
        TensorLink(target.output_dense.bias, (dense["output"].bias,), "copy"),
    ]


def layer_norm_links(target, source) -> list[TensorLink]:
    """Links between two LayerNormalization layers (Keras 3 or tf_keras)."""
    return [
        TensorLink(target.gamma, (source.gamma,), "copy"),
        TensorLink(target.beta, (source.beta,), "copy"),
    ]


def dense_links(target, source) -> list[TensorLink]:
    """Links between two Dense/EinsumDense layers with `[in, out]` kernels and biases."""
    return [
        TensorLink(target.kernel, (source.kernel,), "copy"),
        TensorLink(target.bias, (source.bias,), "copy"),
    ]
