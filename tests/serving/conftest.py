"""Tiny real exports for the serving tests, built once per test process.

Each fixture returns a template base directory (`<base>/<version>/...`);
a test copies the versions it needs into its own base directory
(`copy_version`), so that tests can add, remove and relabel versions freely.
"""

import contextlib
import os
import shutil

import grpc
import keras
import pytest

import keras_bert_kit as kbk
from keras_bert_kit.export import export_saved_model
from tests.conftest import randomize_weights
from tests.tasks.conftest import tiny_encoder

LABELS = ["negative", "positive"]


def _classifier(tokenizer, seed):
    keras.utils.set_random_seed(seed)
    model = kbk.SequenceClassifier(
        tiny_encoder(), num_classes=2, label_names=LABELS,
        preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer, sequence_length=32),
    )
    randomize_weights(model, seed)
    return model


@pytest.fixture(scope="session")
def classifier_exports(uncased_tokenizer, tmp_path_factory):
    """A text classifier exported twice: versions 1 and 2 have different weights."""
    base = tmp_path_factory.mktemp("classifier")
    for version, seed in ((1, 1), (2, 2)):
        export_saved_model(_classifier(uncased_tokenizer, seed), base, version)
    keras.backend.clear_session()
    return base


@pytest.fixture(scope="session")
def pretrainer_export(uncased_tokenizer, tmp_path_factory):
    """A BERT pretrainer (fill_mask, predict_ids) as version 1."""
    base = tmp_path_factory.mktemp("pretrainer")
    packer = kbk.BertPreprocessor(uncased_tokenizer, sequence_length=24)
    export_saved_model(kbk.BertPretrainer(tiny_encoder()), base, 1, preprocessor=packer, top_k=3)
    keras.backend.clear_session()
    return base


def copy_version(template, base, version, as_version=None):
    """Copies `template/<version>` to `base/<as_version or version>`; returns the new path.

    Copied under a hidden name and renamed, as `export_saved_model` writes, so
    a polling server never sees half a version.
    """
    target = base / str(as_version if as_version is not None else version)
    staging = base / f".{target.name}.copying"
    shutil.copytree(template / str(version), staging)
    os.rename(staging, target)
    return target


def write_model_config(path, models):
    """Writes a `ModelServerConfig` text proto at `path`; returns its path as a string.

    `models`: (name, base_path, extra text proto fields of the `config`).
    """
    entries = "".join(
        f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" {extra} }}\n'
        for name, base, extra in models
    )
    path.write_text(f"model_config_list {{\n{entries}}}\n")
    return str(path)


@contextlib.contextmanager
def running_server(**options):
    """A `ModelServer` on a free loopback port (REST too with rest_api_port=0)."""
    from serving.server import ModelServer, ServerOptions

    options = {"port": 0, "file_system_poll_wait_seconds": 0.2, **options}
    server = ModelServer(ServerOptions(**options)).start()
    try:
        yield server
    finally:
        server.stop(grace=5)


@contextlib.contextmanager
def prediction_stub(server):
    """tensorflow-serving-api's raw PredictionService and ModelService stubs."""
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
               model_service_pb2_grpc.ModelServiceStub(channel))
    finally:
        channel.close()
