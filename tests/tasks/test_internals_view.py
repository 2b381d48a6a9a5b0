"""Tasks' public protocol: `with_internals()` over the same layers, `loss_weights`, `prediction_weights`."""

import numpy as np

from keras_bert_kit.tasks import SequenceClassifier, SpanExtractor, TokenClassifier
from tests.tasks.conftest import tiny_encoder


def features(n=2, length=5):
    rng = np.random.default_rng(1)
    mask = np.ones((n, length), "int32")
    mask[0, 3:] = 0
    return {
        "input_ids": rng.integers(1000, 2000, (n, length)).astype("int32"),
        "segment_ids": np.zeros((n, length), "int32"),
        "padding_mask": mask,
    }


def test_the_view_of_a_cls_classifier_matches_it_and_shows_every_layer():
    model = SequenceClassifier(tiny_encoder(), num_classes=3, dropout=0.0)
    view = model.with_internals()
    x = features()
    seen = view(x)
    np.testing.assert_allclose(seen["outputs"], model(x), atol=1e-5)
    layers = model.encoder.config.num_layers
    assert len(seen["hidden_states"]) == layers + 1 and len(seen["attentions"]) == layers
    assert tuple(seen["hidden_states"][-1].shape)[:2] == (2, 5)
    assert tuple(seen["attentions"][-1].shape)[2:] == (5, 5)
    # The same weights: the view has no variable of its own.
    assert {id(v) for v in view.weights} <= {id(v) for v in model.weights}
    np.testing.assert_allclose(
        seen["hidden_states"][-1][:, 0],
        model.encoder(x)["sequence_output"][:, 0],
        atol=1e-5,
    )


def test_loss_and_prediction_weights():
    x = features()
    span = SpanExtractor(tiny_encoder("distilbert"), dropout=0.0)
    assert span.loss_weights == {"start_logits": 0.5, "end_logits": 0.5}
    span.compile(loss_weights={"start_logits": 0.25, "end_logits": 0.75})
    assert span.loss_weights == {"start_logits": 0.25, "end_logits": 0.75}
    # One start (and end) prediction per example, over the positions.
    np.testing.assert_array_equal(span.prediction_weights(x)["start_logits"], np.ones(2))
    tagger = TokenClassifier(tiny_encoder(), num_tags=3)
    assert tagger.loss_weights == {"logits": 1.0}
    tagger.compile(loss_weights=[2.0])
    assert tagger.loss_weights == {"logits": 2.0}
    np.testing.assert_array_equal(tagger.prediction_weights(x)["logits"], x["padding_mask"])
    first_pieces = np.array([[1, 0, 1, 0, 0], [1, 1, 0, 1, 1]], "float32")
    np.testing.assert_array_equal(
        tagger.prediction_weights(x, sample_weight=first_pieces)["logits"], first_pieces
    )
