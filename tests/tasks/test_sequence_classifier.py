"""SequenceClassifier: fit/evaluate/predict on strings and pairs, defaults, saving, errors."""

import keras
import numpy as np
import pytest

import keras_bert_kit as kbk
from keras_bert_kit.tasks import SequenceClassifier, SequenceClassifierPreprocessor
from tests.tasks.conftest import tiny_encoder

TEXTS = ["a wonderful film", "terrible and boring", "great acting", "awful plot",
         "i loved it", "i hated it"]
LABELS = [1, 0, 1, 0, 1, 0]


def classifier(uncased_tokenizer, kind="bert", pooling="cls", sequence_length=32):
    return SequenceClassifier(
        tiny_encoder(kind),
        num_classes=2,
        preprocessor=SequenceClassifierPreprocessor(uncased_tokenizer, sequence_length),
        pooling=pooling,
        dropout=0.0,
    )


@pytest.mark.parametrize("kind, pooling", [("bert", "cls"), ("distilbert", "mean")])
def test_overfits_a_handful_of_texts(uncased_tokenizer, kind, pooling):
    model = classifier(uncased_tokenizer, kind, pooling)
    model.compile(learning_rate=5e-3, warmup_fraction=0.1)
    history = model.fit(TEXTS * 4, LABELS * 4, epochs=8, batch_size=3, seed=1, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] / 3
    # The default optimizer's schedule spans exactly this run: 8 epochs x 8 batches.
    assert model.optimizer._learning_rate.decay_steps == 64
    assert model.optimizer._learning_rate.warmup_steps == 6
    np.testing.assert_array_equal(np.argmax(model.predict(TEXTS, verbose=0), -1), LABELS)
    scores = model.evaluate(TEXTS, LABELS, verbose=0, return_dict=True)
    assert scores["loss"] < 0.1 and scores["accuracy"] == 1.0 and scores["macro_f1"] == 1.0


def test_pairs_and_preprocessed_inputs_give_the_same_logits(uncased_tokenizer):
    model = classifier(uncased_tokenizer)
    firsts, seconds = TEXTS[:3], TEXTS[3:]
    from_strings = model.predict((firsts, seconds), verbose=0)
    features = model.preprocessor.packer((firsts, seconds))
    from_ids = model.predict({k: np.asarray(v) for k, v in features.items()}, verbose=0)
    np.testing.assert_allclose(from_strings, from_ids, atol=1e-6)
    assert from_strings.shape == (3, 2)


def test_predict_keeps_input_order_across_batches(uncased_tokenizer):
    model = classifier(uncased_tokenizer)
    texts = [("word " * n).strip() for n in (1, 20, 2, 15, 3, 9, 1)]
    batched = model.predict(texts, batch_size=2, verbose=0)
    one_by_one = np.concatenate([model.predict([t], verbose=0) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_tf_data_of_strings(uncased_tokenizer):
    import tensorflow as tf

    model = classifier(uncased_tokenizer)
    model.compile()
    data = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS)).batch(3)
    model.fit(data, epochs=1, verbose=0)
    assert model.optimizer._learning_rate.decay_steps == 2
    assert model.predict(tf.data.Dataset.from_tensor_slices(TEXTS).batch(4), verbose=0).shape == (
        6, 2)


