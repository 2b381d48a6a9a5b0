"""split_words: BERT's basic tokens with offsets; tokenizing them one by one changes nothing."""

from hypothesis import given, settings
from hypothesis import strategies as st

from keras_bert_kit.tokenization.words import split_words


def test_spans():
    text = "Hello, wor-ld!  x\u4e2d\u6587y  $5"
    words = [text[s:e] for s, e in split_words(text)]
    assert words == ["Hello", ",", "wor", "-", "ld", "!", "x", "\u4e2d", "\u6587", "y", "$", "5"]
    assert split_words("   ") == [] and split_words("") == []


def _same_pieces(tokenizer, texts):
    whole = tokenizer.tokenize(texts).to_list()
    for text, expected in zip(texts, whole):
        words = [text[s:e] for s, e in split_words(text)]
        pieces = tokenizer.tokenize(words).to_list() if words else []
        assert [p for word in pieces for p in word] == expected, text


def test_word_by_word_tokenization_equals_whole_text_on_real_reviews(uncased_tokenizer):
    from keras_bert_kit.datasets import load_rotten_tomatoes

    _same_pieces(uncased_tokenizer, list(load_rotten_tomatoes("test").texts[:400]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
                min_size=1, max_size=8))
def test_word_by_word_tokenization_equals_whole_text_on_any_text(uncased_tokenizer, texts):
    _same_pieces(uncased_tokenizer, texts)
