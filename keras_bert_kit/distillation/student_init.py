"""Starting a student from its teacher's weights, as DistilBERT does."""

import dataclasses

import numpy as np

from keras_bert_kit.configs import DistilBertConfig, EncoderConfig, config_from_preset
from keras_bert_kit.distillation.internals import encoder_of
from keras_bert_kit.models import encoder_from_config
from keras_bert_kit.models.pretrainers import Pretrainer, pretrainer_for
from keras_bert_kit.validation import is_int

# What must agree between teacher and student for a layer's weights to carry over.
_SHARED_SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_heads", "intermediate_size")


def _student_config(teacher_config, student_config, layers):
    if student_config is None:
        depth = len(layers) if layers is not None else max(1, teacher_config.num_layers // 2)
        fields = {f.name for f in dataclasses.fields(DistilBertConfig)}
        values = {name: getattr(teacher_config, name) for name in fields}
        return DistilBertConfig(**{**values, "num_layers": depth})
    if isinstance(student_config, str):
        return config_from_preset(student_config)
    if not isinstance(student_config, EncoderConfig):
        raise ValueError(
            "`student_config` must be a DistilBertConfig or BertConfig, a preset name, or "
            f"None (a DistilBERT with the teacher's sizes); got {type(student_config).__name__}."
        )
    return student_config


def _check_compatible(teacher_config, student_config):
    for name in _SHARED_SHAPE_FIELDS + ("hidden_activation",):
        teacher_value, student_value = getattr(teacher_config, name), getattr(student_config, name)
        if teacher_value != student_value:
            raise ValueError(
                f"The student's {name} ({student_value!r}) differs from the teacher's "
                f"({teacher_value!r}): its layers cannot start from the teacher's. Give it the "
                "teacher's sizes, or train it from scratch."
            )
    if student_config.max_sequence_length > teacher_config.max_sequence_length:
        raise ValueError(
            f"The student's max_sequence_length ({student_config.max_sequence_length}) exceeds "
            f"the teacher's ({teacher_config.max_sequence_length}): there are no position "
            "embeddings to copy for the extra positions."
        )


def default_teacher_layers(teacher_depth, student_depth):
    """Teacher layers spread evenly, first one included: every other one for half the depth."""
    return [i * teacher_depth // student_depth for i in range(student_depth)]


def _teacher_layers(layers, teacher_depth, student_depth):
    if layers is None:
        return default_teacher_layers(teacher_depth, student_depth)
    layers = list(layers)
    for index in layers:
        if not is_int(index):
            raise ValueError(f"`layers` must hold teacher layer indices; got {index!r}.")
        if not 0 <= index < teacher_depth:
            raise ValueError(
                f"`layers` names teacher layer {index}, outside the teacher's depth: its "
                f"layers are 0 to {teacher_depth - 1}."
            )
    if len(layers) != student_depth:
        raise ValueError(
            f"`layers` names {len(layers)} teacher layers for a student of {student_depth}; "
            "name one per student layer."
        )
    return [int(index) for index in layers]


def _copy_weights(target, source):
    target.set_weights(source.get_weights())


def _copy_embeddings(student, teacher):
    """Token, position and LayerNorm weights; segment embeddings as far as they exist.

    A DistilBERT student has no segment embeddings, while a BERT teacher adds
    the segment-0 row to every token. That row is folded into the student's
    position table, so the student's embedding output equals the teacher's
    for single-segment text (the case DistilBERT serves).
    """
    target, source = student.embeddings, teacher.embeddings
    _copy_weights(target.token_embedding, source.token_embedding)
    _copy_weights(target.layer_norm, source.layer_norm)
    positions = source.position_embeddings.numpy()[: student.config.max_sequence_length]
    if source.segment_embedding is not None and target.segment_embedding is None:
        positions = positions + source.segment_embedding.embeddings.numpy()[0]
    elif target.segment_embedding is not None:
        segments = np.zeros(target.segment_embedding.embeddings.shape, "float32")
        if source.segment_embedding is not None:
            rows = min(len(segments), source.segment_embedding.embeddings.shape[0])
            segments[:rows] = source.segment_embedding.embeddings.numpy()[:rows]
        target.segment_embedding.embeddings.assign(segments)
    target.position_embeddings.assign(positions)


def init_student_from_teacher(teacher, student_config=None, layers=None):
    """A student whose weights start as chosen layers of its teacher (Sanh et al., 2019).

    Copies the embeddings (for a DistilBERT student of a BERT teacher, the
    segment-0 embedding is folded into the positions, as segments do not
    exist there), the teacher layers `layers` in order, and, from a
    pretrainer teacher, the MLM head (and the pooler and NSP head when both
    are BERT). Everything else starts as the student config's initialiser
    makes it.

    Args:
        teacher: a `BertEncoder`/`DistilBertEncoder`, a pretrainer, or a
            task model (its encoder is copied).
        student_config: a `DistilBertConfig` or `BertConfig` (or a preset
            name) with the teacher's vocabulary, hidden, head and
            intermediate sizes; None: a `DistilBertConfig` with the
            teacher's sizes and half its layers (or `len(layers)`).
        layers: the teacher layers (0-based) to copy, one per student layer;
            default: spread evenly from layer 0, i.e. every other one for a
            student of half the depth (0, 2, 4 of 6).

    Returns:
        A pretrainer of the student's architecture for a pretrainer teacher,
        else the student encoder (build the task head on it).
    """
    teacher_encoder = encoder_of(teacher)
    teacher_config = teacher_encoder.config
    config = _student_config(teacher_config, student_config, layers)
    _check_compatible(teacher_config, config)
    chosen = _teacher_layers(layers, teacher_config.num_layers, config.num_layers)

    encoder = encoder_from_config(config)
    _copy_embeddings(encoder, teacher_encoder)
    for target, index in zip(encoder.transformer_layers, chosen):
        _copy_weights(target, teacher_encoder.transformer_layers[index])
    if encoder.pooler is not None and teacher_encoder.pooler is not None:
        _copy_weights(encoder.pooler, teacher_encoder.pooler)
    if not isinstance(teacher, Pretrainer):
        return encoder

    student = pretrainer_for(encoder)
    _copy_weights(student.masked_lm_head, teacher.masked_lm_head)
    if student.next_sentence_head is not None and teacher.next_sentence_head is not None:
        _copy_weights(student.next_sentence_head, teacher.next_sentence_head)
    return student
