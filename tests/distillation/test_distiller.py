"""Distiller: its losses, its training, and its errors, on tiny models."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from keras_bert_kit.distillation import Distiller, init_student_from_teacher, with_internals
from keras_bert_kit.distillation.losses import hidden_cosine_loss, soft_target_loss
from tests.conftest import (
    batch,
    encoder_inputs,
    max_abs_diff,
    mirrored_vs_one_device,
    tiny_bert_config,
    tiny_distilbert_config,
)

NO_DROPOUT = dict(dropout_rate=0.0, attention_dropout_rate=0.0)


def pretraining_pair(teacher_layers=4, **student_overrides):
    teacher = kbk.BertPretrainer(kbk.BertEncoder(tiny_bert_config(num_layers=teacher_layers,
                                                                  **NO_DROPOUT)))
    config = tiny_distilbert_config(num_layers=teacher_layers // 2, **NO_DROPOUT)
    student = init_student_from_teacher(teacher, config.replace(**student_overrides))
    return teacher, student


def classifier_pair(num_classes=3, **student_overrides):
    teacher = kbk.SequenceClassifier(
        kbk.BertEncoder(tiny_bert_config(**NO_DROPOUT)), num_classes, dropout=0.0)
    student = kbk.SequenceClassifier(
        kbk.DistilBertEncoder(tiny_distilbert_config(num_layers=1, **NO_DROPOUT,
                                                     **student_overrides)),
        num_classes, dropout=0.0)
    return teacher, student


def id_features(config, batch_size, length, seed):
    """Random single-segment id features, every token real, and random labels of 3 classes."""
    rng = np.random.default_rng(seed)
    x = {"input_ids": rng.integers(1, config.vocab_size, (batch_size, length)).astype("int32"),
         "segment_ids": np.zeros((batch_size, length), "int32"),
         "padding_mask": np.ones((batch_size, length), "int32")}
    return x, rng.integers(0, 3, batch_size).astype("int32")


def test_logged_components_match_the_loss_functions_on_the_models_outputs():
    teacher, student = pretraining_pair()
    data = batch(teacher.encoder.config, batch_size=4)
    data["padding_mask"][2, 7:] = 0  # padding must not count in the cosine loss
    data["input_ids"][2, 7:] = 0
    distiller = Distiller(teacher, student, temperature=3.0, alpha_ce=5.0, alpha_hard=2.0,
                          alpha_cos=1.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = distiller.train_on_batch(data, return_dict=True)

    teacher_out, student_out = teacher(data), student(data)
    expected_soft = soft_target_loss(teacher_out["mlm_logits"], student_out["mlm_logits"], 3.0,
                                     data["masked_weights"])
    # By hand: KL over the 11 real masked predictions (one slot is padding), times T².
    # (float64, so the float32 loss is within its own rounding of the exact value).
    log_p = tf.nn.log_softmax(np.float64(teacher_out["mlm_logits"]) / 3.0).numpy()
    log_q = tf.nn.log_softmax(np.float64(student_out["mlm_logits"]) / 3.0).numpy()
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    by_hand = 9.0 * (kl * data["masked_weights"]).sum() / data["masked_weights"].sum()
    assert float(expected_soft) == pytest.approx(by_hand, abs=2e-6)
    assert logs["soft_loss"] == pytest.approx(by_hand, abs=2e-6)

    teacher_states = teacher.encoder(encoder_inputs(data))["sequence_output"]
    student_states = student.encoder(
        {k: data[k] for k in ("input_ids", "padding_mask")})["sequence_output"]
    expected_cos = float(hidden_cosine_loss(teacher_states, student_states,
                                            data["padding_mask"]))
    assert logs["cos_loss"] == pytest.approx(expected_cos, rel=1e-4)
    student_only = kbk.DistilBertPretrainer(student.encoder)
    student_only.compile()
    assert logs["hard_loss"] == pytest.approx(
        float(student_only.compute_loss(data, None, student_out)), rel=1e-5)
    assert logs["mlm_loss"] == pytest.approx(logs["hard_loss"], rel=1e-6)
    assert logs["loss"] == pytest.approx(
        5.0 * logs["soft_loss"] + 2.0 * logs["hard_loss"] + logs["cos_loss"], rel=1e-5)
    assert "hidden_loss" not in logs and "attention_loss" not in logs


def test_a_student_that_is_a_copy_of_its_teacher_has_zero_distillation_loss():
    # Every teacher layer copied into a DistilBERT student: for single-segment
    # text (segment 0) the student computes exactly what the teacher does.
    teacher = kbk.BertPretrainer(kbk.BertEncoder(tiny_bert_config(**NO_DROPOUT)))
    student = init_student_from_teacher(teacher, tiny_distilbert_config(**NO_DROPOUT),
                                        layers=[0, 1])
    data = batch(teacher.encoder.config)
    data["segment_ids"][:] = 0
    assert max_abs_diff(teacher(data)["mlm_logits"], student(data)["mlm_logits"]) < 1e-4
    distiller = Distiller(teacher, student, alpha_hidden=1.0, alpha_attention=1.0,
                          layer_map={0: 0, 1: 1, 2: 2})
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = distiller.train_on_batch(data, return_dict=True)
    for name in ("soft_loss", "cos_loss", "hidden_loss", "attention_loss"):
        assert abs(logs[name]) < 1e-4, (name, logs[name])


def test_the_teacher_is_frozen_and_the_student_trains():
    teacher, student = pretraining_pair()
    data = batch(teacher.encoder.config, batch_size=4)
    teacher_before = [w.numpy() for w in teacher.weights]
    student_before = [w.numpy() for w in student.trainable_weights]
    distiller = Distiller(teacher, student, alpha_hidden=1.0, alpha_attention=1.0)
    distiller.compile(learning_rate=1e-2)
    distiller.fit(tf.data.Dataset.from_tensors(data).repeat(3), epochs=1, verbose=0)
    assert not teacher.trainable
    for before, after in zip(teacher_before, teacher.weights):
        np.testing.assert_array_equal(before, after.numpy())
    changed = [not np.array_equal(b, a.numpy())
               for b, a in zip(student_before, student.trainable_weights)]
    assert all(changed)
    # The optimizer updates the student alone.
    assert {id(v) for v in distiller.trainable_variables} == {
        id(v) for v in student.trainable_variables}


def test_a_tiny_student_learns_its_teachers_predictions():
    teacher, student = classifier_pair(num_classes=3)
    x, _ = id_features(teacher.encoder.config, 64, 10, seed=0)
    teacher_classes = np.argmax(teacher.predict(x, verbose=0), -1)
    assert len(set(teacher_classes)) > 1
    distiller = Distiller(teacher, student, temperature=1.0, alpha_ce=1.0, alpha_hard=0.0,
                          alpha_cos=0.0)
    distiller.compile(learning_rate=3e-3)
    y = np.zeros(64, "int32")  # no information: only the teacher teaches
    history = distiller.fit(x, y, batch_size=16, epochs=25, verbose=0)
    soft = history.history["soft_loss"]
    assert soft[-1] < 0.2 * soft[0]
    agreement = np.mean(np.argmax(student.predict(x, verbose=0), -1) == teacher_classes)
    assert agreement >= 0.9


def test_evaluate_reports_the_students_own_metrics():
    teacher, student = classifier_pair()
    x, y = id_features(teacher.encoder.config, 8, 6, seed=1)
    distiller = Distiller(teacher, student)
    distiller.compile()
    history = distiller.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(x, y))
    assert {"soft_loss", "hard_loss", "cos_loss", "accuracy", "macro_f1", "val_loss",
            "val_accuracy"} <= set(history.history)
    assert not any(name.startswith("val_") and "soft" in name for name in history.history)
    results = distiller.evaluate(x, y, verbose=0, return_dict=True)
    assert set(results) == {"loss", "accuracy", "macro_f1"}
    student.compile()
    assert results["loss"] == pytest.approx(student.evaluate(
        {k: x[k] for k in ("input_ids", "padding_mask")}, y, verbose=0,
        return_dict=True)["loss"], rel=1e-5)
    predictions = distiller.predict(x, verbose=0)
    np.testing.assert_allclose(predictions, student.predict(
        {k: x[k] for k in ("input_ids", "padding_mask")}, verbose=0), atol=1e-6)


def test_hidden_loss_learns_a_projection_when_widths_differ():
    teacher = kbk.BertPretrainer(kbk.BertEncoder(tiny_bert_config(num_layers=4)))
    student = kbk.DistilBertPretrainer(kbk.DistilBertEncoder(
        tiny_distilbert_config(num_layers=2, hidden_size=16, intermediate_size=32)))
    distiller = Distiller(teacher, student, alpha_cos=0.0, alpha_hidden=1.0)
    assert distiller._layer_pairs == [(0, 0), (1, 2), (2, 4)]
    distiller.compile(learning_rate=1e-2)
    data = batch(teacher.encoder.config)
    projection = distiller.hidden_projection.kernel.numpy()
    logs = distiller.train_on_batch(data, return_dict=True)
    assert np.isfinite(logs["hidden_loss"]) and logs["hidden_loss"] > 0
    assert not np.array_equal(projection, distiller.hidden_projection.kernel.numpy())


def test_token_and_span_tasks_distil():
    config = tiny_bert_config()
    rng = np.random.default_rng(2)
    x, _ = id_features(config, 4, 8, seed=2)
    x["padding_mask"][0, 5:] = 0
    tagger_t = kbk.TokenClassifier(kbk.BertEncoder(config), num_tags=5)
    tagger_s = kbk.TokenClassifier(init_student_from_teacher(tagger_t), num_tags=5)
    distiller = Distiller(tagger_t, tagger_s)
    distiller.compile()
    weights = x["padding_mask"].astype("float32")
    logs = distiller.train_on_batch(x, rng.integers(0, 5, (4, 8)), sample_weight=weights,
                                    return_dict=True)
    assert all(np.isfinite(v) for v in logs.values()) and "accuracy" in logs

    qa_t = kbk.SpanExtractor(kbk.BertEncoder(config))
    qa_s = kbk.SpanExtractor(init_student_from_teacher(qa_t))
    distiller = Distiller(qa_t, qa_s)
    distiller.compile()
    spans = {"start_logits": np.array([1, 2, 0, 3]), "end_logits": np.array([2, 4, 0, 3])}
    logs = distiller.train_on_batch(x, spans, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values()) and logs["soft_loss"] > 0


def test_the_student_saves_and_loads_alone(tmp_path):
    teacher, student = classifier_pair()
    x = {"input_ids": np.arange(1, 17, dtype="int32").reshape(2, 8),
         "segment_ids": np.zeros((2, 8), "int32"), "padding_mask": np.ones((2, 8), "int32")}
    distiller = Distiller(teacher, student)
    distiller.compile(learning_rate=1e-2)
    distiller.fit(x, np.array([0, 1]), epochs=2, verbose=0)
    path = str(tmp_path / "student.keras")
    student.save(path)
    expected = student.predict({k: x[k] for k in ("input_ids", "padding_mask")}, verbose=0)
    del distiller, teacher
    keras.backend.clear_session()
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.encoder, kbk.DistilBertEncoder)
    assert loaded.count_params() == student.count_params()
    np.testing.assert_allclose(
        loaded.predict({k: x[k] for k in ("input_ids", "padding_mask")}, verbose=0),
        expected, atol=1e-6)


def test_distiller_config_round_trips():
    teacher, student = pretraining_pair()
    distiller = Distiller(teacher, student, temperature=4.0, alpha_ce=1.5, alpha_hidden=0.5,
                          layer_map={1: 2, 2: 4})
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(distiller)))
    restored = keras.saving.deserialize_keras_object(config)
    assert restored.temperature == 4.0 and restored.alphas == distiller.alphas
    assert restored.layer_map == [(1, 2), (2, 4)]


@pytest.mark.parametrize("policy, xla", [("mixed_bfloat16", False), ("mixed_float16", True)])
def test_mixed_precision_and_xla(policy, xla):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        teacher, student = pretraining_pair()
        distiller = Distiller(teacher, student, alpha_attention=1.0)
        distiller.compile(learning_rate=1e-3, jit_compile=xla)
        data = batch(teacher.encoder.config)
        history = distiller.fit(tf.data.Dataset.from_tensors(data).repeat(2), verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert all(np.isfinite(values[-1]) for values in history.history.values())
    assert distiller.jit_compile == xla
    assert isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer) == (
        policy == "mixed_float16")


MIRRORED = """
from tests.distillation.test_distiller import pretraining_pair
from tests.conftest import batch

