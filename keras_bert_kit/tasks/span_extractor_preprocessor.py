"""`SpanExtractorPreprocessor`: questions and contexts to windowed model inputs; answer decoding.

A context longer than the window is cut into overlapping windows (`stride`
tokens of overlap); each window is one model input (a "feature"). Token spans
map back to characters through BERT's basic tokens
(`tokenization.words.split_words_with_offsets`), so answers are exact slices
of the original context. Everything runs as TensorFlow (ragged) ops, so the
preprocessor maps over a `tf.data.Dataset` of raw strings and traces into a
`tf.function`.
"""

from __future__ import annotations

import dataclasses
import functools

import keras
import numpy as np
import tensorflow as tf

from keras_bert_kit.tasks.text_preprocessor import TextPreprocessor
from keras_bert_kit.tokenization.words import split_words_with_offsets
from keras_bert_kit.validation import check_int, is_int

AUTOTUNE = tf.data.AUTOTUNE
# `features()` preprocesses this many examples per call, to bound memory on large sets.
FEATURES_CHUNK = 1024


@dataclasses.dataclass
class QAFeatures:
    """Model inputs for QA examples, and what decoding needs to map answers back.

    Fields (one row per feature, i.e. per window):
        inputs: `input_ids`, `segment_ids`, `padding_mask`, int32 `[features, seq]`.
        start_positions, end_positions: int32 `[features]` answer token
            positions (0, the [CLS], when the answer is not in the window);
            None without answers.
        example_index: int `[features]`, the example each feature belongs to.
        offsets: int `[features, seq, 2]`, the character span in the context
            of each token; -1 for tokens outside the context.
        max_context: bool `[features, seq]`, whether this window gives the
            token the most context on both sides.
    """

    inputs: dict
    start_positions: np.ndarray | None
    end_positions: np.ndarray | None
    example_index: np.ndarray
    offsets: np.ndarray
    max_context: np.ndarray

    def __len__(self):
        return len(self.example_index)

    def labels(self):
        return {"start_logits": self.start_positions, "end_logits": self.end_positions}


def _normalize_answers(answers, count, contexts):
    """Answers as one `(text, start)` per example (the first, when several are given)."""
    if len(answers) != count:
        raise ValueError(f"{count} questions but {len(answers)} answers.")
    out = []
    for i, answer in enumerate(answers):
        if isinstance(answer, (list, tuple)) and answer and isinstance(answer[0], (list, tuple)):
            answer = answer[0]  # Several acceptable answers: train on the first.
        if not (isinstance(answer, (list, tuple)) and len(answer) == 2):
            raise ValueError(
                f"Answer {i} must be (text, start_char) or a list of those; got {answer!r}."
            )
        text, start = answer
        if not isinstance(text, str) or not text or not is_int(start):
            raise ValueError(f"Answer {i} must be (non-empty text, int start); got {answer!r}.")
        if contexts[i][start:start + len(text)] != text:
            raise ValueError(
                f"Answer {i} {text!r} is not at character {start} of its context, which holds "
                f"{contexts[i][start:start + len(text)]!r} there."
            )
        out.append((text, int(start)))
    return out


def _check_strings(values, what):
    if isinstance(values, (str, bytes)):
        raise ValueError(f"`{what}` must be a list of strings, not a single string.")
    values = list(values)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(f"`{what}[{i}]` must be a string; got {type(value).__name__}.")
    return values


