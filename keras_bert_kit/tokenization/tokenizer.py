"""`BertTokenizer`: in-graph WordPiece on tensorflow-text's `FastBertTokenizer`.

Text is normalised, split on whitespace and punctuation (CJK ideographs are
words of their own), and each word is split into the longest matching pieces
of the vocabulary. Everything runs as TensorFlow ops, so the same layer works
eagerly, inside `tf.data`, in a `tf.function` and in a SavedModel.

Two normalisers:
- `"bert"` (default): the original BERT / Hugging Face `BertTokenizer`
  normalisation, token for token: invalid UTF-8 is replaced and dropped like
  U+FFFD, control, format and private-use characters are removed, and for
  uncased vocabularies text is decomposed (NFD), stripped of combining marks and
  lowercased. It uses TensorFlow string ops, which a SavedModel runs but the
  TFLite runtime does not.
- `"tf_text"`: tensorflow-text's `FastBertNormalizer`, a TFLite custom op that
  runs on phones. It folds compatibility characters as well (NFKD and case
  folding: "…" -> "...", "ﬁ" -> "fi", "ß" -> "ss", full-width letters to
  ASCII), so it differs from BERT on text containing them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from keras_bert_kit.id_checks import check_id_range
from keras_bert_kit.keras_internals import accept_raw_inputs
from keras_bert_kit.tokenization.vocabulary import (
    CLS_TOKEN,
    MASK_TOKEN,
    PAD_TOKEN,
    SEP_TOKEN,
    UNK_TOKEN,
    load_vocabulary,
    save_vocabulary,
)
from keras_bert_kit.validation import is_int

NORMALIZERS = ("bert", "tf_text")

# What BERT's `_clean_text` deletes: every "other" (C*) character but tab, line
# feed and carriage return (those become spaces), plus U+FFFD, which also
# stands in for invalid UTF-8 after transcoding.
_DELETED_CHARACTERS = r"[^\P{C}\t\n\r]|\x{FFFD}"
_COMBINING_MARKS = r"\p{Mn}"

# BERT replaces a word longer than 100 characters by [UNK]; tensorflow-text
# counts bytes. The two agree on ASCII words (and accents are stripped first).
MAX_BYTES_PER_WORD = 100


def normalize_text(text, lowercase=True, strip_accents=True):
    """BERT's text normalisation, in-graph, on a string tensor of any shape.

    Invalid UTF-8 becomes U+FFFD, which is then deleted with control, format
    and private-use characters; accents are stripped (NFD, then combining marks
    dropped) and text is lowercased when asked. This is what Google's BERT and
    Hugging Face's `BertTokenizer` do before splitting words.
    """
    text = tf.strings.unicode_transcode(
        text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
    )
    text = tf.strings.regex_replace(text, _DELETED_CHARACTERS, "")
    if strip_accents:
        text = tf_text.normalize_utf8(text, "NFD")
        text = tf.strings.regex_replace(text, _COMBINING_MARKS, "")
    if lowercase:
        # ICU lowercases a word-final capital sigma to "ς"; BERT lowercases
        # character by character, always to "σ".
        text = tf.strings.regex_replace(text, "\u03a3", "\u03c3")
        text = tf.strings.lower(text, encoding="utf-8")
    return text


def as_string_tensor(inputs, what="inputs"):
    if isinstance(inputs, (tf.Tensor, tf.RaggedTensor)):
        tensor = inputs
    else:
        try:
            tensor = tf.convert_to_tensor(inputs)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"{what} must be a string, a list of strings or a string tensor; "
                f"got {type(inputs).__name__}: {e}"
            ) from e
    if tensor.dtype != tf.string:
        raise ValueError(
            f"{what} must hold text (dtype string); got dtype {tensor.dtype.name}. "
            "Token ids go straight to the model; only text needs tokenizing."
        )
    return tensor


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class BertTokenizer(keras.layers.Layer):
    """WordPiece tokenizer for BERT vocabularies, as a Keras layer.

    Args:
        vocabulary: a vocab.txt path or a list of tokens (id = position).
            The vocabulary is copied: the original file may be deleted.
        lowercase: lowercase text first (uncased vocabularies).
        strip_accents: remove accents (NFD, then drop combining marks).
            `None` follows `lowercase`, as in BERT.
        normalizer: `"bert"` (exact BERT / Hugging Face behaviour) or
            `"tf_text"` (tensorflow-text's TFLite-native normaliser); see the
            module docstring.

    Call it (or `tokenize`) on a string, a list of strings or a string tensor:
    a scalar gives an int32 `[num_tokens]` tensor, a batch `[batch]` gives an
    int32 `tf.RaggedTensor` `[batch, (num_tokens)]`.
    """

    def __init__(
        self,
        vocabulary,
        lowercase=True,
        strip_accents=None,
        normalizer="bert",
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Text in, ids out: Keras must not convert the string inputs.
        accept_raw_inputs(self)

        if normalizer not in NORMALIZERS:
            raise ValueError(f"`normalizer` must be one of {NORMALIZERS}; got {normalizer!r}.")
        strip = lowercase if strip_accents is None else strip_accents
        if normalizer == "tf_text" and strip != lowercase:
            raise ValueError(
                "The 'tf_text' normalizer strips accents exactly when it lowercases; "
                f"got lowercase={lowercase}, strip_accents={strip_accents}. "
                "Use normalizer='bert' for other combinations."
            )
        tokens = load_vocabulary(vocabulary)
        if UNK_TOKEN not in tokens:
            raise ValueError(f"The vocabulary has no {UNK_TOKEN} token.")

        self.lowercase = bool(lowercase)
        self.strip_accents = strip_accents
        self.normalizer = normalizer
        self._strip = bool(strip)
        self._tokens = tokens
        self._ids = {token: i for i, token in enumerate(tokens)}
        self._fast_tokenizer = tf_text.FastBertTokenizer(
            vocab=tokens,
            token_out_type=tf.int32,
            unknown_token=UNK_TOKEN,
            max_bytes_per_word=MAX_BYTES_PER_WORD,
            support_detokenization=True,
            lower_case_nfd_strip_accents=normalizer == "tf_text" and self.lowercase,
        )
        # The vocabulary travels with SavedModels as assets/vocab.txt. It is a
        # private copy, so the user's file can change or go away.
        self._vocab_dir = tempfile.mkdtemp(prefix="keras_bert_kit_vocab_")
        weakref.finalize(self, shutil.rmtree, self._vocab_dir, True)
        self.vocabulary_file = tf.saved_model.Asset(
            save_vocabulary(tokens, os.path.join(self._vocab_dir, "vocab.txt"))
        )
        self.built = True

    # -- vocabulary -------------------------------------------------------------

    def get_vocabulary(self) -> list[str]:
        return list(self._tokens)

    def vocabulary_size(self) -> int:
        return len(self._tokens)

    def token_to_id(self, token: str) -> int:
        if token not in self._ids:
            raise ValueError(f"{token!r} is not in the vocabulary.")
        return self._ids[token]

    def id_to_token(self, token_id: int) -> str:
        if not is_int(token_id):
            raise ValueError(f"A token id must be an integer; got {type(token_id).__name__}.")
        if not 0 <= token_id < len(self._tokens):
            raise ValueError(
                f"Token id {token_id} is outside the vocabulary [0, {len(self._tokens)})."
            )
        return self._tokens[token_id]

    def _special_id(self, token):
        return self._ids.get(token)

    @property
    def pad_token_id(self):
        return self._special_id(PAD_TOKEN)

    @property
    def unk_token_id(self):
        return self._special_id(UNK_TOKEN)

    @property
    def cls_token_id(self):
        return self._special_id(CLS_TOKEN)

    @property
    def sep_token_id(self):
        return self._special_id(SEP_TOKEN)

    @property
    def mask_token_id(self):
        return self._special_id(MASK_TOKEN)

    @property
    def special_token_ids(self) -> list[int]:
        """Ids of [PAD], [UNK], [CLS], [SEP], [MASK] that the vocabulary has."""
        ids = (self.pad_token_id, self.unk_token_id, self.cls_token_id,
               self.sep_token_id, self.mask_token_id)
        return sorted(i for i in ids if i is not None)

    def save_vocabulary(self, path) -> str:
        """Writes the vocabulary as vocab.txt at `path`."""
        return save_vocabulary(self._tokens, path)

    # -- tokenization ---------------------------------------------------------

    def tokenize(self, inputs):
        """Text to int32 ids: `[num_tokens]` for a string, ragged `[batch, (num_tokens)]`."""
        text = as_string_tensor(inputs)
        if text.shape.rank not in (0, 1):
            raise ValueError(
                f"Tokenize a string or a 1-D batch of strings; got shape {text.shape}."
            )
        scalar = text.shape.rank == 0
        if scalar:
            text = text[tf.newaxis]
        if self.normalizer == "bert":
            text = normalize_text(text, lowercase=self.lowercase, strip_accents=self._strip)
        ids = self._fast_tokenizer.tokenize(text)
        return ids[0] if scalar else ids

    def call(self, inputs):
        return self.tokenize(inputs)

    def detokenize(self, ids, skip_special_tokens=True):
        """Ids back to text: pieces are joined, words separated by one space.

        `ids` may be a `[num_tokens]` vector, a `[batch, seq]` tensor (padding
        included) or a ragged batch. With `skip_special_tokens`, [PAD], [CLS],
        [SEP] and [MASK] are left out. Lowercasing and accent stripping are not
        undone.

        Raises:
            InvalidIdsError: eagerly, for an id outside `[0, vocabulary_size())`.
            tf.errors.InvalidArgumentError: the same, in a graph (`tf.function`,
                `tf.data`, a SavedModel).
        """
        ids = ids if isinstance(ids, tf.RaggedTensor) else tf.convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise ValueError(f"`ids` must be integer token ids; got dtype {ids.dtype.name}.")
        if ids.shape.rank not in (1, 2):
            raise ValueError(
                f"`ids` must be a [num_tokens] vector or a [batch, seq] batch; got shape "
                f"{ids.shape}."
            )
        scalar = ids.shape.rank == 1
        if scalar:
            ids = ids[tf.newaxis]
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        values = ids.flat_values
        if values.dtype == tf.uint64:
            # Saturates rather than wraps: an id past int64 stays out of range.
            values = tf.minimum(values, tf.constant(np.iinfo(np.int64).max, tf.uint64))
        if values.dtype not in (tf.int32, tf.int64):
            values = tf.cast(values, tf.int64)
        # The detokenizer op reads its table at each id unchecked: an id outside
        # it crashes the process. The check comes before the cast, so that an
        # int64 id of 2**40 is refused rather than truncated.
        values = check_id_range(values, len(self._tokens), "ids", "BertTokenizer.detokenize")
        ids = ids.with_flat_values(tf.cast(values, tf.int32))
        if skip_special_tokens:
            skipped = [i for i in self.special_token_ids if i != self.unk_token_id]
            if skipped:
                keep = tf.reduce_all(
                    tf.not_equal(ids.flat_values[:, None], tf.constant(skipped, tf.int32)),
                    axis=-1,
                )
                ids = tf.ragged.boolean_mask(ids, ids.with_flat_values(keep))
        text = self._fast_tokenizer.detokenize(ids)
        return text[0] if scalar else text

    def compute_output_spec(self, inputs):
        shape = tuple(inputs.shape) + (None,)
        return keras.KerasTensor(shape, dtype="int32", ragged=True)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary=self.get_vocabulary(),
            lowercase=self.lowercase,
            strip_accents=self.strip_accents,
            normalizer=self.normalizer,
        )
        return config

