"""`BertTokenizer.detokenize` on ids outside the vocabulary: an error, eagerly and in graphs.

The detokenizer op reads its table at each id unchecked, so before the range
check these ids crashed the process (a segfault): the cases run in a capped
child process, where a crash fails the test instead of ending the suite.
"""

from tests.isolation import assert_raises, run_cases

VOCABULARY_SIZE = 12

SETUP = f"""
import numpy as np
import tensorflow as tf
import keras_bert_kit as kbk

tokenizer = kbk.BertTokenizer(
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "is", "good", "bad", "##s",
     "ok"])
assert tokenizer.vocabulary_size() == {VOCABULARY_SIZE}
detokenize_graph = tf.function(lambda ids: tokenizer.detokenize(ids))


def detokenize_in_tf_data(ids):
    dataset = tf.data.Dataset.from_tensor_slices(ids).batch(2).map(tokenizer.detokenize)
    return [text for batch in dataset for text in batch.numpy().tolist()]
"""

# Each of these crashed the process, or (2**40) decoded silently to "".
OUT_OF_RANGE = {
    "vocabulary_size": f"np.array([5, {VOCABULARY_SIZE}], np.int32)",
    "minus_one": "np.array([5, -1], np.int32)",
    "int32_max": "np.array([5, 2**31 - 1], np.int32)",
    "int64_past_int32": "np.array([5, 2**40], np.int64)",
    "int64_truncating_to_a_valid_id": "np.array([5, 2**32 + 6], np.int64)",
    "padded_batch": f"np.array([[5, 6, 0], [7, {VOCABULARY_SIZE}, 0]], np.int64)",
    "ragged_batch": "tf.ragged.constant([[5, 6], [-7]], tf.int32)",
}
RANGE = f"must hold values in [0, {VOCABULARY_SIZE})"


def _cases():
    cases = {}
    for name, ids in OUT_OF_RANGE.items():
        cases[f"eager_{name}"] = f"tokenizer.detokenize({ids})"
        cases[f"graph_{name}"] = f"detokenize_graph({ids})"
    cases["tf_data"] = "detokenize_in_tf_data(np.array([[5, 6], [8, 9], [5, -1]], np.int64))"
    cases["valid_eager"] = (
        "tokenizer.detokenize(np.array([[2, 6, 10, 7, 8, 3]], np.int64)).numpy().tolist()")
    cases["valid_graph"] = "detokenize_graph(tf.ragged.constant([[5, 6], [11]])).numpy()"
    cases["valid_uint8"] = "tokenizer.detokenize(np.array([5, 9], np.uint8)).numpy()"
    cases["valid_tf_data"] = "detokenize_in_tf_data(np.array([[5, 6], [8, 9], [6, 11]], np.int64))"
    return cases


def test_out_of_range_ids_are_errors_eagerly_and_in_graphs():
    outcomes = run_cases(SETUP, _cases(), memory_mb=1024, timeout=180)
    for name in OUT_OF_RANGE:
        assert_raises(outcomes[f"eager_{name}"], "InvalidIdsError",
                      "BertTokenizer.detokenize", "`ids`", RANGE)
        # The assertion (naming the range) fires, not the op's crash or a gather's error.
        assert_raises(outcomes[f"graph_{name}"], "InvalidArgumentError",
                      "BertTokenizer.detokenize", "`ids`", RANGE)
    assert_raises(outcomes["tf_data"], "InvalidArgumentError", "`ids`", RANGE)

    for name in ("valid_eager", "valid_graph", "valid_uint8", "valid_tf_data"):
        assert outcomes[name].status == "ok", outcomes[name]
    assert outcomes["valid_eager"].value == "[b'films is good']"
    assert outcomes["valid_graph"].value == "array([b'the film', b'ok'], dtype=object)"
    assert outcomes["valid_uint8"].value == "b'the bad'"
    assert outcomes["valid_tf_data"].value == "[b'the film', b'good bad', b'film ok']"
