"""`LabeledTexts`: texts, optional second texts of pairs, optional integer labels."""

from __future__ import annotations

import dataclasses
import operator


@dataclasses.dataclass(frozen=True)
class LabeledTexts:
    """Parallel tuples: `texts[i]`, `text_pairs[i]` (or None) and `labels[i]`.

    `labels[i]` is an index into `label_names`; both are None for unlabelled
    texts. Lists (or other sequences) are accepted and stored as tuples, so an
    instance never changes after it is checked.
    """

    texts: tuple[str, ...]
    labels: tuple[int, ...] | None = None
    label_names: tuple[str, ...] | None = None
    text_pairs: tuple[str, ...] | None = None

    def __post_init__(self):
        for name in ("texts", "labels", "label_names", "text_pairs"):
            value = getattr(self, name)
            if isinstance(value, str):
                # tuple("abc") would quietly become three one-letter texts.
                raise TypeError(f"`{name}` must be a sequence, not a single string: {value!r}.")
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.texts is None:
            raise TypeError("`texts` is required.")
        for name in ("texts", "text_pairs", "label_names"):
            values = getattr(self, name)
            if values is not None:
                for i, value in enumerate(values):
                    if not isinstance(value, str):
                        raise TypeError(f"`{name}[{i}]` must be a str, got {type(value).__name__}.")
        for name in ("labels", "text_pairs"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.texts):
                raise ValueError(
                    f"{len(self.texts)} texts but {len(values)} {name}; they must match."
                )
        if (self.labels is None) != (self.label_names is None):
            raise ValueError("`labels` and `label_names` go together: give both or neither.")
        if self.label_names is not None:
            if not self.label_names:
                raise ValueError("`label_names` is empty.")
            if len(set(self.label_names)) != len(self.label_names):
                raise ValueError(f"`label_names` has duplicates: {self.label_names}.")
        if self.labels is not None:
            labels = []
            for i, label in enumerate(self.labels):
                # bool is an int subclass, but True/False as class ids is almost surely a mistake.
                if isinstance(label, bool):
                    raise TypeError(f"`labels[{i}]` is a bool; labels are integer class ids.")
                try:
                    label = operator.index(label)  # also accepts numpy integers
                except TypeError:
                    raise TypeError(
                        f"`labels[{i}]` must be an int, got {type(label).__name__}."
                    ) from None
                if not 0 <= label < len(self.label_names):
                    raise ValueError(
                        f"`labels[{i}]` is {label}, outside [0, {len(self.label_names)}) "
                        f"for label_names {self.label_names}."
                    )
                labels.append(label)
            object.__setattr__(self, "labels", tuple(labels))

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices) -> LabeledTexts:
        """The examples at `indices` (any iterable of ints, repeats allowed), same label names."""
        pick = row_picker(indices)
        return LabeledTexts(
            texts=pick(self.texts),
            labels=pick(self.labels),
            label_names=self.label_names,
            text_pairs=pick(self.text_pairs),
        )


def row_picker(indices):
    """A function taking the rows at `indices` from parallel tuples (None stays None).

    The `subset` of every example collection uses it: `indices` are positions
    (any iterable of ints, repeats allowed), never a boolean mask.
    """
    picked = []
    for i in indices:
        if isinstance(i, bool):
            raise TypeError("`indices` are positions, not a boolean mask.")
        picked.append(operator.index(i))

    def pick(values):
        return None if values is None else tuple(values[i] for i in picked)

    return pick


def as_tuple(value, name):
    """`value` as a tuple; a single string is refused (tuple("abc") is three letters)."""
    if isinstance(value, str):
        raise TypeError(f"`{name}` must be a sequence, not a single string: {value!r}.")
    try:
        return tuple(value)
    except TypeError:
        raise TypeError(f"`{name}` must be a sequence, got {type(value).__name__}.") from None
