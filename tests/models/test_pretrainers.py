import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from tests.conftest import batch, encoder_inputs, random_inputs, randomize_weights


def test_output_shapes(architecture):
    config, encoder_class, pretrainer_class = architecture
    pretrainer = pretrainer_class(encoder_class(config))
    outputs = pretrainer(random_inputs(config, batch_size=3, seq_len=12, num_predictions=4))
    expected = {"mlm_logits": (3, 4, config.vocab_size)}
    if pretrainer_class is kbk.BertPretrainer:
        expected["nsp_logits"] = (3, 2)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == expected
    assert all(v.dtype == tf.float32 for v in outputs.values())


def test_masked_lm_head_is_tied_and_gathers(architecture):
    config, encoder_class, pretrainer_class = architecture
    pretrainer = pretrainer_class(encoder_class(config))
    head, encoder = pretrainer.masked_lm_head, pretrainer.encoder
    assert head.token_embedding.embeddings is encoder.token_embedding.embeddings
    inputs = random_inputs(config)
    sequence_output = encoder(encoder_inputs(inputs))["sequence_output"].numpy()
    logits = pretrainer(inputs)["mlm_logits"].numpy()

    # Reference: project every position with the embedding matrix, then pick.
    hidden = head.layer_norm(head.dense(sequence_output)).numpy()
    full = hidden @ encoder.token_embedding.embeddings.numpy().T + head.output_bias.numpy()
    picked = np.take_along_axis(full, inputs["masked_positions"][:, :, None], axis=1)
    np.testing.assert_allclose(logits, picked, atol=1e-4)


def test_heads_see_what_the_full_encoder_computes(architecture):
    # The pretrainer's last layer computes only [CLS] and the masked rows.
    config, encoder_class, pretrainer_class = architecture
    pretrainer = pretrainer_class(encoder_class(config))
    randomize_weights(pretrainer)
    inputs = random_inputs(config, batch_size=4, seq_len=16, num_predictions=5)
    encoded = pretrainer.encoder(encoder_inputs(inputs))
    outputs = pretrainer(inputs)
    head = pretrainer.masked_lm_head
    np.testing.assert_allclose(
        outputs["mlm_logits"], head(encoded["sequence_output"], inputs["masked_positions"]),
        atol=1e-4)
    if pretrainer.next_sentence_head is not None:
        np.testing.assert_allclose(
            outputs["nsp_logits"], pretrainer.next_sentence_head(encoded["pooled_output"]),
            atol=1e-5)


def test_tied_embedding_gets_gradients_from_both_uses(architecture):
    config, encoder_class, pretrainer_class = architecture
    pretrainer = pretrainer_class(encoder_class(config))
    inputs = random_inputs(config)
    embeddings = pretrainer.encoder.token_embedding.embeddings
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(pretrainer(inputs)["mlm_logits"])
    gradient = tf.convert_to_tensor(tape.gradient(loss, embeddings))
    # The output projection touches every row, the input lookup only a few.
    assert np.count_nonzero(np.abs(gradient.numpy()).sum(axis=1)) == config.vocab_size
    assert len(pretrainer.trainable_weights) == len({id(w) for w in pretrainer.trainable_weights})


def test_cost_grows_with_predictions_not_sequence_length():
    config = kbk.BertConfig(
        vocab_size=2000, hidden_size=32, num_layers=1, num_heads=2, max_sequence_length=512
    )
    pretrainer = kbk.BertPretrainer(kbk.BertEncoder(config))
    spec = {
        name: tf.TensorSpec((2, 512), tf.int32)
        for name in ("input_ids", "segment_ids", "padding_mask")
    }
    spec["masked_positions"] = tf.TensorSpec((2, 5), tf.int32)
    graph = tf.function(lambda x: pretrainer(x)["mlm_logits"]).get_concrete_function(spec).graph
    shapes = [op.outputs[0].shape for op in graph.get_operations() if op.type == "MatMul"]
    shapes += [
        op.outputs[0].shape
        for op in graph.get_operations()
        if op.type in ("BatchMatMulV2", "Einsum")
        and op.outputs[0].shape.rank
        and op.outputs[0].shape[-1] == 2000
    ]
    vocab_projections = [s for s in shapes if s[-1] == 2000]
    assert vocab_projections, shapes
    # The vocabulary projection sees 2 x 5 rows, never 2 x 512.
    assert all(s.num_elements() == 2 * 5 * 2000 for s in vocab_projections)