def test_a_distilbert_task_takes_a_bert_preprocessors_feature_datasets(uncased_tokenizer):
    import warnings

    import tensorflow as tf

    model = classifier(uncased_tokenizer, kind="distilbert")
    model.compile()
    # The preprocessor's batches carry `segment_ids`, which DistilBERT does not take.
    data = model.preprocessor.dataset(TEXTS, np.asarray(LABELS), batch_size=3)
    assert "segment_ids" in data.element_spec[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even Keras' input-structure warning
        model.fit(data, epochs=1, verbose=0)
        scores = model.evaluate(data, verbose=0, return_dict=True)
        from_features = model.predict(data.map(lambda x, y: x), verbose=0)
    assert 0.0 <= scores["accuracy"] <= 1.0
    np.testing.assert_allclose(from_features, model.predict(TEXTS, verbose=0), atol=1e-5)
    assert isinstance(data, tf.data.Dataset)


def test_saved_model_keeps_weights_preprocessor_and_schedule(uncased_tokenizer, tmp_path):
    model = classifier(uncased_tokenizer, pooling="mean")
    model.compile(learning_rate=1e-3)
    model.fit(TEXTS, LABELS, epochs=2, batch_size=3, verbose=0)
    path = str(tmp_path / "classifier.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert isinstance(again.preprocessor, SequenceClassifierPreprocessor)
    assert again.pooling == "mean"
    np.testing.assert_allclose(
        again.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0), atol=1e-6
    )
    assert int(again.optimizer.iterations) == 4
    again.fit(TEXTS, LABELS, epochs=1, batch_size=3, verbose=0)  # trains on after loading
    # ... with a schedule of its own (the saved one ended at rate 0).
    schedule = again.optimizer.get_config()["learning_rate"]["config"]
    assert (schedule["start_step"], schedule["decay_steps"]) == (4, 2)


def test_bad_input(uncased_tokenizer):
    encoder = tiny_encoder()
    with pytest.raises(ValueError, match="num_classes"):
        SequenceClassifier(encoder, 1)
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier(encoder, 2, pooling="max")
    with pytest.raises(ValueError, match="label_names"):
        SequenceClassifier(encoder, 3, label_names=["a", "b"])
    model = classifier(uncased_tokenizer)
    model.compile()
    with pytest.raises(ValueError, match=r"Label 2 \(example 1\) is outside \[0, 2\)"):
        model.fit(TEXTS[:2], [0, 2], verbose=0)
    with pytest.raises(ValueError, match=r"`x\[1\]` must be a string"):
        model.predict(["fine", None], verbose=0)
    with pytest.raises(ValueError, match="not a single string"):
        model.predict("just one", verbose=0)
    with pytest.raises(ValueError, match="integer class ids"):
        model.fit(TEXTS[:2], [0.5, 1.0], verbose=0)


def test_preprocessor_maps_over_a_dataset_of_raw_strings(uncased_tokenizer):
    import tensorflow as tf

    preprocessor = SequenceClassifierPreprocessor(uncased_tokenizer, 8)
    texts = TEXTS + ["a much longer text than eight tokens can hold, cut at the end"]
    labels, weights = LABELS + [1], [1.0, 0.5, 2.0, 1.0, 1.0, 0.0, 3.0]
    expected = preprocessor(texts, tf.constant(labels), tf.constant(weights))
    assert expected[0]["input_ids"].shape == (7, 8)
    data = tf.data.Dataset.from_tensor_slices((texts, labels, weights))
    batched = next(iter(data.batch(7).map(preprocessor)))
    one_by_one = next(iter(data.map(preprocessor).padded_batch(7)))  # [PAD] is id 0
    for got in (batched, one_by_one):
        tf.nest.map_structure(np.testing.assert_array_equal, got, expected)


def test_raw_tf_data_carries_sample_weights_through_the_preprocessor(uncased_tokenizer):
    import tensorflow as tf

    model = classifier(uncased_tokenizer)
    model.compile()
    weights = [1.0, 0.0, 2.0, 0.0, 1.0, 0.5]
    data = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS, weights)).batch(4)
    from_dataset = model.evaluate(data, verbose=0, return_dict=True)
    from_lists = model.evaluate(TEXTS, LABELS, sample_weight=weights, batch_size=4, verbose=0,
                                return_dict=True)
    unweighted = model.evaluate(TEXTS, LABELS, batch_size=4, verbose=0, return_dict=True)
    assert abs(from_dataset["loss"] - from_lists["loss"]) < 1e-5
    assert abs(from_dataset["loss"] - unweighted["loss"]) > 1e-4


def test_text_function_equals_predict(uncased_tokenizer):
    import tensorflow as tf

    model = SequenceClassifier(
        tiny_encoder("distilbert"), num_classes=3, dropout=0.0, label_names=["a", "b", "c"],
        preprocessor=SequenceClassifierPreprocessor(uncased_tokenizer, 8),
    )
    texts = TEXTS + ["a much longer text than eight tokens can hold, cut at the end"]
    classify = model.text_function()
    outputs = classify(tf.constant(texts))
    assert sorted(outputs) == ["label", "label_id", "logits", "probabilities"]
    logits = model.predict(texts, batch_size=3, verbose=0)
    np.testing.assert_allclose(outputs["logits"], logits, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], tf.nn.softmax(logits), atol=1e-5)
    assert outputs["label_id"].dtype == tf.int32
    np.testing.assert_array_equal(outputs["label_id"], np.argmax(logits, -1))
    assert outputs["label"].numpy().tolist() == [
        "abc"[i].encode() for i in np.argmax(logits, -1)]
    # In tf.data, batch by batch, each padded to its own longest text.
    mapped = tf.data.Dataset.from_tensor_slices(texts).batch(3).map(classify)
    np.testing.assert_allclose(
        np.concatenate([batch["logits"] for batch in mapped]), logits, atol=1e-5)
    firsts, seconds = texts[:4], texts[3:]
    pairs = model.text_function(pairs=True)(text=tf.constant(firsts),
                                            text_pair=tf.constant(seconds))
    np.testing.assert_allclose(
        pairs["logits"], model.predict((firsts, seconds), verbose=0), atol=1e-5)


def test_text_function_without_label_names_or_preprocessor(uncased_tokenizer):
    import tensorflow as tf

    outputs = classifier(uncased_tokenizer).text_function()(tf.constant(TEXTS[:2]))
    assert sorted(outputs) == ["label_id", "logits", "probabilities"]
    assert outputs["logits"].shape == (2, 2)
    bare = SequenceClassifier(tiny_encoder(), 2)
    with pytest.raises(ValueError, match="no preprocessor"):
        bare.text_function()
    with pytest.raises(ValueError, match="no preprocessor"):
        bare.predict(tf.data.Dataset.from_tensor_slices(TEXTS).batch(2), verbose=0)
    assert keras.saving.get_registered_name(kbk.tasks.TextPreprocessor) == (
        "keras_bert_kit>TextPreprocessor")
