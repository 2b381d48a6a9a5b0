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
