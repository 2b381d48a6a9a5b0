"""SpanExtractor: windowing, answer positions, max-context decoding, offsets, training."""

import keras
import numpy as np
import pytest

from keras_bert_kit.tasks import SpanExtractor, SpanExtractorPreprocessor, decode_answers
from tests.tasks.conftest import tiny_encoder

CONTEXT = ("The Eiffel Tower, completed in 1889, stands in Paris. It was designed by "
           "Gustave Eiffel's company and is 330 metres tall.")
QUESTIONS = ["When was the tower completed?", "Who designed it?"]
ANSWERS = [("1889", CONTEXT.index("1889")), ("Gustave Eiffel's company", CONTEXT.index("Gustave"))]


def preprocessor(uncased_tokenizer, sequence_length=24, stride=4):
    return SpanExtractorPreprocessor(uncased_tokenizer, sequence_length=sequence_length,
                                     stride=stride, max_question_length=8)


def test_windows_cover_the_context_with_overlap(uncased_tokenizer):
    features = preprocessor(uncased_tokenizer).features(QUESTIONS, [CONTEXT, CONTEXT], ANSWERS)
    context_ids = uncased_tokenizer.tokenize(CONTEXT).numpy().tolist()
    for example in range(2):
        rows = np.nonzero(features.example_index == example)[0]
        assert len(rows) > 1  # the context is longer than one window
        covered = []
        for row in rows:
            segment = features.inputs["segment_ids"][row]
            mask = features.inputs["padding_mask"][row]
            ids = features.inputs["input_ids"][row][(segment == 1) & (mask == 1)][:-1]
            covered.append(ids.tolist())
        # Consecutive windows overlap by `stride` tokens and together give the context.
        rebuilt = covered[0]
        for window in covered[1:]:
            assert rebuilt[-4:] == window[:4]
            rebuilt += window[4:]
        assert rebuilt == context_ids
    # Every context token is the max-context token of exactly one window.
    assert features.max_context.sum() == 2 * len(context_ids)


def test_answer_positions_are_labelled_only_where_the_whole_answer_fits(uncased_tokenizer):
    features = preprocessor(uncased_tokenizer).features(QUESTIONS, [CONTEXT, CONTEXT], ANSWERS)
    for row in range(len(features)):
        start, end = features.start_positions[row], features.end_positions[row]
        text, char_start = ANSWERS[features.example_index[row]]
        offsets = features.offsets[row]
        window = offsets[offsets[:, 0] >= 0]
        holds = window[0, 0] <= char_start and window[-1, 1] >= char_start + len(text)
        if not holds:
            assert start == end == 0
            continue
        assert CONTEXT[offsets[start, 0]:offsets[end, 1]] == text
    assert np.count_nonzero(features.start_positions) >= 2


def test_decoding_maps_spans_to_characters_and_respects_the_rules(uncased_tokenizer):
    features = preprocessor(uncased_tokenizer).features(QUESTIONS[:1], [CONTEXT])
    rows, length = len(features), features.offsets.shape[1]
    start = np.full((rows, length), -5.0)
    end = np.full((rows, length), -5.0)
    target = CONTEXT.index("330 metres")
    for row in range(rows):
        positions = np.nonzero(features.offsets[row, :, 0] == target)[0]
        if len(positions) and features.max_context[row, positions[0]]:
            start[row, positions[0]] = 5.0
            end[row, positions[0] + 1] = 5.0  # "330 metres": two basic words
        start[row, 0] = end[row, 0] = 50.0  # [CLS] is never an answer
    answer = decode_answers(start, end, features, [CONTEXT])[0]
    assert answer["text"] == "330 metres"
    assert CONTEXT[answer["start"]:answer["end"]] == "330 metres"
    assert answer["score"] == 10.0
    # An end before the start, or a span over max_answer_length, is never chosen.
    assert decode_answers(end, start, features, [CONTEXT])[0]["text"] != "330 metres"
    short = decode_answers(start, end, features, [CONTEXT], max_answer_length=1)[0]
    assert short["text"] != "330 metres"


def test_answers_keep_original_characters(uncased_tokenizer):
    context = "Café  owners met at the Müller-Straße, 5 p.m. sharp."
    features = preprocessor(uncased_tokenizer, sequence_length=64, stride=8).features(
        ["Where?"], [context], [("Müller-Straße", context.index("Müller"))]
    )
    row = int(np.nonzero(features.start_positions)[0][0])
    s, e = features.start_positions[row], features.end_positions[row]
    assert context[features.offsets[row, s, 0]:features.offsets[row, e, 1]] == "Müller-Straße"


def test_learns_the_answers(uncased_tokenizer):
    model = SpanExtractor(tiny_encoder(), preprocessor=preprocessor(uncased_tokenizer),
                          dropout=0.0)
    model.compile(learning_rate=5e-3, warmup_fraction=0.0)
    model.fit((QUESTIONS * 6, [CONTEXT] * 12), ANSWERS * 6, epochs=5, batch_size=4, verbose=0)
    answers = model.answer(QUESTIONS, [CONTEXT, CONTEXT])
    assert [a["text"] for a in answers] == [text for text, _ in ANSWERS]
    outputs = model.predict((QUESTIONS, [CONTEXT, CONTEXT]), verbose=0)
    assert outputs["start_logits"].shape[1] == 24
    assert model.encoder.pooler.trainable is False  # unused by QA, so frozen


def test_saved_and_reloaded(uncased_tokenizer, tmp_path):
    model = SpanExtractor(tiny_encoder(), preprocessor=preprocessor(uncased_tokenizer))
    path = str(tmp_path / "qa.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert again.answer(QUESTIONS, [CONTEXT] * 2) == model.answer(QUESTIONS, [CONTEXT] * 2)
    assert again.preprocessor.stride == 4


def test_bad_input(uncased_tokenizer):
    qa = preprocessor(uncased_tokenizer)
    with pytest.raises(ValueError, match="is not at character 3"):
        qa.features(["q"], [CONTEXT], [("1889", 3)])
    with pytest.raises(ValueError, match="2 questions but 1 contexts"):
        qa.features(QUESTIONS, [CONTEXT])
    with pytest.raises(ValueError, match="stride"):
        SpanExtractorPreprocessor(uncased_tokenizer, sequence_length=24, stride=20,
                                  max_question_length=8)
    with pytest.raises(ValueError, match="no room for context"):
        SpanExtractorPreprocessor(uncased_tokenizer, sequence_length=10, max_question_length=8)
    with pytest.raises(ValueError, match="tuple \\(questions, contexts\\)"):
        qa.dataset(QUESTIONS)
