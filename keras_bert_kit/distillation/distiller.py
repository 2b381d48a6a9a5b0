"""`Distiller`: trains a student to match a frozen teacher, with `fit`."""

import keras
import tensorflow as tf

from keras_bert_kit.distillation.internals import encoder_of
from keras_bert_kit.distillation.losses import (
    attention_kl_loss,
    hidden_cosine_loss,
    hidden_mse_loss,
    soft_target_loss,
)
from keras_bert_kit.distribute import MultiWorkerFitMixin, reducible_logs
from keras_bert_kit.losses import unscaled
from keras_bert_kit.models.inputs import IdInputsModel
from keras_bert_kit.models.pretrainers import Pretrainer, check_loss_weight
from keras_bert_kit.optimization import warmup_then_linear_decay
from keras_bert_kit.saving import from_config_with_objects
from keras_bert_kit.tasks import Task
from keras_bert_kit.validation import check_number

# Loss components: (constructor weight, logged name).
COMPONENTS = (
    ("alpha_ce", "soft_loss"),
    ("alpha_hard", "hard_loss"),
    ("alpha_cos", "cos_loss"),
    ("alpha_hidden", "hidden_loss"),
    ("alpha_attention", "attention_loss"),
)


def _as_output_dict(outputs):
    return outputs if isinstance(outputs, dict) else {"logits": outputs}


def _output_widths(model):
    """{output name: size of its last axis}."""
    return {
        name: tensor.shape[-1] for name, tensor in _as_output_dict(model.output).items()
    }


def _vocabulary(model):
    preprocessor = getattr(model, "preprocessor", None)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    return tokenizer.get_vocabulary() if tokenizer is not None else None


def _check_pair(teacher, student):
    """Raises unless `student` can learn `teacher`'s outputs token for token."""
    for role, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, (Pretrainer, Task)):
            raise ValueError(
                f"The {role} must be a keras_bert_kit pretrainer (general distillation) or "
                f"task model (task distillation); got {type(model).__name__}."
            )
    if isinstance(teacher, Pretrainer) != isinstance(student, Pretrainer) or (
        isinstance(teacher, Task) and type(teacher) is not type(student)
    ):
        raise ValueError(
            f"A {type(teacher).__name__} teacher cannot teach a {type(student).__name__}: "
            "distil a pretrainer into a pretrainer (general distillation), or a task "
            "model into one of the same task (task distillation)."
        )
    teacher_vocab = encoder_of(teacher).config.vocab_size
    student_vocab = encoder_of(student).config.vocab_size
    if teacher_vocab != student_vocab:
        raise ValueError(
            f"The teacher's vocabulary has {teacher_vocab} tokens and the student's "
            f"{student_vocab}: a student must use its teacher's vocabulary, so that each "
            "token id means the same to both."
        )
    teacher_tokens, student_tokens = _vocabulary(teacher), _vocabulary(student)
    if teacher_tokens is not None and student_tokens is not None:
        for token_id, (a, b) in enumerate(zip(teacher_tokens, student_tokens)):
            if a != b:
                raise ValueError(
                    f"The teacher's and the student's vocabularies differ: id {token_id} is "
                    f"{a!r} for the teacher and {b!r} for the student."
                )
    if isinstance(teacher, Task):
        teacher_widths, student_widths = _output_widths(teacher), _output_widths(student)
        if teacher_widths != student_widths:
            raise ValueError(
                f"The teacher's outputs {teacher_widths} and the student's {student_widths} "
                "differ in size: they must predict the same classes."
            )


def check_temperature(temperature):
    """Raises unless `temperature` is a finite number > 0."""
    check_number("temperature", temperature, minimum=0, include_minimum=False, finite=True)


