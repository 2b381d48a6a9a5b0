"""Property tests: any text, even invalid UTF-8, tokenizes and packs within bounds."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_bert_kit as kbk

# Long texts are the point here, so hypothesis' "data too large" check does not apply.
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])
TEXT = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),  # arbitrary bytes: mostly invalid UTF-8
    st.just(""),
    st.text(alphabet="ab é😀\x00\n", min_size=5000, max_size=20000),
)


def _check_packed(out, tokenizer, length, padding, pair):
    ids, segments, mask = (out[k].numpy() for k in ("input_ids", "segment_ids", "padding_mask"))
    assert ids.shape[-1] == length if padding == "max_length" else ids.shape[-1] <= length
    for row_ids, row_seg, row_mask in zip(ids, segments, mask):
        n = int(row_mask.sum())
        assert (row_mask[:n] == 1).all() and (row_mask[n:] == 0).all()
        assert row_ids[0] == tokenizer.cls_token_id and row_ids[n - 1] == tokenizer.sep_token_id
        assert ((row_ids >= 0) & (row_ids < tokenizer.vocabulary_size())).all()
        seps = np.flatnonzero(row_ids[:n] == tokenizer.sep_token_id)
        assert len(seps) == (2 if pair else 1)
        expected = np.zeros(len(row_ids), int)
        if pair:
            expected[seps[0] + 1 : n] = 1
        np.testing.assert_array_equal(row_seg, expected)


@SETTINGS
@given(texts=st.lists(TEXT, min_size=1, max_size=3))
def test_tokenize_never_fails(uncased_tokenizer, texts):
    ids = uncased_tokenizer(tf.constant(texts, tf.string)).flat_values.numpy()
    assert ((ids >= 0) & (ids < uncased_tokenizer.vocabulary_size())).all()


@pytest.mark.parametrize("length", [16, 128])
@pytest.mark.parametrize("padding", ["max_length", "longest"])
def test_packing_respects_sequence_length(uncased_tokenizer, length, padding):
    preprocessor = kbk.BertPreprocessor(uncased_tokenizer, length, padding=padding)

    @SETTINGS
    @given(a=st.lists(TEXT, min_size=2, max_size=2), b=st.lists(TEXT, min_size=2, max_size=2))
    def check(a, b):
        a, b = tf.constant(a, tf.string), tf.constant(b, tf.string)
        _check_packed(preprocessor(a), uncased_tokenizer, length, padding, pair=False)
        _check_packed(preprocessor((a, b)), uncased_tokenizer, length, padding, pair=True)

    check()