def _is_strings(value):
    """Whether `value` is a batch of strings: a string tensor, or a list of `str`."""
    if isinstance(value, (tf.Tensor, np.ndarray)):
        return value.dtype in (tf.string, np.object_) or value.dtype.kind in "SU"
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _constant_rows(value, rows, dtype):
    """A ragged `[rows, (1)]` column of `value`."""
    return tf.RaggedTensor.from_tensor(tf.fill(tf.stack([rows, 1]), tf.constant(value, dtype)))


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class SpanExtractorPreprocessor(TextPreprocessor):
    """Questions and contexts (and answers) to windowed model inputs and span labels.

    Args:
        tokenizer: a `BertTokenizer`.
        sequence_length: tokens per window, special tokens included.
        stride: tokens of overlap between consecutive windows of a context.
        max_question_length: questions are cut to this many tokens.

    Call: `preprocessor(x, y=None, sample_weight=None)`, as every task
    preprocessor. `x = (questions, contexts)`, 1-D string tensors (or lists)
    of the same length `[batch]`. `y`, optional, is a dict of the answers'
    `answer_start`, int `[batch]`, the answer's first character (code point)
    in its context (-1: no answer, both labels 0), and `answer_text`, string
    `[batch]`. `sample_weight`, optional, float `[batch]`, weighs each
    example's windows. Returns, packed by `keras.utils.pack_x_y_sample_weight`,
    features of a flat batch of `windows` (an example has one window or more):
    `input_ids`, `segment_ids`, `padding_mask`, int32 `[windows, seq]`, `seq`
    the longest window of the batch; `offsets`, int32 `[windows, seq, 2]`, each
    token's character span in the original context (-1 outside the context);
    `max_context`, bool `[windows, seq]`, whether the window gives the token
    the most context on both sides (BERT's rule); and `example_index`, int32
    `[windows]`, the example of the batch each window comes from. With `y`,
    the labels are `{"start_logits": start, "end_logits": end}`, int32
    `[windows]` token positions of the answer in the window, 0 ([CLS]) where
    the whole answer is not inside it; `sample_weight` comes back per window.
    So `tf.data.Dataset.from_tensor_slices((questions, contexts)).batch(8)
    .map(preprocessor)` works (`map` passes such an element as two
    arguments; two string batches are read as `x`), and `SpanExtractor.fit` takes such a dataset
    of raw `((questions, contexts), answers)`.

    `features()` and `dataset()` take Python lists, answers as `(text,
    start_char)` pairs, and pad every window to `sequence_length`.
    """

    def __init__(self, tokenizer, sequence_length=384, stride=128, max_question_length=64,
                 **kwargs):
        # The base checks `sequence_length` (an integer >= 3).
        super().__init__(tokenizer, sequence_length, **kwargs)
        check_int("max_question_length", max_question_length, minimum=1)
        check_int("stride", stride, minimum=0)
        if sequence_length - max_question_length - 3 < 1:
            raise ValueError(
                f"`sequence_length` {sequence_length} leaves no room for context after a "
                f"question of up to {max_question_length} tokens and 3 special tokens."
            )
        room = sequence_length - max_question_length - 3
        if not 0 <= stride < room:
            raise ValueError(
                f"`stride` must be in [0, {room}) (the context room of a window); got {stride!r}."
            )
        self.stride = stride
        self.max_question_length = max_question_length
        # `features()` runs the windowing as one graph: several times faster than eagerly.
        self._padded_windows = tf.function(
            functools.partial(self.windows, padding="max_length"), reduce_retracing=True)

    # -- tokens -------------------------------------------------------------------------

    def tokens(self, questions, contexts):
        """Question ids, and context ids with each token's character span.

        Each basic word of a context is tokenized on its own, so every token
        traces back to the characters of its word. Questions and words go
        through one tokenizer call (one copy of its vocabulary in a graph).
        Returns ragged `[batch, (tokens)]` `(question_ids, context_ids,
        starts, ends)`: int32 ids (questions not yet cut), int64 code point
        offsets.
        """
        words, starts, ends = split_words_with_offsets(contexts)
        pieces = self.tokenizer.tokenize(tf.concat([questions, words.flat_values], axis=0))
        if isinstance(pieces, tf.Tensor):
            pieces = tf.RaggedTensor.from_tensor(pieces)
        pieces = tf.cast(pieces, tf.int32)
        batch = tf.shape(questions)[0]
        question_ids, pieces = pieces[:batch], pieces[batch:]
        counts = pieces.row_lengths()
        context_ids = tf.RaggedTensor.from_row_lengths(pieces, words.row_lengths(),
                                                       validate=False).merge_dims(1, 2)

        def per_token(offsets):
            return context_ids.with_flat_values(tf.repeat(offsets.flat_values, counts))

        return question_ids, context_ids, per_token(starts), per_token(ends)

    # -- windows ------------------------------------------------------------------------

    def windows(self, questions, contexts, answer_start=None, answer_text=None,
                sample_weight=None, padding="longest"):
        """`(features, labels, sample_weight)` of the windows of a batch, as `call` gives them.

        Answers come as their two tensors `answer_start` and `answer_text`
        (`call`'s `y`); labels and sample weights are None without them.
        `padding="max_length"` pads every window to `sequence_length`.
        """
        questions = tf.convert_to_tensor(questions, tf.string)
        contexts = tf.convert_to_tensor(contexts, tf.string)
        for name, value in (("questions", questions), ("contexts", contexts)):
            if value.shape.rank != 1:
                raise ValueError(
                    f"`{name}` must be a 1-D batch of strings; got shape {value.shape}."
                )
        if (questions.shape[0] is not None and contexts.shape[0] is not None
                and questions.shape[0] != contexts.shape[0]):
            raise ValueError(
                f"{questions.shape[0]} questions but {contexts.shape[0]} contexts."
            )
        batch = tf.shape(questions, out_type=tf.int64)[0]
        checks = [tf.debugging.assert_equal(
            batch, tf.shape(contexts, out_type=tf.int64)[0],
            message="the questions and contexts batch sizes differ",
        )]
        with tf.control_dependencies(checks):
            question_ids, context_ids, context_starts, context_ends = self.tokens(
                questions, contexts)
        question_ids = question_ids[:, : self.max_question_length]

        # Windows of each example: start k * step for k < count, as BERT's loop makes them.
        question_length = question_ids.row_lengths()
        head = question_length + 2  # [CLS] question [SEP]
        room = self.sequence_length - head - 1
        step = room - self.stride
        context_length = context_ids.row_lengths()
        extra = tf.maximum(context_length - room, 0)
        window_count = (extra + step - 1) // step + 1
        example_index = tf.repeat(tf.range(batch), window_count)
        window_start = tf.ragged.range(window_count).flat_values * tf.gather(step, example_index)
        window_room = tf.gather(room, example_index)
        window_end = tf.minimum(window_start + window_room,
                                tf.gather(context_length, example_index))
        window_head = tf.gather(head, example_index)
        windows = tf.shape(example_index, out_type=tf.int64)[0]

        # Context token positions of each window, in the flat tokens of the batch.
        row_start = tf.gather(context_ids.row_starts(), example_index)
        positions = tf.ragged.range(row_start + window_start, row_start + window_end)
        window_ids = tf.gather(context_ids.flat_values, positions)
        cls = _constant_rows(self.tokenizer.cls_token_id, windows, tf.int32)
        sep = _constant_rows(self.tokenizer.sep_token_id, windows, tf.int32)
        window_question = tf.gather(question_ids, example_index)
        input_ids = tf.concat([cls, window_question, sep, window_ids, sep], axis=1)
        segment_ids = tf.concat([
            tf.zeros_like(cls), tf.zeros_like(window_question), tf.zeros_like(sep),
            tf.ones_like(window_ids), tf.ones_like(sep),
        ], axis=1)
        outside = tf.zeros_like(tf.concat([cls, window_question, sep], axis=1), tf.int64) - 1
        token_starts, token_ends = (
            tf.concat([outside, tf.gather(offsets.flat_values, positions), outside[:, :1]], 1)
            for offsets in (context_starts, context_ends)
        )
        max_context = tf.concat([
            tf.zeros_like(outside, tf.bool),
            self._max_context(positions, window_start, window_end),
            tf.zeros_like(cls, tf.bool),
        ], axis=1)

        length = self.sequence_length if padding == "max_length" else None

        def dense(ragged, value):
            return ragged.to_tensor(value, shape=None if length is None else [None, length])

        features = {
            "input_ids": dense(input_ids, self.tokenizer.pad_token_id),
            "segment_ids": dense(segment_ids, 0),
            "padding_mask": dense(tf.ones_like(input_ids), 0),
            "offsets": tf.cast(
                tf.stack([dense(token_starts, -1), dense(token_ends, -1)], axis=-1), tf.int32),
            "max_context": dense(max_context, False),
            "example_index": tf.cast(example_index, tf.int32),
        }
        labels = None
        if answer_start is not None:
            labels = self._answer_positions(
                contexts, tf.convert_to_tensor(answer_start), answer_text, context_starts,
                context_ends, example_index, window_start, window_end, window_head,
            )
        if sample_weight is not None:
            if labels is None:
                raise ValueError("`sample_weight` needs answers (`y`).")
            sample_weight = tf.gather(tf.convert_to_tensor(sample_weight), example_index)
        return features, labels, sample_weight

    @staticmethod
    def _max_context(positions, window_start, window_end):
        """Ragged `[windows, (tokens)]`: is this the window where the token has the most context?

        BERT's score of a token in a window, min(left, right) context plus
        0.01 * the window's length, times 100 to stay in integers; the first
        window wins ties.
        """
        offset = tf.ragged.range(window_end - window_start)
        length = (window_end - window_start)[:, None]
        score = 100 * tf.minimum(offset, length - 1 - offset) + length
        token, score = positions.flat_values, score.flat_values
        total = tf.reduce_max(tf.concat([token + 1, [0]], 0))
        best = tf.gather(tf.math.unsorted_segment_max(score, token, total), token)
        window = positions.value_rowids()
        candidate = tf.where(score == best, window, tf.int64.max)
        first = tf.gather(tf.math.unsorted_segment_min(candidate, token, total), token)
        return positions.with_flat_values(window == first)

    @staticmethod
    def _answer_positions(contexts, answer_start, answer_text, token_starts, token_ends,
                          example_index, window_start, window_end, window_head):
        """Answer token positions per window, 0 ([CLS]) when it is not all inside."""
        answer_start = tf.cast(answer_start, tf.int64)
        answer_text = tf.convert_to_tensor(answer_text, tf.string)
        answer_length = tf.cast(tf.strings.length(answer_text, unit="UTF8_CHAR"), tf.int64)
        answered = answer_start >= 0
        context_length = tf.cast(tf.strings.length(contexts, unit="UTF8_CHAR"), tf.int64)
        found = tf.strings.substr(  # substr fails on a start past the end: clip it
            contexts, tf.clip_by_value(answer_start, 0, context_length), answer_length,
            unit="UTF8_CHAR")
        check = tf.debugging.assert_equal(
            tf.logical_or(~answered, tf.equal(found, answer_text)), True,
            message="an answer_text is not at its answer_start in its context",
        )
        char_end = answer_start + answer_length
        inside = (token_ends > answer_start[:, None]) & (token_starts < char_end[:, None])
        index = tf.ragged.range(inside.row_lengths())
        first = tf.reduce_min(tf.ragged.boolean_mask(index, inside), axis=1)
        last = tf.reduce_max(tf.ragged.boolean_mask(index, inside), axis=1)
        first, last = tf.gather(first, example_index), tf.gather(last, example_index)
        fits = (tf.gather(answered & tf.reduce_any(inside, axis=1), example_index)
                & (first >= window_start) & (last < window_end))
        with tf.control_dependencies([check]):
            start = tf.where(fits, first - window_start + window_head, 0)
        end = tf.where(fits, last - window_start + window_head, 0)
        return {"start_logits": tf.cast(start, tf.int32), "end_logits": tf.cast(end, tf.int32)}

    def call(self, x, y=None, sample_weight=None):
        if sample_weight is None and _is_strings(x) and _is_strings(y):
            # `dataset.map` unpacks a `(questions, contexts)` element into two arguments.
            x, y = (x, y), None
        if not (isinstance(x, (tuple, list)) and len(x) == 2):
            raise ValueError("QA input `x` is a tuple (questions, contexts).")
        answer_start = answer_text = None
        if y is not None:
            if not (isinstance(y, dict) and set(y) == {"answer_start", "answer_text"}):
                raise ValueError(
                    "QA answers `y` are a dict {'answer_start': int [batch], 'answer_text': "
                    f"string [batch]}}; got {type(y).__name__} "
                    f"{sorted(y) if isinstance(y, dict) else ''}."
                )
            answer_start, answer_text = y["answer_start"], y["answer_text"]
        return keras.utils.pack_x_y_sample_weight(*self.windows(
            x[0], x[1], answer_start, answer_text, sample_weight
        ))

    # -- Python lists ---------------------------------------------------------------------

    def features(self, questions, contexts, answers=None) -> QAFeatures:
        """Model inputs for each window of each (question, context) example.

        Args:
            questions, contexts: lists of strings, the same length.
            answers: for training, one `(text, start_char)` per example (or a
                list of those; the first is used).
        """
        questions = _check_strings(questions, "questions")
        contexts = _check_strings(contexts, "contexts")
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts.")
        if not questions:
            raise ValueError("No examples: the question list is empty.")
        if answers is not None:
            answers = _normalize_answers(list(answers), len(questions), contexts)
        parts = []
        for begin in range(0, len(questions), FEATURES_CHUNK):
            chunk = slice(begin, begin + FEATURES_CHUNK)
            answer_start = answer_text = None
            if answers is not None:
                answer_text = tf.constant([text for text, _ in answers[chunk]], tf.string)
                answer_start = tf.constant([start for _, start in answers[chunk]], tf.int64)
            features, labels, _ = self._padded_windows(
                tf.constant(questions[chunk], tf.string), tf.constant(contexts[chunk], tf.string),
                answer_start, answer_text,
            )
            features["example_index"] = features["example_index"] + begin
            parts.append((features, labels))

        def joined(get):
            return np.concatenate([get(part).numpy() for part in parts])

        return QAFeatures(
            inputs={name: joined(lambda part, name=name: part[0][name])
                    for name in ("input_ids", "segment_ids", "padding_mask")},
            start_positions=None if answers is None else joined(
                lambda part: part[1]["start_logits"]),
            end_positions=None if answers is None else joined(lambda part: part[1]["end_logits"]),
            example_index=joined(lambda part: part[0]["example_index"]).astype(np.int64),
            offsets=joined(lambda part: part[0]["offsets"]).astype(np.int64),
            max_context=joined(lambda part: part[0]["max_context"]),
        )

    def dataset(self, x, y=None, sample_weight=None, batch_size=32, shuffle=False, seed=None):
        """A batched dataset of the windows of `x = (questions, contexts)`, answers `y`.

        Batches hold `batch_size` windows (not examples); `sample_weight`, one
        per example, weighs each of its windows.
        """
        if not (isinstance(x, tuple) and len(x) == 2):
            raise ValueError("QA input is a tuple (questions, contexts).")
        features = self.features(x[0], x[1], y)
        data = features.inputs if y is None else (features.inputs, features.labels())
        if sample_weight is not None:
            if y is None:
                raise ValueError("`sample_weight` needs answers (`y`).")
            sample_weight = np.asarray(sample_weight, "float32")
            if sample_weight.shape != (len(x[0]),):
                raise ValueError(
                    f"`sample_weight` must hold one weight per example ({len(x[0])}); "
                    f"got shape {sample_weight.shape}."
                )
            data = (*data, sample_weight[features.example_index])
        dataset = tf.data.Dataset.from_tensor_slices(data)
        if shuffle:
            dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(batch_size).prefetch(AUTOTUNE)

    def get_config(self):
        config = super().get_config()
        config.update(stride=self.stride, max_question_length=self.max_question_length)
        return config


