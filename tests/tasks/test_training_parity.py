"""Training parity with transformers: the same start, the same batches, the same losses.

Each task starts from one tiny transformers model's weights (encoder and
head, copied through the converter's tensor table), trains for `STEPS` steps
with dropout off on identical batches, and must follow transformers' torch
model step by step. Our side is the task's own `compile()` defaults and
`fit`; the torch side is what `transformers.Trainer` does with the same
settings: `torch.optim.AdamW` over Trainer's own decay/no-decay parameter
groups, `clip_grad_norm_` to 1.0, then `optimizer.step()` and the schedule.

Conventions that differ on purpose, configured identically on the torch side
so that the comparison stays tight:

- Warmup: our step `s` (0-based) of warmup uses `lr * (s + 1) / warmup`;
  `get_linear_schedule_with_warmup` uses `lr * s / warmup`, so its first
  update is at rate 0. After warmup the two are the same. The torch side
  runs ours through a `LambdaLR`.
- Span extraction: our start/end logits mask padding positions;
  `BertForQuestionAnswering` lets them into the softmax. The torch loss is
  transformers' formula on logits masked the same way.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers

import keras_bert_kit as kbk
from keras_bert_kit.convert.weights import export_links
from keras_bert_kit.layers.attention import MASK_VALUE
from keras_bert_kit.optimization import WarmupDecay, create_optimizer
from tests.conftest import TINY_SIZES, max_abs_diff, random_inputs
from tests.convert.hf_reference import (
    load_task_from_torch,
    task_links,
    tiny_hf_model,
    torch_inputs,
    torch_state,
)

STEPS = 20
BATCH_SIZE = 4
SEQ_LEN = 16
LEARNING_RATE = 2e-3  # large enough for the loss to move a lot in 20 steps
WARMUP_FRACTION = 0.25  # 5 warmup steps, then 15 of linear decay
WEIGHT_DECAY = 0.1  # large enough that decaying a wrong variable shows
NUM_CLASSES = 3
NUM_TAGS = 5
# float32 in two frameworks: the losses agree to about 2e-6 over the 20 steps.
LOSS_TOLERANCE = 1e-4
# Most weights agree to 1e-6. Some directions get no gradient in exact
# arithmetic, as a softmax ignores a shift of all its logits (attention's key
# biases, the QA head's bias and what feeds it): both sides step on rounding
# noise there, which Adam scales up, to 7e-5 in 20 steps.
WEIGHT_TOLERANCE = 2e-4


def _hf_model(architecture, **config):
    """A tiny transformers task model without dropout, every parameter random (biases too)."""
    return tiny_hf_model(
        architecture, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **config
    ).train()


def _encoder():
    return kbk.BertEncoder(
        kbk.BertConfig(**TINY_SIZES, dropout_rate=0.0, attention_dropout_rate=0.0)
    )


def _batches_inputs(seed):
    inputs = random_inputs(
        kbk.BertConfig(**TINY_SIZES), batch_size=STEPS * BATCH_SIZE, seq_len=SEQ_LEN, seed=seed
    )
    inputs.pop("masked_positions")
    return inputs


def _long(values):
    return torch.tensor(np.asarray(values), dtype=torch.long)


def _lengths(inputs):
    return inputs["padding_mask"].sum(axis=1)


# -- the three tasks: our model, our targets, transformers' targets and loss -----------


# Each target is marked by a token id in the input, so that 20 steps learn a lot.
MARKER = 10


def _sequence_task(rng, inputs):
    labels = rng.integers(0, NUM_CLASSES, size=len(inputs["input_ids"]))
    inputs["input_ids"][:, 0] = MARKER + labels  # where [CLS] would be: the pooler reads it

    def torch_loss(model, batch, rows):
        return model(**batch, labels=_long(labels[rows])).loss

    task = kbk.SequenceClassifier(_encoder(), num_classes=NUM_CLASSES, dropout=0.0)
    return task, "logits", labels, None, torch_loss


def _token_task(rng, inputs):
    """Tags at "first pieces": some real tokens, never [CLS], the last token or padding."""
    lengths = _lengths(inputs)
    positions = np.arange(SEQ_LEN)[None, :]
    inner = (positions > 0) & (positions < lengths[:, None] - 1)
    weights = (inner & (rng.random(inner.shape) < 0.6)).astype("float32")
    weights[:, 1] = 1.0  # every sentence has a tagged word
    tags = rng.integers(0, NUM_TAGS, size=weights.shape) * (weights > 0)
    inputs["input_ids"] = np.where(weights > 0, MARKER + tags, inputs["input_ids"])
    hf_labels = np.where(weights > 0, tags, -100)  # transformers' ignore_index

    def torch_loss(model, batch, rows):
        return model(**batch, labels=_long(hf_labels[rows])).loss

    task = kbk.TokenClassifier(_encoder(), num_tags=NUM_TAGS, dropout=0.0)
    return task, "logits", tags.astype("int32"), weights, torch_loss


def _span_task(rng, inputs):
    lengths = _lengths(inputs)
    starts = rng.integers(1, lengths - 1)
    ends = np.minimum(starts + rng.integers(0, 4, size=starts.shape), lengths - 2)
    rows = np.arange(len(starts))
    inputs["input_ids"][rows, starts] = MARKER
    inputs["input_ids"][rows, ends] = MARKER + 1

    def torch_loss(model, batch, rows):
        outputs = model(**batch)
        padding = (1.0 - batch["attention_mask"].float()) * MASK_VALUE
        cross_entropy = torch.nn.CrossEntropyLoss()
        return (
            cross_entropy(outputs.start_logits + padding, _long(starts[rows]))
            + cross_entropy(outputs.end_logits + padding, _long(ends[rows]))
        ) / 2

    task = kbk.SpanExtractor(_encoder(), dropout=0.0)
    targets = {"start_logits": starts.astype("int32"), "end_logits": ends.astype("int32")}
    return task, "span_logits", targets, None, torch_loss


TASKS = {
    "BertForSequenceClassification": _sequence_task,
    "BertForTokenClassification": _token_task,
    "BertForQuestionAnswering": _span_task,
}
HF_CONFIG = {
    "BertForSequenceClassification": dict(num_labels=NUM_CLASSES),
    "BertForTokenClassification": dict(num_labels=NUM_TAGS),
    "BertForQuestionAnswering": dict(),
}


# -- the two training loops -----------------------------------------------------------


def our_schedule(step, warmup_steps, total_steps):
    """`WarmupDecay`'s linear schedule as a `LambdaLR` factor, written out independently."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