def train(strategy):
    with strategy.scope():
        teacher, student = pretraining_pair()
        distiller = kbk.Distiller(teacher, student, alpha_hidden=1.0, alpha_attention=1.0)
        distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    data = batch(teacher.encoder.config, batch_size=8)
    # Replicas with different amounts of padding still average over the global batch.
    data["padding_mask"][4:, 6:] = 0
    data["masked_weights"][4:, 1:] = 0.0
    distiller.fit(tf.data.Dataset.from_tensors(data).repeat(2), epochs=1, verbose=0)
    return [w.numpy() for w in student.weights]
"""


def test_mirrored_distillation_on_two_devices_matches_one_device():
    assert mirrored_vs_one_device(MIRRORED) < 1e-5


# -- errors ---------------------------------------------------------------------------------


def test_vocabulary_mismatch_is_refused():
    teacher = kbk.BertPretrainer(kbk.BertEncoder(tiny_bert_config()))
    student = kbk.DistilBertPretrainer(kbk.DistilBertEncoder(tiny_distilbert_config(
        vocab_size=301)))
    with pytest.raises(ValueError, match="300 tokens and the student's 301"):
        Distiller(teacher, student)


def test_tokenizers_with_different_vocabularies_are_refused(tmp_path):
    def classifier(tokens):
        path = tmp_path / f"vocab{len(list(tmp_path.iterdir()))}.txt"
        path.write_text("\n".join(tokens) + "\n")
        tokenizer = kbk.BertTokenizer(str(path))
        config = tiny_bert_config(vocab_size=len(tokens))
        return kbk.SequenceClassifier(kbk.BertEncoder(config), 2,
                                      preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer))

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    with pytest.raises(ValueError, match="id 6 is 'dog' for the teacher and 'cat'"):
        Distiller(classifier(specials + ["a", "dog"]), classifier(specials + ["a", "cat"]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=-1), "temperature"),
    (dict(alpha_ce=-1.0), "alpha_ce"),
    (dict(alpha_ce=0, alpha_hard=0, alpha_cos=0), "nothing to train"),
    (dict(alpha_hidden=1.0, layer_map={1: 5}), "teacher layer 5, outside the teacher's depth"),
    (dict(alpha_hidden=1.0, layer_map={3: 1}), "student layer 3, outside the student's depth"),
    (dict(alpha_hidden=1.0, layer_map="12"), "layer_map"),
    (dict(alpha_attention=1.0, layer_map={0: 0}), "pairs only embeddings"),
])
def test_bad_settings_are_refused_before_training(kwargs, message):
    teacher, student = pretraining_pair()
    with pytest.raises(ValueError, match=message):
        Distiller(teacher, student, **kwargs)


def test_mismatched_models_are_refused():
    teacher, student = pretraining_pair()
    classifier_teacher, classifier_student = classifier_pair()
    with pytest.raises(ValueError, match="cannot teach"):
        Distiller(teacher, classifier_student)
    with pytest.raises(ValueError, match="same classes"):
        Distiller(classifier_teacher, classifier_pair(num_classes=4)[1])
    narrow = kbk.DistilBertPretrainer(kbk.DistilBertEncoder(tiny_distilbert_config(
        hidden_size=16, intermediate_size=32)))
    with pytest.raises(ValueError, match="alpha_cos"):
        Distiller(teacher, narrow)
    two_heads = kbk.DistilBertPretrainer(kbk.DistilBertEncoder(tiny_distilbert_config(
        num_heads=2)))
    with pytest.raises(ValueError, match="heads"):
        Distiller(teacher, two_heads, alpha_attention=1.0)
    with pytest.raises(ValueError, match="teacher must be"):
        Distiller(teacher.encoder, student)


def test_a_batch_without_the_teachers_inputs_is_refused():
    teacher, student = pretraining_pair()
    distiller = Distiller(teacher, student)
    distiller.compile()
    data = batch(teacher.encoder.config)
    del data["segment_ids"]
    with pytest.raises(ValueError, match=r"teacher needs the input\(s\) \['segment_ids'\]"):
        distiller.train_on_batch(data)


def test_the_view_shares_weights_and_matches_the_model():
    teacher, _ = pretraining_pair()
    view = with_internals(teacher)
    data = batch(teacher.encoder.config)
    outputs = view({k: data[k] for k in view.input})
    assert len(outputs["hidden_states"]) == 5 and len(outputs["attentions"]) == 4
    expected = teacher(data)
    for name in ("mlm_logits", "nsp_logits"):
        assert max_abs_diff(outputs["outputs"][name], expected[name]) < 1e-5
    full = teacher.encoder(encoder_inputs(data))
    assert max_abs_diff(outputs["hidden_states"][-1], full["sequence_output"]) < 1e-5
    assert {id(w) for w in view.weights} == {id(w) for w in teacher.weights}


def test_soft_targets_alone_still_log_the_students_hard_loss():
    teacher, student = pretraining_pair()
    distiller = Distiller(teacher, student, alpha_ce=1.0, alpha_hard=0.0, alpha_cos=0.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = distiller.train_on_batch(batch(teacher.encoder.config), return_dict=True)
    assert logs["hard_loss"] > 0 and logs["mlm_loss"] == pytest.approx(logs["hard_loss"])
    assert logs["loss"] == pytest.approx(logs["soft_loss"], rel=1e-6)
    assert "cos_loss" not in logs


def test_callbacks_see_every_component_and_can_stop_training():
    teacher, student = classifier_pair()
    x, y = id_features(teacher.encoder.config, 8, 6, seed=3)
    seen = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(logs))
    # A loss that cannot improve by 10 in a step: early stopping ends the run after 2 epochs.
    stop = keras.callbacks.EarlyStopping(monitor="soft_loss", mode="min", min_delta=10.0,
                                         patience=1)
    distiller = Distiller(teacher, student)
    distiller.compile()
    history = distiller.fit(x, y, batch_size=4, epochs=10, verbose=0, callbacks=[record, stop])
    assert len(history.history["loss"]) == 2
    assert len(seen) == 4 and {"soft_loss", "hard_loss", "cos_loss"} <= set(seen[0])