def decode_answers(start_logits, end_logits, features, contexts, max_answer_length=30,
                   n_best=20):
    """The best answer span of each example, over all of its features.

    Args:
        start_logits, end_logits: `[features, seq]` model outputs.
        features: the `QAFeatures` they came from.
        contexts: the examples' contexts.
        max_answer_length: the longest answer, in tokens.
        n_best: how many top start and end positions per feature to pair up.

    Returns:
        One dict per example: `text`, `start` and `end` (character offsets,
        `context[start:end] == text`) and `score` (start + end logit);
        an example with no valid span (an empty context) gets text "" and
        score -inf.
    """
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    best = [dict(text="", start=0, end=0, score=float("-inf")) for _ in contexts]
    for feature in range(len(features)):
        i = int(features.example_index[feature])
        offsets = features.offsets[feature]
        in_context = offsets[:, 0] >= 0
        starts = np.argsort(start_logits[feature])[::-1][:n_best]
        ends = np.argsort(end_logits[feature])[::-1][:n_best]
        for s in starts:
            if not in_context[s] or not features.max_context[feature, s]:
                continue
            for e in ends:
                if not in_context[e] or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(start_logits[feature, s] + end_logits[feature, e])
                if score > best[i]["score"]:
                    char_start, char_end = int(offsets[s, 0]), int(offsets[e, 1])
                    best[i] = dict(
                        text=contexts[i][char_start:char_end],
                        start=char_start,
                        end=char_end,
                        score=score,
                    )
    return best


