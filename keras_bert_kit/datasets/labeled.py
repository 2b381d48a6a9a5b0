"""`LabeledTexts`: texts (optionally pairs) with integer labels and their names."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LabeledTexts:
    """Parallel tuples of texts, optional second texts, and optional labels.

    `labels[i]` indexes `label_names`; both are None for unlabelled data.
    """

    texts: tuple[str, ...]
    labels: tuple[int, ...] | None = None
    label_names: tuple[str, ...] | None = None
    text_pairs: tuple[str, ...] | None = None

    def __post_init__(self):
        for name in ("texts", "labels", "label_names", "text_pairs"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        for name in ("labels", "text_pairs"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.texts):
                raise ValueError(
                    f"{len(self.texts)} texts but {len(value)} {name}; they must match."
                )
        if (self.labels is None) != (self.label_names is None):
            raise ValueError("`labels` and `label_names` come together (both or neither).")
        if self.labels is not None:
            bad = [x for x in self.labels if not 0 <= x < len(self.label_names)]
            if bad:
                raise ValueError(
                    f"Label {bad[0]} is outside [0, {len(self.label_names)}) "
                    f"(label_names {self.label_names})."
                )

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices) -> "LabeledTexts":
        indices = list(indices)
        pick = lambda values: None if values is None else tuple(values[i] for i in indices)  # noqa: E731
        return LabeledTexts(
            texts=pick(self.texts),
            labels=pick(self.labels),
            label_names=self.label_names,
            text_pairs=pick(self.text_pairs),
        )
