"""SpanExtractorPreprocessor in graph: tf.data of raw strings, fit on it, text_function."""

import numpy as np
import pytest
import tensorflow as tf

from keras_bert_kit.tasks import SpanExtractor, SpanExtractorPreprocessor
from keras_bert_kit.tokenization.words import split_words
from tests.tasks.conftest import tiny_encoder

CONTEXT = ("The Eiffel Tower, completed in 1889, stands in Paris. It was designed by "
           "Gustave Eiffel's company and is 330 metres tall.")
UNICODE = "Café  owners met at the Müller-Straße, 5 p.m. 東京は日本の首都です 😀 ok."
QUESTIONS = ["When was the tower completed?", "Who designed it?", "Where did they meet?",
             "Capital?", "Anything?", ""]
CONTEXTS = [CONTEXT, CONTEXT, UNICODE, "東京は日本の首都です。", "", "a"]
ANSWERS = [("1889", CONTEXT.index("1889")), ("Gustave Eiffel's company", CONTEXT.index("Gustave")),
           ("Müller-Straße", UNICODE.index("Müller")), ("東京", 0), None, ("a", 0)]
LABELLED = [i for i, answer in enumerate(ANSWERS) if answer]


def preprocessor(tokenizer):
    return SpanExtractorPreprocessor(tokenizer, sequence_length=24, stride=4,
                                     max_question_length=8)


def reference_windows(tokenizer, question, context, answer, qa):
    """BERT's windowing in plain Python: per window, ids, offsets, max-context, labels."""
    ids, offsets = [], []
    for start, end in split_words(context):
        pieces = tokenizer.tokenize(context[start:end]).numpy().tolist()
        ids += pieces
        offsets += [(start, end)] * len(pieces)
    question_ids = tokenizer.tokenize(question).numpy().tolist()[: qa.max_question_length]
    room = qa.sequence_length - len(question_ids) - 3
    spans, start = [], 0
    while True:
        spans.append((start, min(start + room, len(ids))))
        if start + room >= len(ids):
            break
        start += room - qa.stride
    best = {}
    for window, (start, end) in enumerate(spans):
        for token in range(start, end):
            score = min(token - start, end - 1 - token) + 0.01 * (end - start)
            if token not in best or score > best[token][0]:
                best[token] = (score, window)
    shift = len(question_ids) + 2
    out = []
    for window, (start, end) in enumerate(spans):
        tokens = [tokenizer.cls_token_id, *question_ids, tokenizer.sep_token_id, *ids[start:end],
                  tokenizer.sep_token_id]
        token_offsets = [(-1, -1)] * shift + offsets[start:end] + [(-1, -1)]
        max_context = [False] * shift + [best[t][1] == window for t in range(start, end)] + [False]
        label = (0, 0)
        if answer is not None:
            char_start, char_end = answer[1], answer[1] + len(answer[0])
            inside = [t for t, (s, e) in enumerate(offsets) if e > char_start and s < char_end]
            if inside and inside[0] >= start and inside[-1] < end:
                label = (inside[0] - start + shift, inside[-1] - start + shift)
        out.append((tokens, token_offsets, max_context, label))
    return out


def test_windows_match_the_python_reference(uncased_tokenizer):
    qa = preprocessor(uncased_tokenizer)
    answers = [ANSWERS[i] for i in LABELLED]
    features = qa.features([QUESTIONS[i] for i in LABELLED], [CONTEXTS[i] for i in LABELLED],
                           answers)
    row = 0
    for example, i in enumerate(LABELLED):
        for tokens, offsets, max_context, label in reference_windows(
            uncased_tokenizer, QUESTIONS[i], CONTEXTS[i], ANSWERS[i], qa
        ):
            n = len(tokens)
            assert features.example_index[row] == example
            assert features.inputs["input_ids"][row, :n].tolist() == tokens
            assert features.inputs["padding_mask"][row].sum() == n
            assert features.offsets[row, :n].tolist() == [list(o) for o in offsets]
            assert features.max_context[row, :n].tolist() == max_context
            assert (features.start_positions[row], features.end_positions[row]) == label
            row += 1
    assert row == len(features)
    assert len(features) > len(LABELLED)  # the long contexts took several windows


def test_a_tf_data_of_raw_strings_is_preprocessed(uncased_tokenizer):
    qa = preprocessor(uncased_tokenizer)
    expected = qa.features(QUESTIONS, CONTEXTS)
    dataset = tf.data.Dataset.from_tensor_slices((QUESTIONS, CONTEXTS)).batch(4).map(qa)
    rows, first_example = 0, 0
    for batch in dataset:
        n, length = batch["input_ids"].shape
        for name in ("input_ids", "segment_ids", "padding_mask"):
            np.testing.assert_array_equal(batch[name],
                                          expected.inputs[name][rows:rows + n, :length])
        np.testing.assert_array_equal(batch["offsets"], expected.offsets[rows:rows + n, :length])
        np.testing.assert_array_equal(batch["max_context"],
                                      expected.max_context[rows:rows + n, :length])
        np.testing.assert_array_equal(batch["example_index"] + first_example,
                                      expected.example_index[rows:rows + n])
        rows, first_example = rows + n, first_example + 4
    assert rows == len(expected)


