"""`TFLiteModel`: runs a .tflite from `export_tflite` in LiteRT (`ai_edge_litert`).

Inputs are checked before they reach the interpreter (names, dtypes, shapes,
id ranges, the position table), so a bad request is a `ValueError` or
`InvalidIdsError` naming the input, and a failure inside the interpreter is a
`TFLiteInvocationError`, never a crash of the process.
"""

from __future__ import annotations

import os

import numpy as np

from keras_bert_kit.errors import InvalidIdsError
from keras_bert_kit.export.signatures import preprocessor_from_settings
from keras_bert_kit.export.tflite import read_tflite_settings
from keras_bert_kit.id_checks import check_id_range


class TFLiteInvocationError(RuntimeError):
    """The LiteRT interpreter failed to run the model on an input."""


def load_interpreter(path, custom_ops=(), num_threads=None):
    """A LiteRT interpreter for `path`, with tensorflow-text's kernels when it has custom ops.

    `ai_edge_litert`'s `InterpreterWithCustomOps` takes tensorflow-text's
    registrar (`tflite_registrar.SELECT_TFTEXT_OPS`) as it is.
    """
    from ai_edge_litert import interpreter as litert

    if custom_ops:
        from tensorflow_text import tflite_registrar

        interpreter = litert.InterpreterWithCustomOps(
            model_path=os.fspath(path),
            custom_op_registerers=tflite_registrar.SELECT_TFTEXT_OPS,
            num_threads=num_threads,
        )
    else:
        interpreter = litert.Interpreter(model_path=os.fspath(path), num_threads=num_threads)
    return interpreter


class TFLiteModel:
    """A model written by `export_tflite`, with its settings (`<model>.json`).

    Args:
        path: the .tflite file.
        num_threads: interpreter threads (None: LiteRT's default).

    Call it with the signature's inputs by name, as numpy arrays (or lists):
    `model(input_ids=..., segment_ids=..., padding_mask=...)` for ids in,
    `model(text=[...])` for text in. Returns {output name: numpy array}.
    `features(texts)` makes an ids-in model's inputs from texts with the exact
    BERT tokenizer of the model's vocabulary.
    """

    def __init__(self, path, num_threads=None):
        self.path = os.fspath(path)
        self.settings = read_tflite_settings(self.path)
        self.signature = self.settings["signature"]
        self.input_specs = self.settings["inputs"]
        self.interpreter = load_interpreter(self.path, self.settings["custom_ops"], num_threads)
        self._runner = self.interpreter.get_signature_runner(self.signature)
        self._preprocessor = None

    @property
    def vocabulary_path(self) -> str:
        """The vocabulary file beside the model, as its settings name it."""
        return os.path.join(os.path.dirname(os.path.abspath(self.path)),
                            self.settings["vocabulary"])

    @property
    def text_input(self) -> bool:
        return bool(self.settings["text_input"])

    def __call__(self, **inputs):
        arrays = self._checked(inputs)
        try:
            outputs = self._runner(**arrays)
        except (RuntimeError, ValueError) as error:
            raise TFLiteInvocationError(
                f"{os.path.basename(self.path)} failed on this input: {error}"
            ) from error
        return {name: np.asarray(value) for name, value in outputs.items()}

    def features(self, texts, text_pairs=None):
        """An ids-in model's inputs for `texts` (and `text_pairs`), tokenized on the host."""
        if self.text_input:
            raise ValueError("This model takes text: call it with text=[...].")
        if self._preprocessor is None:
            fixed = self.settings["sequence_length"]
            self._preprocessor = preprocessor_from_settings(
                self.vocabulary_path, self.settings,
                sequence_length=fixed or self.settings["max_sequence_length"],
                padding="max_length" if fixed else "longest",
            )
        x = list(texts) if text_pairs is None else (list(texts), list(text_pairs))
        features = self._preprocessor(x)
        return {name: features[name].numpy() for name in self.input_specs}

    def _checked(self, inputs):
        expected, given = set(self.input_specs), set(inputs)
        if given != expected:
            raise ValueError(
                f"{os.path.basename(self.path)} takes the inputs {sorted(expected)}; got "
                f"{sorted(given)}."
            )
        if self.text_input:
            arrays = {name: _text_array(name, value) for name, value in inputs.items()}
        else:
            arrays = {name: _id_array(name, value) for name, value in inputs.items()}
        if any(len(array) == 0 for array in arrays.values()):
            raise ValueError("The batch is empty: give at least one example.")
        if self.text_input:
            if len({len(array) for array in arrays.values()}) > 1:
                raise ValueError(
                    "The text inputs must hold as many texts each; got "
                    + ", ".join(f"{name}: {len(a)}" for name, a in arrays.items()) + "."
                )
            return arrays
        shapes = {array.shape for array in arrays.values()}
        if len(shapes) > 1:
            raise ValueError(
                "The id inputs must share one [batch, length] shape; got "
                + ", ".join(f"{name} {array.shape}" for name, array in arrays.items()) + "."
            )
        (batch, length), = shapes
        fixed = self.settings["sequence_length"]
        if fixed and length != fixed:
            raise ValueError(f"This model takes sequences of exactly {fixed} ids; got {length}.")
        if not 1 <= length <= self.settings["max_positions"]:
            raise ValueError(
                f"Sequences must hold 1 to {self.settings['max_positions']} ids (the "
                f"position table); got {length}."
            )
        owner = os.path.basename(self.path)
        for name, array in arrays.items():
            check_id_range(array, self.settings["input_limits"][name], name, owner)
        return {name: array.astype(np.int32) for name, array in arrays.items()}


def _id_array(name, value):
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"`{name}` must be a rectangular [batch, length] array: {error}") from None
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise InvalidIdsError(f"`{name}` must hold integers; got dtype {array.dtype}.")
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be [batch, length]; got shape {array.shape}.")
    return array


def _text_array(name, value):
    values = [value] if isinstance(value, (str, bytes)) else list(np.asarray(value, object).ravel())
    if np.ndim(value) > 1:
        raise ValueError(f"`{name}` must be a 1-D batch of texts; got shape {np.shape(value)}.")
    encoded = []
    for item in values:
        if isinstance(item, str):
            encoded.append(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, bytes):
            encoded.append(item)
        else:
            raise ValueError(f"`{name}` must hold strings; got {type(item).__name__}.")
    return np.array(encoded, dtype=object)