class _BatchLosses(keras.callbacks.Callback):
    """Each batch's own loss: Keras logs the running mean over the epoch."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])
        self.losses.append(mean * (batch + 1) - sum(self.losses))


def train_torch(model, inputs, torch_loss):
    """`transformers.Trainer`'s optimizer step, by hand, on our batches in order."""
    decay_names = set(transformers.Trainer.get_decay_parameter_names(None, model))
    parameters = dict(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in parameters.items() if n in decay_names],
             "weight_decay": WEIGHT_DECAY},
            {"params": [p for n, p in parameters.items() if n not in decay_names],
             "weight_decay": 0.0},
        ],
        lr=LEARNING_RATE,
        betas=(0.9, 0.999),
        eps=1e-6,
    )
    warmup_steps = round(WARMUP_FRACTION * STEPS)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: our_schedule(step, warmup_steps, STEPS)
    )
    losses, norms = [], []
    for step in range(STEPS):
        rows = slice(step * BATCH_SIZE, (step + 1) * BATCH_SIZE)
        batch = torch_inputs({k: v[rows] for k, v in inputs.items()})
        loss = torch_loss(model, batch, rows)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return np.array(losses), np.array(norms)


def train_ours(task, inputs, targets, sample_weight):
    task.compile(
        learning_rate=LEARNING_RATE,
        warmup_fraction=WARMUP_FRACTION,
        weight_decay=WEIGHT_DECAY,
        clipnorm=1.0,
    )
    recorder = _BatchLosses()
    task.fit(
        inputs,
        targets,
        sample_weight=sample_weight,
        batch_size=BATCH_SIZE,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[recorder],
    )
    return np.array(recorder.losses)


def _weights_by_torch_name(task, architecture, head_layer):
    """Our task's weights under transformers' names, in transformers' layouts."""
    return dict(export_links(task_links(task, architecture, head_layer)))


