"""init_student_from_teacher copies exactly the layers it names."""

import numpy as np
import pytest

import keras_bert_kit as kbk
from keras_bert_kit.distillation import default_teacher_layers, init_student_from_teacher
from tests.conftest import max_abs_diff, randomize_weights, tiny_bert_config, tiny_distilbert_config
from tests.conftest import batch


def random_teacher(num_layers=4):
    teacher = kbk.BertPretrainer(kbk.BertEncoder(tiny_bert_config(num_layers=num_layers)))
    randomize_weights(teacher, seed=3)  # distinct values everywhere, LayerNorms included
    return teacher


def assert_same_weights(a, b):
    a, b = a.get_weights(), b.get_weights()
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_copies_the_named_layers_embeddings_and_mlm_head():
    teacher = random_teacher(num_layers=4)
    config = tiny_distilbert_config(num_layers=2, max_sequence_length=32)
    student = init_student_from_teacher(teacher, config, layers=[3, 1])
    assert isinstance(student, kbk.DistilBertPretrainer)
    encoder, source = student.encoder, teacher.encoder
    assert_same_weights(encoder.transformer_layers[0], source.transformer_layers[3])
    assert_same_weights(encoder.transformer_layers[1], source.transformer_layers[1])
    assert_same_weights(encoder.embeddings.token_embedding, source.embeddings.token_embedding)
    assert_same_weights(encoder.embeddings.layer_norm, source.embeddings.layer_norm)
    # DistilBERT has no segments: segment 0's row is folded into the positions.
    np.testing.assert_allclose(
        encoder.embeddings.position_embeddings.numpy(),
        source.embeddings.position_embeddings.numpy()[:32]
        + source.embeddings.segment_embedding.embeddings.numpy()[0],
        rtol=1e-6,
    )
    assert_same_weights(student.masked_lm_head, teacher.masked_lm_head)
    # The MLM head stays tied to the student's own embedding table.
    assert student.masked_lm_head.token_embedding is encoder.token_embedding


def test_default_is_every_other_layer_and_a_distilbert_of_half_the_depth():
    assert default_teacher_layers(6, 3) == [0, 2, 4]
    assert default_teacher_layers(12, 6) == [0, 2, 4, 6, 8, 10]
    assert default_teacher_layers(12, 4) == [0, 3, 6, 9]
    teacher = random_teacher(num_layers=4)
    student = init_student_from_teacher(teacher)
    assert isinstance(student.encoder, kbk.DistilBertEncoder)
    assert student.encoder.config.num_layers == 2
    assert student.encoder.config.hidden_size == teacher.encoder.config.hidden_size
    assert_same_weights(student.encoder.transformer_layers[1],
                        teacher.encoder.transformer_layers[2])


def test_a_full_copy_computes_what_the_teacher_does_on_one_segment():
    teacher = random_teacher(num_layers=2)
    student = init_student_from_teacher(teacher, tiny_distilbert_config(), layers=[0, 1])
    data = batch(teacher.encoder.config)
    data["segment_ids"][:] = 0
    assert max_abs_diff(teacher(data)["mlm_logits"], student(data)["mlm_logits"]) < 1e-4


def test_bert_students_keep_segments_pooler_and_nsp_head():
    teacher = random_teacher(num_layers=4)
    student = init_student_from_teacher(teacher, tiny_bert_config(num_layers=2))
    assert isinstance(student, kbk.BertPretrainer)
    assert_same_weights(student.encoder.embeddings.segment_embedding,
                        teacher.encoder.embeddings.segment_embedding)
    assert_same_weights(student.encoder.pooler, teacher.encoder.pooler)
    assert_same_weights(student.next_sentence_head, teacher.next_sentence_head)


def test_encoders_and_task_models_give_a_student_encoder():
    teacher = random_teacher(num_layers=2)
    encoder = init_student_from_teacher(teacher.encoder, layers=[1])
    assert isinstance(encoder, kbk.DistilBertEncoder) and encoder.config.num_layers == 1
    assert_same_weights(encoder.transformer_layers[0], teacher.encoder.transformer_layers[1])
    classifier = kbk.SequenceClassifier(teacher.encoder, 2)
    encoder = init_student_from_teacher(classifier, layers=[0])
    assert_same_weights(encoder.transformer_layers[0], teacher.encoder.transformer_layers[0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(layers=[0, 4]), "teacher layer 4, outside the teacher's depth"),
    (dict(layers=[0, -1]), "outside the teacher's depth"),
    (dict(layers=[0, 1, 2]), "3 teacher layers for a student of 2"),
    (dict(layers=["a", 1]), "layer indices"),
    (dict(student_config=tiny_distilbert_config(num_layers=2, hidden_size=16,
                                                intermediate_size=32)), "hidden_size"),
    (dict(student_config=tiny_distilbert_config(num_layers=2, max_sequence_length=128)),
     "max_sequence_length"),
    (dict(student_config=tiny_distilbert_config(num_layers=2, hidden_activation="relu")),
     "hidden_activation"),
    (dict(student_config=42), "student_config"),
])
def test_bad_requests_are_refused(kwargs, message):
    teacher = random_teacher(num_layers=4)
    kwargs.setdefault("student_config", tiny_distilbert_config(num_layers=2))
    with pytest.raises(ValueError, match=message):
        init_student_from_teacher(teacher, **kwargs)
