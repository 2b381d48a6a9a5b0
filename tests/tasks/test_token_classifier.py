"""TokenClassifier: word/sub-token alignment, training, per-word predictions, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bert_kit.tasks import TokenClassifier, TokenClassifierPreprocessor
from tests.tasks.conftest import tiny_encoder

WORDS = [["John", "Smithsonian", "visited", "Pneumonoultramicroscopic", "Berlin"],
         ["Mary", "lives", "in", "Paris", "."]]
TAGS = [[1, 2, 0, 0, 3], [1, 0, 0, 3, 0]]


def tagger(uncased_tokenizer, kind="bert", sequence_length=32):
    return TokenClassifier(
        tiny_encoder(kind),
        num_tags=4,
        preprocessor=TokenClassifierPreprocessor(uncased_tokenizer, sequence_length),
        dropout=0.0,
    )


def test_tags_go_to_first_pieces_only(uncased_tokenizer):
    preprocessor = TokenClassifierPreprocessor(uncased_tokenizer, sequence_length=40)
    features, tags, weights = preprocessor(tf.ragged.constant(WORDS), tf.ragged.constant(TAGS))
    ids = features["input_ids"].numpy()
    tags, weights = tags.numpy(), weights.numpy()
    for row, sentence in enumerate(WORDS):
        position = 1  # after [CLS]
        for word, tag in zip(sentence, TAGS[row]):
            pieces = uncased_tokenizer.tokenize(word).numpy().tolist()
            assert ids[row, position:position + len(pieces)].tolist() == pieces
            assert weights[row, position] == 1.0 and tags[row, position] == tag
            assert weights[row, position + 1:position + len(pieces)].sum() == 0.0
            position += len(pieces)
        assert ids[row, position] == uncased_tokenizer.sep_token_id
        assert weights[row].sum() == len(sentence)
    # "Pneumonoultramicroscopic" really is several pieces: the test covers continuations.
    assert len(uncased_tokenizer.tokenize("Pneumonoultramicroscopic").numpy()) > 3


def test_truncation_and_words_without_pieces(uncased_tokenizer):
    preprocessor = TokenClassifierPreprocessor(uncased_tokenizer, sequence_length=6)
    words = tf.ragged.constant([["a", "\x00", "b", "c", "d", "e"]])
    features, tags, weights = preprocessor(words, tf.ragged.constant([[1, 2, 1, 1, 1, 1]]))
    ids = features["input_ids"].numpy()[0].tolist()
    # A word of only a control character becomes [UNK] and keeps its tag.
    assert ids[:4] == [uncased_tokenizer.cls_token_id, uncased_tokenizer.token_to_id("a"),
                       uncased_tokenizer.unk_token_id, uncased_tokenizer.token_to_id("b")]
    assert len(ids) == 6 and ids[-1] == uncased_tokenizer.sep_token_id
    assert tags.numpy()[0, 2] == 2 and weights.numpy()[0].tolist() == [0, 1, 1, 1, 1, 0]


def test_learns_and_predicts_one_tag_per_word_even_past_the_window(uncased_tokenizer):
    model = tagger(uncased_tokenizer, "distilbert", sequence_length=16)
    model.compile(learning_rate=5e-3, warmup_fraction=0.0)
    model.fit(WORDS * 8, TAGS * 8, epochs=4, batch_size=2, verbose=0)
    scores = model.evaluate(WORDS, TAGS, verbose=0, return_dict=True)
    assert scores["accuracy"] == 1.0 and scores["loss"] < 0.2
    assert model.predict_tags(WORDS) == TAGS
    # 25 words, ~50 pieces: split into windows of whole words, none left untagged.
    long_sentence = WORDS[0] * 5
    predicted = model.predict_tags([long_sentence, WORDS[1]])
    assert len(predicted[0]) == len(long_sentence) and predicted[1] == TAGS[1]
    assert model.predict(WORDS, verbose=0).shape == (2, 16, 4)


def test_loss_ignores_continuation_pieces(uncased_tokenizer):
    model = tagger(uncased_tokenizer)
    model.compile()
    features, tags, weights = model.preprocessor(
        tf.ragged.constant(WORDS), tf.ragged.constant(TAGS)
    )
    features = {k: v for k, v in features.items()}
    logits = model(features)
    per_token = keras.losses.sparse_categorical_crossentropy(tags, logits, from_logits=True)
    want = float(np.sum(per_token * weights) / np.sum(weights))
    got = model.evaluate(WORDS, TAGS, verbose=0, return_dict=True)["loss"]
    assert abs(got - want) < 1e-5


def test_saved_and_reloaded(uncased_tokenizer, tmp_path):
    model = tagger(uncased_tokenizer)
    path = str(tmp_path / "tagger.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert again.predict_tags(WORDS) == model.predict_tags(WORDS)


def test_bad_input(uncased_tokenizer):
    model = tagger(uncased_tokenizer)
    model.compile()
    with pytest.raises(ValueError, match="Sentence 1 has 5 words but 4 tags"):
        model.fit(WORDS, [TAGS[0], TAGS[1][:4]], verbose=0)
    with pytest.raises(ValueError, match=r"Sentence 0, tag 4 is 7, outside \[0, 4\)"):
        model.fit(WORDS, [[1, 2, 0, 0, 7], TAGS[1]], verbose=0)
    with pytest.raises(ValueError, match="Sentence 0 has no words"):
        model.predict_tags([[]])
    with pytest.raises(ValueError, match="Sentence 0, word 1 must be a string"):
        model.predict_tags([["ok", 3]])
    with pytest.raises(ValueError, match="num_tags"):
        TokenClassifier(tiny_encoder(), 1)
    with pytest.raises(ValueError, match="not a single string"):
        model.predict_tags("one text")
    with pytest.raises(ValueError, match="Text 1 must be a string"):
        model.predict_tags(["fine", b"bytes"])
    with pytest.raises(ValueError, match="no preprocessor"):
        TokenClassifier(tiny_encoder(), 2).predict_tags(WORDS)


TEXTS = ["John Smithsonian visited Berlin.", "", "Mary lives in Paris, \u00e9t\u00e9 \u4e2d\u6587!",
         "ctrl\x00 \x00 zero\u200bwidth \U0001F600 emoji"]


def _python_words(texts):
    from keras_bert_kit.tokenization import split_words

    return [[text[s:e] for s, e in split_words(text)] for text in texts]


def test_preprocessor_takes_texts_as_their_words(uncased_tokenizer):
    preprocessor = TokenClassifierPreprocessor(uncased_tokenizer, sequence_length=12)
    texts = [TEXTS[0], TEXTS[2], TEXTS[3]]
    words = _python_words(texts)
    tags = tf.ragged.constant([[i % 4 for i in range(len(w))] for w in words])
    weights = tf.constant([1.0, 0.5, 2.0])
    expected = preprocessor(tf.ragged.constant(words), tags, weights)
    tf.nest.map_structure(np.testing.assert_array_equal,
                          preprocessor(texts, tags, weights), expected)
    # The same layer over datasets: raw texts one by one, or sentences of words in batches.
    by_text = tf.data.Dataset.from_tensor_slices((texts, tags, weights))
    by_words = tf.data.Dataset.from_tensor_slices((tf.ragged.constant(words), tags, weights))
    for batch in (next(iter(by_text.map(preprocessor).padded_batch(3))),
                  next(iter(by_text.batch(3).map(preprocessor))),
                  next(iter(by_words.ragged_batch(3).map(preprocessor)))):
        tf.nest.map_structure(np.testing.assert_array_equal, batch, expected)
    features = preprocessor("Mary lives")
    assert features["input_ids"].shape == (4,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one tag per word"):
        preprocessor(texts, tags[:, :2])


def test_windows_hold_whole_words_greedily(uncased_tokenizer):
    preprocessor = TokenClassifierPreprocessor(uncased_tokenizer, sequence_length=8)
    words = [["Pneumonoultramicroscopic", "a", "Ouagadougou", "b", "Lovelace", "Kasparov", "c"],
             ["x"], [], ["Wittgenstein"] * 3]
    features, window_index, token_position = preprocessor.windows(
        tf.ragged.constant(words, dtype=tf.string))
    # The reference: a window takes the next words while their pieces fit in 6
    # tokens, and always at least one word.
    windows, expected_index, expected_position = [], [], []
    for sentence in words:
        counts = [len(uncased_tokenizer.tokenize(word).numpy()) for word in sentence]
        index, position, start = [], [], 0
        while start < len(sentence):
            end, used = start, 0
            while end < len(sentence) and (end == start or used + counts[end] <= 6):
                index.append(len(windows))
                position.append(1 + used)
                used += counts[end]
                end += 1
            windows.append(sentence[start:end])
            start = end
        expected_index.append(index)
        expected_position.append(position)
    assert window_index.to_list() == expected_index
    assert token_position.to_list() == expected_position
    assert expected_index[0] == [0, 1, 1, 2, 2, 2, 3] and len(windows) == 8
    packed = preprocessor(tf.ragged.constant(windows))
    tf.nest.map_structure(np.testing.assert_array_equal, features, packed)


def test_predict_tags_and_text_function_on_raw_texts(uncased_tokenizer):
    model = TokenClassifier(
        tiny_encoder("distilbert"), num_tags=4, dropout=0.0, tag_names=["O", "A", "B", "C"],
        preprocessor=TokenClassifierPreprocessor(uncased_tokenizer, sequence_length=8),
    )
    texts = TEXTS + [" ".join(["Wittgenstein"] * 4)]  # 16 pieces: 4 windows of 6 tokens
    tagged = model.predict_tags(texts)
    words = _python_words(texts)
    assert [[t.word for t in text_tags] for text_tags in tagged] == words
    for text, text_tags in zip(texts, tagged):
        assert all(text[t.start:t.end] == t.word for t in text_tags)
    assert tagged[1] == []
    nonempty = [w for w in words if w]
    assert [[t.tag_id for t in text_tags] for text_tags in tagged if text_tags] == (
        model.predict_tags(nonempty))
    tag_texts = model.text_function()
    outputs = tag_texts(tf.constant(texts))
    assert sorted(outputs) == ["ends", "starts", "tag_ids", "tags", "word_count"]
    assert outputs["word_count"].numpy().tolist() == [len(w) for w in words]
    most = max(len(w) for w in words)
    for name, field in (("tag_ids", "tag_id"), ("starts", "start"), ("ends", "end")):
        assert outputs[name].dtype == tf.int32 and outputs[name].shape == (len(texts), most)
        assert outputs[name].numpy().tolist() == [
            [getattr(t, field) for t in text_tags] + [-1] * (most - len(text_tags))
            for text_tags in tagged]
    assert outputs["tags"].numpy().tolist() == [
        [b"OABC"[t.tag_id:t.tag_id + 1] for t in text_tags] + [b""] * (most - len(text_tags))
        for text_tags in tagged]
    # In tf.data, batch by batch; and a batch of nothing.
    for i, batch in enumerate(tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tag_texts)):
        count = batch["word_count"].numpy()
        for row, text_tags in zip(batch["tag_ids"].numpy(), tagged[2 * i:2 * i + 2]):
            assert row[:len(text_tags)].tolist() == [t.tag_id for t in text_tags]
        assert count.tolist() == [len(w) for w in words[2 * i:2 * i + 2]]
    assert tag_texts(tf.constant([], tf.string))["tag_ids"].shape == (0, 0)


def test_raw_tf_data_of_texts_and_tags(uncased_tokenizer):
    model = tagger(uncased_tokenizer)
    model.compile()
    texts = [" ".join(sentence) for sentence in WORDS]
    data = tf.data.Dataset.from_tensor_slices((texts, tf.ragged.constant(TAGS))).batch(2)
    from_dataset = model.evaluate(data, verbose=0, return_dict=True)
    from_texts = model.evaluate(texts, TAGS, verbose=0, return_dict=True)
    from_words = model.evaluate(WORDS, TAGS, verbose=0, return_dict=True)
    assert abs(from_dataset["loss"] - from_words["loss"]) < 1e-5
    assert abs(from_texts["loss"] - from_words["loss"]) < 1e-5
    with pytest.raises(ValueError, match="Sentence 0 has 4 words but 5 tags"):
        model.fit(["only four words here"], [[0, 0, 0, 0, 0]], verbose=0)