def test_next_sentence_label_convention_is_documented():
    doc = kbk.NextSentenceHead.__doc__
    assert "0 means segment B" in doc and "1 means B is a random segment" in doc


def test_pretrainer_rejects_wrong_encoder():
    config = kbk.DistilBertConfig(vocab_size=100, hidden_size=32, num_layers=1, num_heads=2)
    with pytest.raises(ValueError, match="BertPretrainer needs a BertEncoder"):
        kbk.BertPretrainer(kbk.DistilBertEncoder(config))


def test_pretrainer_trains_a_step(architecture):
    config, encoder_class, pretrainer_class = architecture
    pretrainer = pretrainer_class(encoder_class(config))
    inputs = random_inputs(config, batch_size=4)
    # The pretrainers compute their own losses from these targets.
    targets = {
        "masked_ids": np.take_along_axis(inputs["input_ids"], inputs["masked_positions"], axis=1)
    }
    if "nsp_logits" in pretrainer.output:
        targets["nsp_label"] = np.array([0, 1, 0, 1])
    pretrainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = pretrainer.fit(inputs, targets, epochs=30, verbose=0)
    # Memorising four examples: the loss falls far below chance (log 300 = 5.7).
    assert history.history["loss"][-1] < 0.3 * history.history["loss"][0]


def test_encoder_and_pretrainer_follow_the_config(architecture):
    from keras_bert_kit.models import encoder_from_config, pretrainer_for

    config, encoder_class, pretrainer_class = architecture
    encoder = encoder_from_config(config)
    assert type(encoder) is encoder_class
    assert type(pretrainer_for(encoder)) is pretrainer_class
    with pytest.raises(ValueError, match="No encoder"):
        encoder_from_config(config.to_dict())


def test_the_public_protocol(architecture):
    """`targets`, `loss_weights`, `prediction_weights` and `with_internals()`."""
    config, encoder_class, pretrainer_class = architecture
    pretrainer = pretrainer_class(encoder_class(config))
    randomize_weights(pretrainer)
    data = batch(config)
    has_nsp = pretrainer_class is kbk.BertPretrainer
    outputs = ["mlm_logits"] + (["nsp_logits"] if has_nsp else [])

    targets = pretrainer.targets(data, None)
    assert sorted(targets) == sorted(["masked_ids", "masked_weights"] + ["nsp_label"] * has_nsp)
    np.testing.assert_array_equal(targets["masked_weights"], data["masked_weights"])
    assert pretrainer.loss_weights == {name: 1.0 for name in outputs}
    pretrainer.compile(loss_weights={"mlm_logits": 2.0})
    assert pretrainer.loss_weights["mlm_logits"] == 2.0
    weights = pretrainer.prediction_weights(data)
    assert sorted(weights) == sorted(outputs)
    np.testing.assert_array_equal(weights["mlm_logits"], data["masked_weights"])
    if has_nsp:
        np.testing.assert_array_equal(weights["nsp_logits"], np.ones(len(data["nsp_label"])))
    with pytest.raises(ValueError, match="masked_ids"):
        pretrainer.targets({"input_ids": data["input_ids"]}, None)

    view = pretrainer.with_internals()
    inputs = {name: data[name] for name in view.input}
    seen = view(inputs)
    expected = pretrainer(inputs)
    for name in outputs:
        np.testing.assert_allclose(seen["outputs"][name], expected[name], atol=1e-4)
    full = pretrainer.encoder(encoder_inputs(data))
    assert len(seen["hidden_states"]) == config.num_layers + 1
    assert len(seen["attentions"]) == config.num_layers
    for state, reference in zip(seen["hidden_states"], full["hidden_states"]):
        np.testing.assert_allclose(state, reference, atol=1e-4)
    seq_len = data["input_ids"].shape[1]
    assert tuple(seen["attentions"][-1].shape) == (4, config.num_heads, seq_len, seq_len)
    assert seen["attentions"][-1].dtype == tf.float32
    np.testing.assert_allclose(np.sum(seen["attentions"][-1], axis=-1), 1.0, atol=1e-5)
    assert {id(w) for w in view.weights} == {id(w) for w in pretrainer.weights}