def test_answers_as_tensors_give_the_labels(uncased_tokenizer):
    qa = preprocessor(uncased_tokenizer)
    answers = [ANSWERS[i] for i in LABELLED]
    x = ([QUESTIONS[i] for i in LABELLED], [CONTEXTS[i] for i in LABELLED])
    expected = qa.features(*x, answers)
    y = {"answer_text": [text for text, _ in answers],
         "answer_start": [start for _, start in answers]}
    features, labels, weights = qa(x, y, sample_weight=[1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(labels["start_logits"], expected.start_positions)
    np.testing.assert_array_equal(labels["end_logits"], expected.end_positions)
    np.testing.assert_array_equal(weights, expected.example_index + 1.0)
    # answer_start -1: no answer, every window points at [CLS].
    _, labels = qa((["q"], [CONTEXT]), {"answer_text": [""], "answer_start": [-1]})
    assert not np.any(labels["start_logits"]) and not np.any(labels["end_logits"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="answer_text is not at"):
        qa((["q"], [CONTEXT]), {"answer_text": ["1889"], "answer_start": [500]})


def test_bad_batches(uncased_tokenizer):
    qa = preprocessor(uncased_tokenizer)
    with pytest.raises(ValueError, match="2 questions but 1 contexts"):
        qa((["a", "b"], ["c"]))
    with pytest.raises(ValueError, match="tuple \\(questions, contexts\\)"):
        qa(["a", "b", "c"])
    with pytest.raises(ValueError, match="`questions` must be a 1-D batch of strings"):
        qa(["a", "b"])  # one question and one context, not batches
    with pytest.raises(ValueError, match="answer_start"):
        qa((["a"], ["c"]), [("c", 0)])
    features = qa(([""], [""]))  # empty strings: one window, [CLS] [SEP] [SEP]
    assert features["input_ids"].shape == (1, 3)
    assert not np.any(features["max_context"])


def test_fit_on_raw_tf_data_then_text_function_equals_answer(uncased_tokenizer):
    qa = preprocessor(uncased_tokenizer)
    model = SpanExtractor(tiny_encoder(), preprocessor=qa, dropout=0.0)
    model.compile(learning_rate=5e-3, warmup_fraction=0.0)
    questions, contexts = QUESTIONS[:2] * 6, CONTEXTS[:2] * 6
    answers = {"answer_text": [text for text, _ in ANSWERS[:2]] * 6,
               "answer_start": [start for _, start in ANSWERS[:2]] * 6}
    data = tf.data.Dataset.from_tensor_slices(((questions, contexts), answers)).batch(4)
    first = model.evaluate(data, verbose=0, return_dict=True)["loss"]
    # One pass over a repeated dataset: tf.data starts the preprocessing graph once, not per epoch.
    model.fit(data.repeat(), epochs=1, steps_per_epoch=15, verbose=0)
    assert model.evaluate(data, verbose=0, return_dict=True)["loss"] < first / 2
    assert [a["text"] for a in model.answer(QUESTIONS[:2], CONTEXTS[:2])] == [
        text for text, _ in ANSWERS[:2]]

    answer_texts = model.text_function()
    got = answer_texts(tf.constant(QUESTIONS), tf.constant(CONTEXTS))
    expected = model.answer(QUESTIONS, CONTEXTS, n_best=qa.sequence_length)
    assert [a.decode() for a in got["answer"].numpy()] == [a["text"] for a in expected]
    assert got["start"].numpy().tolist() == [a["start"] for a in expected]
    assert got["end"].numpy().tolist() == [a["end"] for a in expected]
    np.testing.assert_allclose(got["score"].numpy(), [a["score"] for a in expected], rtol=1e-5)
    assert got["score"].numpy()[4] == -np.inf and got["answer"].numpy()[4] == b""
    for context, text, start, end in zip(CONTEXTS, got["answer"].numpy(), got["start"].numpy(),
                                         got["end"].numpy()):
        assert context[start:end] == text.decode()
    short = model.text_function(max_answer_length=1)(tf.constant(QUESTIONS[1:2]),
                                                     tf.constant(CONTEXTS[1:2]))
    assert short["answer"].numpy()[0].decode() == model.answer(
        QUESTIONS[1:2], CONTEXTS[1:2], max_answer_length=1, n_best=24)[0]["text"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="questions and contexts batch"):
        answer_texts(tf.constant(["a", "b"]), tf.constant(["c"]))
