"""The serving signatures of each kind of model, as `tf.function`s over named tensors.

Every signature takes a dynamic batch and returns a dict of dense tensors
(TF Serving answers no ragged tensors). Text-in signatures tokenize in graph
and pad each batch only to its longest item, capped at the preprocessor's
`sequence_length`; `predict_ids` takes what a client tokenized itself, for
servers built without TF Text's ops. Ids from a request are range-checked by
the models (an `InvalidArgumentError` naming the input).

Which signatures a model gets (`SIGNATURES` names them per kind):

| kind        | serving_default               | also                         |
|-------------|-------------------------------|------------------------------|
| classifier  | text (+ text_pair) -> label   | predict_ids, embed           |
| tagger      | text -> per-word tags         | predict_ids, embed           |
| qa          | question, context -> answer   | predict_ids, embed           |
| encoder     | text -> embeddings (= embed)  | predict_ids, embed           |
| pretrainer  | text with [MASK] -> top-k     | predict_ids, fill_mask       |
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_bert_kit.models.encoder import TransformerEncoder
from keras_bert_kit.models.pretrainers import Pretrainer
from keras_bert_kit.tasks import SequenceClassifier, SpanExtractor, TokenClassifier
from keras_bert_kit.tokenization.preprocessor import BertPreprocessor
from keras_bert_kit.tokenization.tokenizer import BertTokenizer
from keras_bert_kit.tokenization.vocabulary import MASK_TOKEN
from keras_bert_kit.validation import check_int

KINDS = {
    SequenceClassifier: "classifier",
    TokenClassifier: "tagger",
    SpanExtractor: "qa",
    TransformerEncoder: "encoder",
    Pretrainer: "pretrainer",
}

SIGNATURES = {
    "classifier": ("serving_default", "predict_ids", "embed"),
    "tagger": ("serving_default", "predict_ids", "embed"),
    "qa": ("serving_default", "predict_ids", "embed"),
    "encoder": ("serving_default", "predict_ids", "embed"),
    "pretrainer": ("serving_default", "predict_ids", "fill_mask"),
}


def model_kind(model) -> str:
    """"classifier", "tagger", "qa", "encoder" or "pretrainer"; ValueError for other objects."""
    for model_class, kind in KINDS.items():
        if isinstance(model, model_class):
            return kind
    raise ValueError(
        "Export takes a SequenceClassifier, TokenClassifier, SpanExtractor, an encoder "
        f"(BertEncoder, DistilBertEncoder) or a pretrainer; got {type(model).__name__}."
    )


def encoder_of(model):
    """The encoder inside `model` (the model itself for an encoder)."""
    return model if isinstance(model, TransformerEncoder) else model.encoder


def copy_model(model, *, encoder=None, preprocessor=None):
    """A copy of `model` with its weights, optionally with another encoder or preprocessor.

    `encoder`: a fresh encoder of the same config (e.g. another dtype policy)
    that replaces a task's or pretrainer's own; `preprocessor` replaces a
    task's. The copy shares no layers with `model`.
    """
    if model is encoder_of(model):
        if preprocessor is not None:
            raise ValueError("An encoder carries no preprocessor to replace.")
        copy = encoder if encoder is not None else type(model).from_config(model.get_config())
    else:
        config = dict(model.get_config())
        if encoder is not None:
            config["encoder"] = keras.saving.serialize_keras_object(encoder)
        if preprocessor is not None:
            if "preprocessor" not in config:
                raise ValueError(f"A {type(model).__name__} carries no preprocessor to replace.")
            config["preprocessor"] = keras.saving.serialize_keras_object(preprocessor)
        copy = type(model).from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def resolve_preprocessor(model, preprocessor=None):
    """The preprocessor an export runs: `preprocessor`, else the task's own.

    Raises ValueError when there is none (encoders and pretrainers carry no
    preprocessor: pass one). `SignatureBuilder` checks it against the encoder.
    """
    kind = model_kind(model)
    if preprocessor is None:
        preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        hint = (
            "build the task with a preprocessor"
            if kind in ("classifier", "tagger", "qa")
            else "pass preprocessor=BertPreprocessor(tokenizer, sequence_length=...)"
        )
        raise ValueError(
            f"Exporting a {type(model).__name__} needs a preprocessor for its text-in "
            f"signatures: {hint}."
        )
    tokenizer = getattr(preprocessor, "tokenizer", None)
    sequence_length = getattr(preprocessor, "sequence_length", None)
    if tokenizer is None or not isinstance(sequence_length, int):
        raise ValueError(
            "`preprocessor` must be a keras_bert_kit preprocessor (with a tokenizer and a "
            f"sequence_length); got {type(preprocessor).__name__}."
        )
    if kind == "pretrainer" and tokenizer.mask_token_id is None:
        raise ValueError(f"The preprocessor's vocabulary has no {MASK_TOKEN} token, which "
                         "fill_mask needs.")
    return preprocessor


def preprocessor_from_settings(vocabulary_path, settings, sequence_length=None,
                               padding="longest"):
    """The `BertPreprocessor` an export's settings describe, over its vocabulary file.

    `settings`: an export's recorded settings (`lowercase`, `strip_accents`,
    `normalizer`, `sequence_length`); `sequence_length` overrides theirs.
    """
    tokenizer = BertTokenizer(
        vocabulary_path,
        lowercase=settings["lowercase"],
        strip_accents=settings["strip_accents"],
        normalizer=settings["normalizer"],
    )
    return BertPreprocessor(tokenizer, sequence_length=sequence_length or
                            settings["sequence_length"], padding=padding)


def _text_specs(*names):
    return [tf.TensorSpec([None], tf.string, name=name) for name in names]


def _id_specs(names, length=None):
    return [tf.TensorSpec([None, length], tf.int32, name=name) for name in names]


def mean_embedding(sequence_output, padding_mask):
    """Mean of the real tokens' final states, L2-normalised: float32 `[batch, hidden]`.

    As sentence-transformers' mean pooling then `Normalize` make it (padding
    excluded; a row without tokens gives zeros, not NaN).
    """
    states = tf.cast(sequence_output, tf.float32)
    mask = tf.expand_dims(tf.cast(padding_mask, tf.float32), -1)
    summed = tf.reduce_sum(states * mask, axis=1)
    count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    return tf.math.l2_normalize(summed / count, axis=-1, epsilon=1e-12)


def gather_or_empty(strings, ids):
    """`strings[ids]`, and "" where an id is -1.

    A gather from the strings with "" appended, not a select between string
    tensors, which TFLite has no builtin kernel for.
    """
    table = tf.constant(list(strings) + [""])
    return tf.gather(table, tf.where(ids < 0, len(strings), ids))


class SignatureBuilder:
    """Makes the serving functions of one model and preprocessor.

    Args:
        model: a task, an encoder or a pretrainer (see `model_kind`).
        preprocessor: its text preprocessor (a task's own by default).
        pairs: a classifier reads text pairs: `serving_default` then takes
            `text` and `text_pair`.
        top_k: how many tokens `fill_mask` returns per [MASK].
        max_answer_length: the longest QA answer, in tokens.
        id_length: a fixed length for `predict_ids`'s inputs (and packing to
            it), for static-shape runtimes; by default any length.
        signatures: the names of the signatures to make, out of the kind's
            (`SIGNATURES`); by default all of them.
    """

    def __init__(self, model, preprocessor=None, *, pairs=False, top_k=5, max_answer_length=30,
                 id_length=None, signatures=None):
        self.kind = model_kind(model)
        self._names = self._chosen(signatures)
        self.model = model
        self.preprocessor = resolve_preprocessor(model, preprocessor)
        if pairs and self.kind != "classifier":
            raise ValueError(f"`pairs` is for classifiers; this is a {self.kind}.")
        self.pairs = bool(pairs)
        check_int("top_k", top_k, minimum=1)
        check_int("max_answer_length", max_answer_length, minimum=1)
        self.max_answer_length = max_answer_length
        self.encoder = encoder_of(model)
        self.tokenizer = self.preprocessor.tokenizer
        if id_length is not None:
            check_int("id_length", id_length, minimum=3, hint="[CLS], a token, [SEP]")
        self.id_length = id_length
        # Every batch padded to its longest item (a task's own preprocessor
        # does that; an encoder's may pad to a fixed length), or to `id_length`.
        self.packer = BertPreprocessor.for_encoder(
            self.encoder,
            self.tokenizer,
            sequence_length=id_length or self.preprocessor.sequence_length,
            padding="longest" if id_length is None else "max_length",
        )
        self.top_k = min(top_k, self.tokenizer.vocabulary_size())

    def _chosen(self, signatures):
        available = SIGNATURES[self.kind]
        if signatures is None:
            return available
        if isinstance(signatures, str):
            signatures = [signatures]
        signatures = list(signatures)
        unknown = [name for name in signatures if name not in available]
        if not signatures or unknown:
            raise ValueError(
                f"`signatures` must name some of this {self.kind}'s signatures {available}; "
                f"got {signatures}."
            )
        return tuple(name for name in available if name in signatures)

    @property
    def names(self):
        """The signatures this builder makes, in `SIGNATURES` order."""
        return self._names

    @property
    def text_inputs(self):
        """The string inputs of `serving_default`."""
        if self.kind == "qa":
            return ("question", "context")
        return ("text", "text_pair") if self.pairs else ("text",)

    @property
    def id_inputs(self):
        """The int32 `[batch, seq]` inputs of `predict_ids`."""
        return tuple(self.encoder.input_names)

    def text_columns(self, texts, what="texts"):
        """`texts` as one string tensor per text input of `serving_default`.

        Strings, or (first, second) string pairs for a model with two text
        inputs; `what` names the argument in errors.
        """
        texts = list(texts)
        if not texts:
            raise ValueError(f"`{what}` is empty: give at least one text.")
        if len(self.text_inputs) == 2:
            if not all(
                isinstance(t, (tuple, list)) and len(t) == 2
                and all(isinstance(s, str) for s in t)
                for t in texts
            ):
                raise ValueError(
                    f"This {self.kind} reads {self.text_inputs}: `{what}` must be "
                    "(first, second) pairs of strings."
                )
            return [tf.constant([t[i] for t in texts]) for i in (0, 1)]
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(f"`{what}` must be strings.")
        return [tf.constant(texts)]

    def functions(self):
        """{signature name: `tf.function`} for every signature of this model."""
        makers = {
            "serving_default": self._serving_default,
            "predict_ids": self._predict_ids,
            "embed": self._embed,
            "fill_mask": self._fill_mask,
        }
        return {name: makers[name]() for name in self.names}

    # -- text in ----------------------------------------------------------------------

    def _serving_default(self):
        if self.kind == "classifier":
            return self.model.text_function(pairs=self.pairs)
        if self.kind == "tagger":
            return self.model.text_function()
        if self.kind == "qa":
            return self.model.text_function(self.max_answer_length)
        if self.kind == "encoder":
            return self._embed()
        return self._fill_mask()

    def _embeddings(self, features):
        outputs = self.encoder({name: features[name] for name in self.id_inputs}, training=False)
        return {
            "pooled_output": tf.cast(outputs["pooled_output"], tf.float32),
            "mean_embedding": mean_embedding(outputs["sequence_output"],
                                             features["padding_mask"]),
        }

    def _embed(self):
        tokenizer, packer = self.tokenizer, self.packer

        @tf.function(input_signature=_text_specs("text"))
        def embed(text):
            return self._embeddings(packer.pack([tokenizer.tokenize(text)]))

        return embed

    # -- fill-mask --------------------------------------------------------------------

    def tokens_keeping_masks(self, text):
        """Ragged `[batch, (tokens)]` ids of `text`, each literal "[MASK]" as the mask id.

        BERT's tokenizer would split "[MASK]" into "[", "mask", "]": the text
        is cut at each "[MASK]", the parts tokenized, and the mask id put
        between them.
        """
        parts = tf.strings.split(text, sep=MASK_TOKEN)
        part_ids = self.tokenizer.tokenize(parts.flat_values)
        positions = tf.ragged.range(parts.row_lengths()).flat_values
        last = tf.repeat(parts.row_lengths() - 1, parts.row_lengths())
        mask_after = tf.cast(positions < last, tf.int64)
        masks = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(mask_after)], tf.constant(self.tokenizer.mask_token_id,
                                                             tf.int32)),
            mask_after,
        )
        part_ids = tf.concat([part_ids, masks], axis=1)
        return tf.RaggedTensor.from_row_lengths(part_ids, parts.row_lengths()).merge_dims(1, 2)

    def mask_features(self, text):
        """Packed features of texts whose literal "[MASK]"s stay mask tokens."""
        return self.packer.pack([self.tokens_keeping_masks(text)])

    def _top_tokens(self, features):
        """Top-k tokens and probabilities at each [MASK] of packed features."""
        input_ids = features["input_ids"]
        is_mask = tf.equal(input_ids, self.tokenizer.mask_token_id)
        mask_count = tf.reduce_sum(tf.cast(is_mask, tf.int32), axis=1)
        # Each row's [MASK] positions in order, padded with 0: the top
        # `max(mask_count)` of a key that is larger for earlier masks and 0
        # elsewhere (dense ops only, so that TFLite runs it as builtins).
        length = tf.shape(input_ids)[1]
        key = tf.where(is_mask, length - tf.range(length), 0)
        most_masks = tf.maximum(tf.reduce_max(mask_count), 0)  # 0 for an empty batch
        _, masked_positions = tf.math.top_k(key, k=most_masks)
        real_mask = tf.sequence_mask(mask_count, tf.shape(masked_positions)[1])
        masked_positions = tf.where(real_mask, masked_positions, 0)
        inputs = {name: features[name] for name in self.id_inputs}
        inputs["masked_positions"] = masked_positions
        logits = tf.cast(self.model(inputs, training=False)["mlm_logits"], tf.float32)
        # Rows of the embedding table past the vocabulary are never answers.
        vocabulary_size = self.tokenizer.vocabulary_size()
        logits = logits[:, :, :vocabulary_size]
        scores, token_ids = tf.math.top_k(tf.nn.softmax(logits), k=self.top_k)
        real = tf.expand_dims(real_mask, -1)
        token_ids = tf.where(real, token_ids, -1)
        return {
            "token_ids": token_ids,
            "tokens": gather_or_empty(self.tokenizer.get_vocabulary(), token_ids),
            "scores": tf.where(real, scores, 0.0),
            "mask_positions": tf.where(real_mask, masked_positions, -1),
            "mask_count": mask_count,
        }

    def _fill_mask(self):
        @tf.function(input_signature=_text_specs("text"))
        def fill_mask(text):
            return self._top_tokens(self.mask_features(text))

        return fill_mask

    # -- ids in -----------------------------------------------------------------------

    def _predict_ids(self):
        model, kind = self.model, self.kind

        def answers(features):
            if kind == "classifier":
                return model.answers(features)
            if kind == "encoder":
                return self._embeddings(features)
            if kind == "pretrainer":
                return self._top_tokens(features)
            outputs = model(features, training=False)
            if kind == "qa":
                return {name: tf.cast(value, tf.float32) for name, value in outputs.items()}
            logits = tf.cast(outputs, tf.float32)
            real = tf.not_equal(features["padding_mask"], 0)
            tag_ids = tf.where(real, tf.argmax(logits, axis=-1, output_type=tf.int32), -1)
            result = {"logits": logits, "tag_ids": tag_ids}
            if model.tag_names is not None:
                result["tags"] = gather_or_empty(model.tag_names, tag_ids)
            return result

        # Named arguments, so that the function is called as the signature is.
        specs = _id_specs(self.id_inputs, self.id_length)
        if "segment_ids" in self.id_inputs:
            @tf.function(input_signature=specs)
            def predict_ids(input_ids, segment_ids, padding_mask):
                return answers(dict(input_ids=input_ids, segment_ids=segment_ids,
                                    padding_mask=padding_mask))
        else:
            @tf.function(input_signature=specs)
            def predict_ids(input_ids, padding_mask):
                return answers(dict(input_ids=input_ids, padding_mask=padding_mask))

        return predict_ids