@pytest.mark.parametrize("architecture", sorted(TASKS))
def test_training_follows_transformers_step_by_step(architecture):
    rng = np.random.default_rng(7)
    inputs = _batches_inputs(seed=3)
    task, head_layer, targets, sample_weight, torch_loss = TASKS[architecture](rng, inputs)
    reference = _hf_model(architecture, **HF_CONFIG[architecture])
    load_task_from_torch(task, reference, architecture, head_layer)
    initial = torch_state(reference)

    ours = train_ours(task, inputs, targets, sample_weight)
    theirs, norms = train_torch(reference, inputs, torch_loss)

    # A run where a wrong recipe shows: the loss falls far beyond the
    # tolerance, and gradients are clipped (on some steps at least).
    assert theirs[0] - theirs[-1] > 1000 * LOSS_TOLERANCE, theirs
    assert norms.max() > 1.0, norms
    loss_difference = max_abs_diff(ours, theirs)
    assert loss_difference < LOSS_TOLERANCE, (ours, theirs)

    trained = torch_state(reference)
    # Our frozen pooler has no counterpart where transformers' model has none.
    ours_now = {
        name: value
        for name, value in _weights_by_torch_name(task, architecture, head_layer).items()
        if name in trained
    }
    difference = {name: max_abs_diff(value, trained[name]) for name, value in ours_now.items()}
    moved = max(max_abs_diff(trained[name], initial[name]) for name in ours_now)
    worst = max(difference, key=difference.get)
    print(
        f"\n{architecture}: loss {theirs[0]:.3f} -> {theirs[-1]:.3f}, gradient norms "
        f"{norms.min():.2f}..{norms.max():.2f}; max |loss difference| {loss_difference:.1e}; "
        f"after {STEPS} steps weights moved up to {moved:.1e}, max |weight difference| "
        f"{difference[worst]:.1e} ({worst})"
    )
    assert moved > 50 * WEIGHT_TOLERANCE
    assert difference[worst] < WEIGHT_TOLERANCE, worst


def test_schedule_is_transformers_linear_schedule_one_step_ahead_in_warmup():
    """Our warmup starts at lr / warmup where transformers' starts at 0; then they agree."""
    warmup_steps = round(WARMUP_FRACTION * STEPS)
    ours = WarmupDecay(LEARNING_RATE, decay_steps=STEPS, warmup_steps=warmup_steps)
    parameter = torch.nn.Parameter(torch.zeros(1))
    theirs = transformers.get_linear_schedule_with_warmup(
        torch.optim.SGD([parameter], lr=LEARNING_RATE), warmup_steps, STEPS
    ).lr_lambdas[0]
    for step in range(STEPS + 3):
        factor = float(ours(step)) / LEARNING_RATE
        assert factor == pytest.approx(our_schedule(step, warmup_steps, STEPS), rel=1e-6)
        shifted = step + 1 if step < warmup_steps else step
        assert factor == pytest.approx(theirs(shifted), rel=1e-6, abs=1e-9), step


@pytest.mark.parametrize("clipnorm", [1.0, None])
def test_embedding_gradient_updates_as_in_torch(clipnorm):
    """A token seen thrice in a batch: clipped by the norm of its summed rows, as torch does.

    A large epsilon makes Adam's first step proportional to the clipped
    gradient, and sets torch's epsilon placement apart from Keras'.
    """
    rows, dim = 6, 4
    rng = np.random.default_rng(0)
    initial = rng.normal(size=(rows, dim)).astype("float32")
    ids = np.array([1, 3, 1, 1, 5])
    upstream = rng.normal(size=(len(ids), dim)).astype("float32")

    table = keras.Variable(initial, name="embeddings")
    optimizer = create_optimizer(0.1, num_train_steps=1, warmup_steps=0, weight_decay=0.0,
                                 clipnorm=clipnorm, epsilon=10.0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table.value, ids) * upstream)
    gradient = tape.gradient(loss, table.value)
    assert isinstance(gradient, tf.IndexedSlices)
    optimizer.apply_gradients([(gradient, table)])

    torch_table = torch.nn.Parameter(torch.tensor(initial))
    torch_optimizer = torch.optim.AdamW([torch_table], lr=0.1, eps=10.0, weight_decay=0.0)
    (torch_table[torch.tensor(ids)] * torch.tensor(upstream)).sum().backward()
    if clipnorm is not None:
        assert float(torch.nn.utils.clip_grad_norm_([torch_table], clipnorm)) > clipnorm
    torch_optimizer.step()
    np.testing.assert_allclose(table.numpy(), torch_table.detach().numpy(), rtol=0, atol=1e-7)
    assert max_abs_diff(table.numpy(), initial) > 1e-3
