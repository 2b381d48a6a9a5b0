"""`check_serving_ops`: the op types of an export and the TF Serving releases that run them."""

import os
import shutil

import pytest
import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

import keras_bert_kit as kbk
from keras_bert_kit.export import export_saved_model
from keras_bert_kit.export.serving_ops import (
    SAVED_MODEL_FILE,
    TF_SERVING_RELEASES,
    TF_TEXT_OPS,
    OpsCompatibility,
    check_serving_ops,
    core_tensorflow_ops,
)
from tests.conftest import tiny_bert_config

OLDEST_RELEASE = TF_SERVING_RELEASES[0][0]


@pytest.fixture(scope="module")
def classifier_export(tmp_path_factory, bert_vocab_path):
    tokenizer = kbk.BertTokenizer(bert_vocab_path)
    encoder = kbk.BertEncoder(tiny_bert_config(vocab_size=tokenizer.vocabulary_size()))
    classifier = kbk.SequenceClassifier(
        encoder, num_classes=2, label_names=["neg", "pos"],
        preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer, sequence_length=16),
    )
    return export_saved_model(classifier, tmp_path_factory.mktemp("clf"), warmup=False)


class IdsOnly(tf.Module):
    """A model a client feeds token ids: no text op anywhere."""

    def __init__(self):
        super().__init__()
        self.embeddings = tf.Variable(tf.random.normal([30, 4], seed=0))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="input_ids")])
    def predict_ids(self, input_ids):
        return {"logits": tf.reduce_sum(tf.gather(self.embeddings, input_ids), axis=1)}


class RoundRobinPacker(tf.Module):
    """Trims two segments as keras-hub's MultiSegmentPacker does (TF Text's RoundRobinTrimmer)."""

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="first"),
                                  tf.TensorSpec([None, None], tf.int32, name="second")])
    def pack(self, first, second):
        segments = [tf.RaggedTensor.from_tensor(first), tf.RaggedTensor.from_tensor(second)]
        trimmed = tf_text.RoundRobinTrimmer(max_seq_length=4).trim(segments)
        return {"ids": tf.concat(trimmed, axis=1).to_tensor()}


def save(module, export_dir, name):
    tf.saved_model.save(module, str(export_dir), signatures={name: getattr(module, name)})
    return export_dir


@pytest.fixture(scope="module")
def ids_only_export(tmp_path_factory):
    return save(IdsOnly(), tmp_path_factory.mktemp("ids"), "predict_ids")


def test_text_in_export_needs_tf_text_ops_of_serving_2_12(classifier_export):
    report = check_serving_ops(classifier_export)
    assert {"FastWordpieceTokenizeWithOffsets", "FastBertNormalize"} <= set(report.non_core_ops)
    assert set(report.non_core_ops) <= TF_TEXT_OPS
    assert report.unsupported_ops == ()
    assert report.min_serving_version == "2.12.0"
    assert report.releases[-1] == TF_SERVING_RELEASES[-1][0]
    assert list(report.ops) == sorted(set(report.ops))
    assert {"MatMul", "StatefulPartitionedCall", "VarHandleOp"} <= set(report.ops)
    assert report.tensorflow_version == tf.__version__
    assert set(report.signatures) == {"serving_default", "predict_ids", "embed"}
    for name in ("serving_default", "embed"):
        assert report.signatures[name].min_serving_version == "2.12.0"
        assert "FastWordpieceTokenizeWithOffsets" in report.signatures[name].non_core_ops
    predict_ids = report.signatures["predict_ids"]
    assert predict_ids.non_core_ops == ()
    assert predict_ids.min_serving_version == OLDEST_RELEASE
    assert set(predict_ids.ops) < set(report.ops)


def test_table_names_every_signature_and_the_floor(classifier_export):
    table = str(check_serving_ops(classifier_export))
    lines = table.splitlines()
    assert str(classifier_export) in lines[0]
    for name in ("serving_default", "predict_ids", "embed", "(whole graph)"):
        (line,) = [line for line in lines if line.startswith(name + " ")]
        floor = OLDEST_RELEASE if name == "predict_ids" else "2.12.0"
        assert line.endswith(f"{floor} and newer")
    assert "FastBertNormalize" in table