def _layer_pairs(layer_map, teacher_depth, student_depth):
    """`layer_map` as sorted (student index, teacher index) pairs, validated.

    Indices are into `hidden_states`: 0 is the embedding output, i the output
    of transformer layer i. The default maps the student's layers evenly onto
    the teacher's (TinyBERT's uniform strategy): student i -> teacher
    i * teacher_depth / student_depth.
    """
    if layer_map is None:
        return [(i, round(i * teacher_depth / student_depth)) for i in range(student_depth + 1)]
    items = layer_map.items() if isinstance(layer_map, dict) else layer_map
    try:
        pairs = sorted((int(s), int(t)) for s, t in items)
    except (TypeError, ValueError):
        raise ValueError(
            "`layer_map` must map student layer indices to teacher layer indices, as a dict "
            f"{{student: teacher}} or a list of [student, teacher] pairs; got {layer_map!r}."
        ) from None
    if not pairs:
        raise ValueError("`layer_map` is empty: map at least one student layer to a teacher layer.")
    for s, t in pairs:
        for role, index, depth in (("student", s, student_depth), ("teacher", t, teacher_depth)):
            if not 0 <= index <= depth:
                raise ValueError(
                    f"`layer_map` names {role} layer {index}, outside the {role}'s depth: its "
                    f"hidden states are 0 (the embeddings) to {depth} (the last of its "
                    f"{depth} layers)."
                )
    return pairs


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class Distiller(IdInputsModel, MultiWorkerFitMixin, keras.Model):
    """Knowledge distillation of a frozen `teacher` into `student`, trained with `fit`.

    Two modes, chosen by the models:
    - general distillation: a `BertPretrainer` teacher and a
      `DistilBertPretrainer` (or `BertPretrainer`) student, on the batches of
      `keras_bert_kit.data.pretraining_dataset`;
    - task distillation: a fine-tuned task model (e.g. `SequenceClassifier`)
      teacher and a student of the same task, on the task's preprocessed
      batches (`student.preprocessor.dataset(texts, labels, ...)`).

    Each step runs the teacher with `training=False` and the student with
    `training=True`, and minimises
        alpha_ce * soft_loss + alpha_hard * hard_loss + alpha_cos * cos_loss
        + alpha_hidden * hidden_loss + alpha_attention * attention_loss
    where
    - `soft_loss`: KL between the teacher's and the student's output
      distributions softened by `temperature`, times T² (every output both
      models have: MLM logits at the real masked positions, class logits,
      tag logits at the weighted tokens, span logits);
    - `hard_loss`: the student's own loss on the true targets (MLM, or the
      task's cross-entropy);
    - `cos_loss`: 1 - cosine between the teacher's and the student's last
      hidden states, at real (non-padding) tokens;
    - `hidden_loss`: MSE between hidden states paired by `layer_map`, through
      a learned projection when the widths differ (TinyBERT);
    - `attention_loss`: KL between the attention distributions of the layers
      paired by `layer_map` (MiniLM).
    A component with weight 0 is not computed, but for the hard loss, which
    is always logged. Each computed one is logged under its name, beside
    `loss` (their weighted sum) and the student's metrics. `evaluate` runs
    the student alone: `loss` is its hard loss, reported with its metrics.
    `predict` gives the student's outputs.

    Args:
        teacher: the trained model; frozen (`trainable = False`) here.
        student: the model to train; the same vocabulary as the teacher.
        temperature: T > 0 of the soft targets.
        alpha_ce, alpha_hard, alpha_cos, alpha_hidden, alpha_attention: the
            components' weights (>= 0); the defaults are DistilBERT's (5, 2, 1).
        layer_map: for the hidden and attention losses, {student index:
            teacher index} into `hidden_states` (0: embeddings, i: layer i),
            or a list of pairs; default: student layers spread evenly over
            the teacher's. Attention pairs skip index 0.

    Example:
    ```python
    student = kbk.DistilBertPretrainer(init_student_from_teacher(teacher.encoder, config))
    distiller = Distiller(teacher, student, temperature=2.0)
    distiller.compile(learning_rate=5e-4, num_train_steps=10_000, warmup_steps=500)
    distiller.fit(pretraining_batches, epochs=1)
    student.save("student.keras")  # needs nothing of the teacher
    ```
    """

    def __init__(
        self,
        teacher,
        student,
        temperature=2.0,
        alpha_ce=5.0,
        alpha_hard=2.0,
        alpha_cos=1.0,
        alpha_hidden=0.0,
        alpha_attention=0.0,
        layer_map=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_pair(teacher, student)
        check_temperature(temperature)
        alphas = dict(
            alpha_ce=alpha_ce,
            alpha_hard=alpha_hard,
            alpha_cos=alpha_cos,
            alpha_hidden=alpha_hidden,
            alpha_attention=alpha_attention,
        )
        for name, weight in alphas.items():
            check_loss_weight(name, weight)
        if not any(alphas.values()):
            raise ValueError("Every loss weight (alpha_*) is 0: there is nothing to train on.")
        teacher_config, student_config = encoder_of(teacher).config, encoder_of(student).config
        if alpha_cos and teacher_config.hidden_size != student_config.hidden_size:
            raise ValueError(
                f"`alpha_cos` compares last hidden states, but the teacher's are "
                f"{teacher_config.hidden_size} wide and the student's "
                f"{student_config.hidden_size}. Set alpha_cos=0 and use alpha_hidden, which "
                "learns a projection between the widths."
            )
        pairs = None
        if alpha_hidden or alpha_attention or layer_map is not None:
            pairs = _layer_pairs(layer_map, teacher_config.num_layers, student_config.num_layers)
        if alpha_attention and not any(s and t for s, t in pairs):
            raise ValueError(
                "`alpha_attention` needs `layer_map` to pair at least one student layer "
                "(index >= 1) with a teacher layer; it pairs only embeddings."
            )
        if alpha_attention and teacher_config.num_heads != student_config.num_heads:
            raise ValueError(
                f"`alpha_attention` compares attention maps head by head, but the teacher has "
                f"{teacher_config.num_heads} heads and the student {student_config.num_heads}."
            )

        # === Models ===
        teacher.trainable = False
        self.teacher = teacher
        self.student = student
        self._teacher_view = teacher.with_internals()
        self._student_view = student.with_internals()
        self.hidden_projection = None
        if alpha_hidden and teacher_config.hidden_size != student_config.hidden_size:
            self.hidden_projection = keras.layers.Dense(
                teacher_config.hidden_size,
                kernel_initializer=keras.initializers.TruncatedNormal(
                    stddev=student_config.initializer_range
                ),
                name="hidden_projection",
            )
            self.hidden_projection.build((None, None, student_config.hidden_size))

        # === Config ===
        self.temperature = float(temperature)
        self.alphas = {name: float(weight) for name, weight in alphas.items()}
        self.layer_map = pairs if layer_map is not None else None
        self._layer_pairs = pairs
        self.loss_tracker = keras.metrics.Mean(name="loss")
        # The hard loss is always computed and logged (the student's own
        # metrics need the targets anyway); the others only when weighted.
        self._trackers = {
            logged: keras.metrics.Mean(name=logged)
            for alpha, logged in COMPONENTS
            if self.alphas[alpha] or logged == "hard_loss"
        }
        # Both models are built functional models; Keras need not trace one
        # more symbolic call (which, under MirroredStrategy, it makes with a
        # float-averaged batch that a pretrainer rightly refuses as ids).
        self.built = True

    # -- compile ----------------------------------------------------------------------

    def compile(
        self,
        optimizer="auto",
        learning_rate=5e-5,
        num_train_steps=None,
        warmup_steps=0,
        weight_decay=0.01,
        clipnorm=1.0,
        **kwargs,
    ):
        """Configures training of the student.

        Args:
            optimizer: "auto" for `create_optimizer` (AdamW, no decay on
                LayerNorm and biases, global-norm clipping) with linear
                warmup over `warmup_steps`, then linear decay to 0 at
                `num_train_steps` (constant when None); or any optimizer.
            learning_rate, num_train_steps, warmup_steps, weight_decay,
                clipnorm: the "auto" optimizer's settings.
            **kwargs: passed to `keras.Model.compile` (`jit_compile`,
                `steps_per_execution`, ...). A task student's loss and
                metrics are its own defaults (`loss`, `metrics`, ... here
                replace them); a pretrainer student computes its own.
        """
        if optimizer == "auto":
            optimizer = warmup_then_linear_decay(
                learning_rate, num_train_steps, warmup_steps, weight_decay, clipnorm
            )
        # The hard loss and the metrics are the student's own: compiled with
        # its defaults (or the `loss`, `metrics`, ... given here), and with
        # the optimizer that trains it, which a saved student then carries.
        student_settings = {
            name: kwargs.pop(name)
            for name in ("loss", "loss_weights", "metrics", "weighted_metrics")
            if name in kwargs
        }
        super().compile(optimizer=optimizer, **kwargs)
        self.student.compile(optimizer=self.optimizer, **student_settings)

    # -- forward ----------------------------------------------------------------------

    @staticmethod
    def _select(x, view, role):
        if not isinstance(x, dict):
            raise ValueError(
                f"Distiller trains on dicts of id features; got {type(x).__name__}. Preprocess "
                "texts first, e.g. with `student.preprocessor.dataset(texts, labels)`."
            )
        missing = [name for name in view.input if name not in x]
        if missing:
            raise ValueError(
                f"The {role} needs the input(s) {missing}, which the batch lacks; it has "
                f"{sorted(x)}."
            )
        return {name: x[name] for name in view.input}

    def call(self, inputs, training=None):
        """The student's outputs."""
        return self.student(self._select(inputs, self._student_view, "student"), training=training)

    # -- losses -----------------------------------------------------------------------

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The student's own (hard) loss on the true targets."""
        return self.student.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.student.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return self.get_metrics_result()

    @property
    def metrics(self):
        # What the steps log (and Keras resets each epoch): the total, its
        # components, and the student's metrics, which Keras leaves out of a
        # nested model's (but its `loss`: ours is the distillation loss).
        return [
            self.loss_tracker,
            *self._trackers.values(),
            *(metric for metric in self.student.metrics if metric.name != "loss"),
        ]

    def _distillation_losses(self, x, y, sample_weight, teacher, student):
        """{logged name: loss} of every weighted component but the hard loss."""
        losses = {}
        padding_mask = x["padding_mask"]
        if self.alphas["alpha_ce"]:
            teacher_logits = _as_output_dict(teacher["outputs"])
            student_logits = _as_output_dict(student["outputs"])
            soft = 0.0
            # Each output weighs as in the student's hard loss, and so do its predictions.
            items = self.student.prediction_weights(x, y, sample_weight)
            for name, weight in self.student.loss_weights.items():
                if name in teacher_logits and name in student_logits and weight:
                    soft += weight * soft_target_loss(
                        teacher_logits[name], student_logits[name], self.temperature, items[name]
                    )
            losses["soft_loss"] = soft
        if self.alphas["alpha_cos"]:
            losses["cos_loss"] = hidden_cosine_loss(
                teacher["hidden_states"][-1], student["hidden_states"][-1], padding_mask
            )
        if self.alphas["alpha_hidden"]:
            hidden = 0.0
            for s, t in self._layer_pairs:
                states = student["hidden_states"][s]
                if self.hidden_projection is not None:
                    states = self.hidden_projection(states)
                hidden += hidden_mse_loss(teacher["hidden_states"][t], states, padding_mask)
            losses["hidden_loss"] = hidden / len(self._layer_pairs)
        if self.alphas["alpha_attention"]:
            pairs = [(s, t) for s, t in self._layer_pairs if s and t]
            attention = 0.0
            for s, t in pairs:
                attention += attention_kl_loss(
                    teacher["attentions"][t - 1], student["attentions"][s - 1], padding_mask
                )
            losses["attention_loss"] = attention / len(pairs)
        return losses

    # -- steps ------------------------------------------------------------------------

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        teacher = self._teacher_view(
            self._select(x, self._teacher_view, "teacher"), training=False
        )
        teacher = tf.nest.map_structure(tf.stop_gradient, teacher)
        with tf.GradientTape() as tape:
            student = self._student_view(
                self._select(x, self._student_view, "student"), training=True
            )
            losses = self._distillation_losses(x, y, sample_weight, teacher, student)
            losses["hard_loss"] = self.compute_loss(x, y, student["outputs"], sample_weight)
            loss = 0.0
            for alpha, logged in COMPONENTS:
                if logged in losses:
                    loss += self.alphas[alpha] * losses[logged]
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))

        batch_size = tf.shape(x["input_ids"])[0]
        self.loss_tracker.update_state(unscaled(loss), sample_weight=batch_size)
        for name, value in losses.items():
            self._trackers[name].update_state(unscaled(value), sample_weight=batch_size)
        return reducible_logs(self.compute_metrics(x, y, student["outputs"], sample_weight))

    def test_step(self, data):
        # The student alone: `loss` is its hard loss; the distillation
        # components are not computed.
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        loss = self.compute_loss(x, y, y_pred, sample_weight, training=False)
        self.loss_tracker.update_state(unscaled(loss), sample_weight=tf.shape(x["input_ids"])[0])
        logs = self.compute_metrics(x, y, y_pred, sample_weight)
        return reducible_logs(
            {name: value for name, value in logs.items() if name not in self._trackers}
        )

    # -- serialization ----------------------------------------------------------------

    def get_config(self):
        return {
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "temperature": self.temperature,
            **self.alphas,
            "layer_map": [list(pair) for pair in self.layer_map] if self.layer_map else None,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return from_config_with_objects(cls, config, ("teacher", "student"))
