"""`SpanExtractorPreprocessor`: questions and contexts to windowed model inputs; answer decoding.

A context longer than the window is cut into overlapping windows (`stride`
tokens of overlap); each window is one model input (a "feature"). Token spans
map back to characters through BERT's basic tokens
(`tokenization.words.split_words`), so answers are exact slices of the
original context.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_bert_kit.tokenization.words import split_words

AUTOTUNE = tf.data.AUTOTUNE


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
        if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(
            start, (int, np.integer)
        ):
            raise ValueError(f"Answer {i} must be (non-empty text, int start); got {answer!r}.")
        if contexts[i][start:start + len(text)] != text:
            raise ValueError(
                f"Answer {i} {text!r} is not at character {start} of its context, which holds "
                f"{contexts[i][start:start + len(text)]!r} there."
            )
        out.append((text, int(start)))
    return out


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class SpanExtractorPreprocessor:
    """Questions and contexts to windowed model inputs (`QAFeatures`), in Python.

    Windowing gives a variable number of inputs per example, so this runs
    eagerly over lists, not inside a `tf.data` graph.

    Args:
        tokenizer: a `BertTokenizer`.
        sequence_length: tokens per window, special tokens included.
        stride: tokens of overlap between consecutive windows of a context.
        max_question_length: questions are cut to this many tokens.
    """

    def __init__(self, tokenizer, sequence_length=384, stride=128, max_question_length=64):
        if isinstance(sequence_length, bool) or not isinstance(sequence_length, int):
            raise ValueError(f"`sequence_length` must be an integer; got {sequence_length!r}.")
        if max_question_length < 1 or sequence_length - max_question_length - 3 < 1:
            raise ValueError(
                f"`sequence_length` {sequence_length} leaves no room for context after a "
                f"question of up to {max_question_length} tokens and 3 special tokens."
            )
        room = sequence_length - max_question_length - 3
        if not 0 <= stride < room:
            raise ValueError(
                f"`stride` must be in [0, {room}) (the context room of a window); got {stride!r}."
            )
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.stride = stride
        self.max_question_length = max_question_length

    def _context_tokens(self, contexts):
        """Per context: token ids, and the character span of each token."""
        spans = [split_words(context) for context in contexts]
        words = [context[s:e] for context, context_spans in zip(contexts, spans)
                 for s, e in context_spans]
        if words:  # One tokenizer call for every word of every context.
            pieces = self.tokenizer.tokenize(words)
            counts, ids = pieces.row_lengths().numpy(), pieces.flat_values.numpy()
        else:
            counts, ids = np.zeros((0,), np.int64), np.zeros((0,), np.int32)
        out, word, token = [], 0, 0
        for context_spans in spans:
            word_counts = counts[word:word + len(context_spans)]
            n = int(word_counts.sum())
            offsets = np.repeat(np.asarray(context_spans, np.int64).reshape(-1, 2), word_counts,
                                axis=0)
            out.append((ids[token:token + n], offsets))
            word, token = word + len(context_spans), token + n
        return out

    def features(self, questions, contexts, answers=None) -> QAFeatures:
        """Model inputs for each window of each (question, context) example.

        Args:
            questions, contexts: lists of strings, the same length.
            answers: for training, one `(text, start_char)` per example (or a
                list of those; the first is used).
        """
        questions, contexts = list(questions), list(contexts)
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts.")
        if not questions:
            raise ValueError("No examples: the question list is empty.")
        for what, values in (("questions", questions), ("contexts", contexts)):
            for i, value in enumerate(values):
                if not isinstance(value, str):
                    raise ValueError(f"`{what}[{i}]` must be a string; got {type(value).__name__}.")
        if answers is not None:
            answers = _normalize_answers(list(answers), len(questions), contexts)

        tok = self.tokenizer
        question_ids = tok.tokenize(questions)
        question_ids = [row[: self.max_question_length] for row in question_ids.to_list()]
        rows = dict(input_ids=[], segment_ids=[], padding_mask=[])
        starts, ends, example_index, offsets_out, windows = [], [], [], [], []
        context_tokens = self._context_tokens(contexts)
        for i, (question, (ids, offsets)) in enumerate(zip(question_ids, context_tokens)):
            room = self.sequence_length - len(question) - 3
            window_starts, start = [], 0
            while True:
                window_starts.append(start)
                if start + room >= len(ids):
                    break
                start += room - self.stride
            for start in window_starts:
                end = min(start + room, len(ids))
                head = [tok.cls_token_id, *question, tok.sep_token_id]
                tokens = head + ids[start:end].tolist() + [tok.sep_token_id]
                length = len(tokens)
                pad = self.sequence_length - length
                rows["input_ids"].append(tokens + [tok.pad_token_id] * pad)
                rows["segment_ids"].append([0] * len(head) + [1] * (length - len(head)) + [0] * pad)
                rows["padding_mask"].append([1] * length + [0] * pad)
                token_offsets = np.full((self.sequence_length, 2), -1, np.int64)
                token_offsets[len(head):len(head) + end - start] = offsets[start:end]
                offsets_out.append(token_offsets)
                example_index.append(i)
                windows.append((i, start, end, len(head)))
                if answers is not None:
                    s, e = self._answer_positions(answers[i], offsets, start, end, len(head))
                    starts.append(s)
                    ends.append(e)
        inputs = {k: np.asarray(v, np.int32) for k, v in rows.items()}
        return QAFeatures(
            inputs=inputs,
            start_positions=np.asarray(starts, np.int32) if answers is not None else None,
            end_positions=np.asarray(ends, np.int32) if answers is not None else None,
            example_index=np.asarray(example_index, np.int64),
            offsets=np.stack(offsets_out),
            max_context=self._max_context(windows),
        )

    @staticmethod
    def _answer_positions(answer, offsets, start, end, shift):
        """Token positions of the answer in a window, or (0, 0) when it is not all inside."""
        text, char_start = answer
        char_end = char_start + len(text)
        inside = np.nonzero((offsets[:, 1] > char_start) & (offsets[:, 0] < char_end))[0]
        if len(inside) == 0 or inside[0] < start or inside[-1] >= end:
            return 0, 0
        return int(inside[0] - start + shift), int(inside[-1] - start + shift)

    def _max_context(self, windows):
        """Per feature and position: is this the window where the token has the most context?"""
        best = {}
        for feature, (i, start, end, _) in enumerate(windows):
            for token in range(start, end):
                score = min(token - start, end - 1 - token) + 0.01 * (end - start)
                if (i, token) not in best or score > best[(i, token)][0]:
                    best[(i, token)] = (score, feature)
        mask = np.zeros((len(windows), self.sequence_length), bool)
        for (i, token), (_, feature) in best.items():
            _, start, _, shift = windows[feature]
            mask[feature, token - start + shift] = True
        return mask

    def dataset(self, x, y=None, sample_weight=None, batch_size=32, shuffle=False, seed=None):
        """A batched dataset of the features of `x = (questions, contexts)` and answers `y`."""
        if not (isinstance(x, tuple) and len(x) == 2):
            raise ValueError("QA input is a tuple (questions, contexts).")
        if sample_weight is not None:
            raise ValueError("QA examples take no sample_weight (windows multiply examples).")
        features = self.features(x[0], x[1], y)
        data = features.inputs if y is None else (features.inputs, features.labels())
        dataset = tf.data.Dataset.from_tensor_slices(data)
        if shuffle:
            dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(batch_size).prefetch(AUTOTUNE)

    def __call__(self, *args, **kwargs):
        raise ValueError(
            "QA preprocessing cuts contexts into windows in Python: pass lists of questions "
            "and contexts (or call `features`), not a tf.data.Dataset of strings."
        )

    def get_config(self):
        return dict(
            tokenizer=keras.saving.serialize_keras_object(self.tokenizer),
            sequence_length=self.sequence_length,
            stride=self.stride,
            max_question_length=self.max_question_length,
        )

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


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