def test_ids_only_graph_runs_on_the_oldest_release(ids_only_export):
    report = check_serving_ops(ids_only_export)
    assert report.non_core_ops == ()
    assert report.min_serving_version == OLDEST_RELEASE
    assert len(report.releases) == len(TF_SERVING_RELEASES)
    assert {"ResourceGather", "Sum"} <= set(report.signatures["predict_ids"].ops)


def test_round_robin_trimmer_needs_serving_2_20(tmp_path):
    report = check_serving_ops(save(RoundRobinPacker(), tmp_path, "pack"))
    assert "TFText>RoundRobinTrim" in report.non_core_ops
    assert report.min_serving_version == "2.20.0"
    assert report.signatures["pack"].min_serving_version == "2.20.0"


def test_an_op_no_release_registers_is_flagged(ids_only_export, tmp_path):
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((ids_only_export / SAVED_MODEL_FILE).read_bytes())
    renamed = 0
    for function in saved_model.meta_graphs[0].graph_def.library.function:
        for node in function.node_def:
            if node.op == "ResourceGather":
                node.op, renamed = "HomeMadeGather", renamed + 1
    assert renamed
    (tmp_path / SAVED_MODEL_FILE).write_bytes(saved_model.SerializeToString())
    report = check_serving_ops(tmp_path)
    assert report.unsupported_ops == ("HomeMadeGather",)
    assert report.releases == ()
    assert report.min_serving_version is None
    assert report.signatures["predict_ids"].min_serving_version is None
    assert "HomeMadeGather*" in report.table()


def test_releases_skip_the_servers_that_went_back_to_an_older_tf_text():
    # TF Serving 2.8 and 2.9 bundle TF Text 2.6.0, without the fast WordPiece ops 2.7.3 has.
    compatibility = OpsCompatibility.of({"MatMul", "FastWordpieceTokenizeWithOffsets"}, {"MatMul"})
    assert compatibility.min_serving_version == "2.7.3"
    assert "2.9.3" not in compatibility.releases
    assert compatibility.describe_releases() == "2.7.3-2.7.4, 2.10.0 and newer"


@pytest.mark.parametrize("release, has, lacks", [
    ("2.10.1", {"FastWordpieceTokenizeWithOffsets", "RegexSplitWithOffsets"}, {"FastBertNormalize"}),
    ("2.11.1", {"NormalizeUTF8"}, {"FastBertNormalize"}),
    ("2.12.0", {"FastBertNormalize", "FastWordpieceTokenizeWithOffsets", "NormalizeUTF8",
                "RegexSplitWithOffsets"}, {"TFText>RoundRobinTrim", "TFText>RoundRobinGenerateMasks"}),
    ("2.19.1", {"FastBertNormalize"}, {"TFText>RoundRobinTrim", "TFText>RoundRobinGenerateMasks"}),
    ("2.20.0", {"TFText>RoundRobinTrim", "TFText>RoundRobinGenerateMasks"}, set()),
])
def test_release_table_holds_the_documented_facts(release, has, lacks):
    (registered,) = [ops for name, _, ops in TF_SERVING_RELEASES if name == release]
    assert has <= registered
    assert not lacks & registered


def test_core_ops_come_from_tensorflow_alone():
    core = core_tensorflow_ops()
    assert {"MatMul", "StaticRegexReplace", "StatefulPartitionedCall"} <= core
    # This process imported tensorflow_text, which registered its ops here, but not there.
    assert not core & TF_TEXT_OPS
    for op in TF_TEXT_OPS:
        assert op_def_registry.get(op) is not None, f"{op} is no op of the installed TF Text"


def test_missing_or_malformed_saved_model_is_a_clear_error(ids_only_export, tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        check_serving_ops(tmp_path / "absent")
    with pytest.raises(ValueError, match=r"saved_model\.pb is missing"):
        check_serving_ops(tmp_path)
    shutil.copytree(ids_only_export, tmp_path / "7")
    with pytest.raises(ValueError, match=r"pass a version directory, e\.g\. .*7"):
        check_serving_ops(tmp_path)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / SAVED_MODEL_FILE).write_bytes(b"not a saved model")
    with pytest.raises(ValueError, match=r"saved_model\.pb is not a SavedModel"):
        check_serving_ops(garbage)
    (garbage / SAVED_MODEL_FILE).write_bytes(b"")
    with pytest.raises(ValueError, match="no MetaGraphDef tagged 'serve'"):
        check_serving_ops(garbage)
    assert os.path.isfile(ids_only_export / SAVED_MODEL_FILE)
