"""TF Serving warmup requests: `assets.extra/tf_serving_warmup_requests`.

TF Serving replays these `PredictionLog` records when it loads a version,
before the version serves traffic, so the first client request does not pay
for graph optimisation and memory allocation. The server reads at most 1,000
records.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from keras_bert_kit.tokenization.vocabulary import MASK_TOKEN

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000


def _words(tokenizer, count=64):
    """Whole, alphabetic words of the vocabulary (no pieces or special tokens)."""
    words = [
        token for token in tokenizer.get_vocabulary()
        if token.isalpha() and token.isascii() and len(token) > 1
    ]
    words = words[len(words) // 3:][:count] or ["a"]
    return words


def warmup_inputs(builder):
    """[(signature name, {input name: numpy array})]: a short and a long request each.

    The short one is one sentence; the long one a batch of 8 texts longer
    than the sequence length (so truncation and the largest shapes run).
    """
    words = _words(builder.tokenizer)
    short = " ".join(words[:6])
    long_text = " ".join(words[i % len(words)] for i in range(builder.packer.sequence_length + 8))
    batches = {"short": [short], "long": [long_text] * 8}
    requests = []
    for name in builder.names:
        for texts in batches.values():
            texts = np.array(texts, dtype=object)
            if name == "predict_ids":
                features = builder.packer(tf.constant(texts))
                inputs = {key: features[key].numpy() for key in builder.id_inputs}
            elif name == "fill_mask" or (name == "serving_default" and builder.kind == "pretrainer"):
                inputs = {"text": np.array([f"{t} {MASK_TOKEN} ." for t in texts], dtype=object)}
            elif name == "serving_default":
                inputs = {key: texts for key in builder.text_inputs}
            else:
                inputs = {"text": texts}
            requests.append((name, inputs))
    return requests


def prediction_log(signature_name, inputs, model_name=""):
    """A `PredictionLog` holding a `PredictRequest` for `signature_name`."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
    )
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )


def write_warmup_requests(export_dir, requests):
    """Writes `requests` ([(signature, inputs)]) as the export's warmup file; returns its path."""
    if len(requests) > MAX_WARMUP_RECORDS:
        raise ValueError(
            f"TF Serving reads at most {MAX_WARMUP_RECORDS} warmup records; got {len(requests)}."
        )
    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            writer.write(prediction_log(signature_name, inputs).SerializeToString())
    return path


def read_warmup_requests(export_dir):
    """The export's warmup records as `PredictionLog` protos."""
    path = os.path.join(export_dir, WARMUP_FILE)
    logs = []
    for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS + 1):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs
