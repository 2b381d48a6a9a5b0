"""Pretrainers train with compile()/fit() on pipeline batches: their own losses and metrics."""

import keras
import numpy as np
import pytest

import keras_bert_kit as kbk
from tests.conftest import (
    batch,
    mirrored_vs_one_device,
    random_inputs,
    tiny_bert_config,
    tiny_distilbert_config,
)


def test_losses_match_a_hand_computation():
    config = tiny_bert_config()
    model = kbk.BertPretrainer(kbk.BertEncoder(config))
    model.compile()
    data = batch(config)
    outputs = model({k: data[k] for k in model.input_names})
    mlm = keras.losses.sparse_categorical_crossentropy(
        data["masked_ids"], outputs["mlm_logits"], from_logits=True).numpy()
    want_mlm = float((mlm * data["masked_weights"]).sum() / data["masked_weights"].sum())
    want_nsp = float(keras.losses.sparse_categorical_crossentropy(
        data["nsp_label"], outputs["nsp_logits"], from_logits=True).numpy().mean())
    got = model.test_on_batch(data, return_dict=True)
    assert got["mlm_loss"] == pytest.approx(want_mlm, rel=1e-5)
    assert got["nsp_loss"] == pytest.approx(want_nsp, rel=1e-5)
    assert got["loss"] == pytest.approx(want_mlm + want_nsp, rel=1e-5)
    assert set(got) == {"loss", "mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy"}


def test_loss_weights_weigh_the_total_and_survive_saving(tmp_path):
    config = tiny_bert_config()
    model = kbk.BertPretrainer(kbk.BertEncoder(config))
    data = batch(config)
    model.compile()
    plain = model.test_on_batch(data, return_dict=True)
    model.compile(loss_weights={"nsp_logits": 3.0, "mlm_logits": 0.5})
    weighted = model.test_on_batch(data, return_dict=True)
    # The parts are logged unweighted; the total is their weighted sum.
    assert weighted["mlm_loss"] == pytest.approx(plain["mlm_loss"], rel=1e-6)
    assert weighted["nsp_loss"] == pytest.approx(plain["nsp_loss"], rel=1e-6)
    assert weighted["loss"] == pytest.approx(
        0.5 * plain["mlm_loss"] + 3.0 * plain["nsp_loss"], rel=1e-5)
    path = str(tmp_path / "pretrainer.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    again = restored.test_on_batch(data, return_dict=True)
    assert again["loss"] == pytest.approx(weighted["loss"], rel=1e-5)


@pytest.mark.parametrize("loss_weights, message", [
    ({"nsp": 2.0}, "not an output of BertPretrainer"),
    ({"nsp_logits": -1.0}, "finite number >= 0"),
    ({"nsp_logits": float("nan")}, "finite number >= 0"),
    ({"nsp_logits": "2"}, "finite number >= 0"),
    ([1.0, 2.0], "mapping of output names"),
])
def test_bad_loss_weights_are_refused(loss_weights, message):
    model = kbk.BertPretrainer(kbk.BertEncoder(tiny_bert_config()))
    with pytest.raises(ValueError, match=message):
        model.compile(loss_weights=loss_weights)


def test_distilbert_has_no_nsp_loss_to_weigh():
    model = kbk.DistilBertPretrainer(kbk.DistilBertEncoder(tiny_distilbert_config()))
    with pytest.raises(ValueError, match="its outputs are \\['mlm_logits'\\]"):
        model.compile(loss_weights={"nsp_logits": 2.0})


def test_fit_on_the_pipeline_learns_and_logs_each_part(news_articles, uncased_tokenizer):
    from keras_bert_kit.data import MaskedLMMasker, create_pretraining_examples, pretraining_dataset

    examples = create_pretraining_examples(news_articles[:30], uncased_tokenizer,
                                           max_seq_length=64)
    masker = MaskedLMMasker.from_tokenizer(uncased_tokenizer, max_predictions_per_seq=10)
    data = pretraining_dataset(examples, masker, batch_size=16, seed=0)
    config = kbk.BertConfig(vocab_size=30522, hidden_size=32, num_layers=1, num_heads=2,
                            intermediate_size=64, max_sequence_length=64)
    model = kbk.BertPretrainer(kbk.BertEncoder(config))
    model.compile(learning_rate=2e-3, num_train_steps=3 * int(data.cardinality()),
                  warmup_steps=5)
    history = model.fit(data, epochs=3, verbose=0).history
    assert history["mlm_loss"][-1] < history["mlm_loss"][0] - 1.0
    for epoch in range(3):
        assert history["loss"][epoch] == pytest.approx(
            history["mlm_loss"][epoch] + history["nsp_loss"][epoch], rel=1e-4)
    assert set(history) == {"loss", "mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy"}


def test_distilbert_has_no_nsp_and_targets_may_come_as_y():
    config = tiny_distilbert_config()
    model = kbk.DistilBertPretrainer(kbk.DistilBertEncoder(config))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    data = batch(config)
    inputs = {k: data[k] for k in model.input_names}
    targets = {"masked_ids": data["masked_ids"], "masked_weights": data["masked_weights"]}
    history = model.fit(inputs, targets, epochs=20, batch_size=4, verbose=0).history
    assert set(history) == {"loss", "mlm_loss", "mlm_accuracy"}
    assert history["mlm_loss"][-1] < 0.3 * history["mlm_loss"][0]


def test_compile_errors_and_missing_targets():
    config = tiny_bert_config()
    model = kbk.BertPretrainer(kbk.BertEncoder(config))
    with pytest.raises(ValueError, match="computes its own losses"):
        model.compile(loss="mse")
    model.compile()
    data = batch(config)
    del data["nsp_label"]
    with pytest.raises(ValueError, match="nsp_label"):
        model.test_on_batch(data)


MIRRORED = """
from tests.conftest import batch, tiny_bert_config

config = tiny_bert_config(dropout_rate=0.0, attention_dropout_rate=0.0)
data = batch(config, batch_size=8)
# Replicas with different numbers of real predictions still average
# the MLM loss over the global batch.
data["masked_weights"][:4] = 1.0
data["masked_weights"][4:, 1:] = 0.0

def train(strategy):
    with strategy.scope():
        model = kbk.BertPretrainer(kbk.BertEncoder(config))
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    model.fit(tf.data.Dataset.from_tensors(data).repeat(2), epochs=1, verbose=0)
    return [w.numpy() for w in model.weights]
"""


def test_mirrored_training_on_two_devices_matches_one_device():
    # The same global batch split over 2 replicas gives the same update.
    assert mirrored_vs_one_device(MIRRORED) < 1e-5


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_float32_weights_and_losses(policy):
    config = tiny_bert_config()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        model = kbk.BertPretrainer(kbk.BertEncoder(config))
        model.compile(learning_rate=1e-3)
        before = model.encoder.token_embedding.embeddings.numpy()
        logs = model.train_on_batch(batch(config), return_dict=True)
        outputs = model(batch(config))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert all(np.isfinite(value) for value in logs.values())
    assert all(v.dtype == "float32" for v in model.weights if v.trainable)
    assert all(v.dtype == "float32" for v in outputs.values())
    assert not np.array_equal(model.encoder.token_embedding.embeddings.numpy(), before)
    # float16 needs loss scaling against underflowing gradients; Keras adds it.
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