def best_spans(start_logits, end_logits, features, contexts, max_answer_length=30):
    """`decode_answers` in TensorFlow ops, over every valid (start, end) pair.

    Args:
        start_logits, end_logits: float32 `[windows, seq]` model outputs.
        features: the windows' features, as `SpanExtractorPreprocessor` returns them.
        contexts: the batch's contexts, string `[batch]`.
        max_answer_length: the longest answer, in tokens.

    Returns:
        A dict: `answer`, string `[batch]`; `start`, `end`, int32 `[batch]`
        character offsets; `score`, float32 `[batch]`. An example with no
        valid span (an empty context) gets "", 0, 0 and -inf.
    """
    offsets, example = features["offsets"], features["example_index"]
    in_context = offsets[:, :, 0] >= 0
    can_start = in_context & features["max_context"]
    # Ends within max_answer_length tokens of each start: a band [windows, seq, max_answer_length].
    after = [[0, 0], [0, max_answer_length - 1]]
    band = tf.range(tf.shape(start_logits)[1])[:, None] + tf.range(max_answer_length)[None, :]
    end_band = tf.gather(tf.pad(end_logits, after), band, axis=1)
    can_end = tf.gather(tf.pad(in_context, after), band, axis=1)
    scores = tf.where(can_start[:, :, None] & can_end, start_logits[:, :, None] + end_band,
                      float("-inf"))
    scores = tf.reshape(scores, [tf.shape(scores)[0], -1])
    window_score = tf.reduce_max(scores, axis=1)
    window_pair = tf.argmax(scores, axis=1, output_type=tf.int32)
    batch = tf.shape(contexts)[0]
    found = tf.math.unsorted_segment_max(
        tf.cast(window_score > float("-inf"), tf.int32), example, batch) > 0
    # A segment max over -inf alone is float32's lowest, not -inf.
    score = tf.where(found, tf.math.unsorted_segment_max(window_score, example, batch),
                     float("-inf"))
    # The first window holding an example's best score, as `decode_answers` keeps it.
    windows = tf.range(tf.shape(example)[0])
    chosen = tf.math.unsorted_segment_min(
        tf.where(window_score == tf.gather(score, example), windows, tf.int32.max), example, batch
    )
    pair = tf.gather(window_pair, chosen)
    start_token = pair // max_answer_length
    end_token = start_token + pair % max_answer_length
    start = tf.where(found, tf.gather_nd(offsets[:, :, 0], tf.stack([chosen, start_token], 1)), 0)
    end = tf.where(found, tf.gather_nd(offsets[:, :, 1], tf.stack([chosen, end_token], 1)), 0)
    answer = tf.strings.substr(contexts, start, end - start, unit="UTF8_CHAR")
    return {"answer": answer, "start": start, "end": end, "score": score}
