"""`split_sentences`: rule-based boundaries for next-sentence pairs; no text is ever lost."""

import random

import pytest

from keras_bert_kit.data import split_sentences
from tests.data import corpus


def _without_whitespace(text):
    return "".join(text.split())


@pytest.mark.parametrize(
    "text, expected",
    [
        # Title abbreviations do not end a sentence; the full stop after the name does.
        ("Mr. Smith went home. He slept.", ["Mr. Smith went home.", "He slept."]),
        ("Mrs. Jones and Dr. Who met. Then they left.",
         ["Mrs. Jones and Dr. Who met.", "Then they left."]),
        ("Sen. Warren spoke. Rep. Jones replied.", ["Sen. Warren spoke.", "Rep. Jones replied."]),
        ("Gov. Brown met Gen. Mattis. It went well.",
         ["Gov. Brown met Gen. Mattis.", "It went well."]),
        # Dotted abbreviations and initials.
        ("The U.S. Army left. Then it rained.", ["The U.S. Army left.", "Then it rained."]),
        ("The U.S. President spoke. Crowds cheered.",
         ["The U.S. President spoke.", "Crowds cheered."]),
        ("J. R. R. Tolkien wrote it. It sold well.",
         ["J. R. R. Tolkien wrote it.", "It sold well."]),
        ("George W. Bush was there. So was Laura.",
         ["George W. Bush was there.", "So was Laura."]),
        ("It was 5 p.m. and dark.", ["It was 5 p.m. and dark."]),
        ("Ranked No. 5 in the world, he won. Fans cheered.",
         ["Ranked No. 5 in the world, he won.", "Fans cheered."]),
        ("Apples, pears etc. Were sold. Then more.", ["Apples, pears etc. Were sold.",
                                                     "Then more."]),
        # Ellipsis, question and exclamation marks.
        ("He waited… Then he left.", ["He waited…", "Then he left."]),
        ("Is it? Yes! No.", ["Is it?", "Yes!", "No."]),
        # Closing quotes and brackets stay with the sentence they close.
        ('She said "Stop." He stopped.', ['She said "Stop."', "He stopped."]),
        ("He said “no.” She agreed.", ["He said “no.”", "She agreed."]),
        ("It ended (finally.) Next came more.", ["It ended (finally.)", "Next came more."]),
        ('"Go!" she cried. He went.', ['"Go!" she cried.', "He went."]),
        # An opening quote or a digit starts a sentence.
        ('It was over. "Really?" Yes.', ["It was over.", '"Really?"', "Yes."]),
        ("Hello world. 2017 was good.", ["Hello world.", "2017 was good."]),
        # A decimal point is no boundary.
        ("He paid 3.5 dollars. OK.", ["He paid 3.5 dollars.", "OK."]),
    ],
)
def test_boundaries(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "the end. and then more.",
        "He waited… then he left.",
        "Really? no way.",
        "Wow! and more",
        "ended.Next to nothing",  # no space after the full stop
    ],
)
def test_lowercase_or_unspaced_continuation_is_not_split(text):
    assert split_sentences(text) == [text]


def test_newline_is_a_hard_boundary():
    text = "A caption with no full stop\nthe next paragraph starts lowercase\n\n  Mr.\nSmith"
    assert split_sentences(text) == [
        "A caption with no full stop",
        "the next paragraph starts lowercase",
        "Mr.",
        "Smith",
    ]
    assert split_sentences("One.\r\nTwo.\rThree.") == ["One.", "Two.", "Three."]


def test_sentences_are_stripped_and_empty_ones_dropped():
    assert split_sentences("") == []
    assert split_sentences("  \n\t\n ") == []
    assert split_sentences("  Hello there.   General Kenobi.  ") == [
        "Hello there.",
        "General Kenobi.",
    ]
    for sentence in split_sentences("  A.   B!  \n  c?  "):
        assert sentence == sentence.strip() and sentence


def test_mixed_paragraph_keeps_all_text():
    text = ('Mr. Smith met U.S. Sen. Warren. "Hi!" she said… 50 came.\n'
            "New line. and more. J. Doe (the C.E.O.) left. Done?")
    sentences = split_sentences(text)
    assert sentences == [
        "Mr. Smith met U.S. Sen. Warren.",
        '"Hi!" she said…',
        "50 came.",
        "New line. and more.",
        "J. Doe (the C.E.O.) left.",
        "Done?",
    ]
    assert _without_whitespace("".join(sentences)) == _without_whitespace(text)


def test_no_text_is_lost_on_random_strings():
    rng = random.Random(0)
    alphabet = list("aZ9 .!?…\"'“”()[]\n\t") + ["Mr.", "U.S.", " J. ", "... ", "  "]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        sentences = split_sentences(text)
        assert _without_whitespace("".join(sentences)) == _without_whitespace(text), text
        assert all(s and s == s.strip() and "\n" not in s for s in sentences), text


def test_no_text_is_lost_on_news():
    texts = corpus.news_texts()[:300]
    counts = []
    for text in texts:
        sentences = split_sentences(text)
        assert _without_whitespace("".join(sentences)) == _without_whitespace(text)
        counts.append(len(sentences))
    # Real splitting happens: news sentences are 20-30 words long.
    words = sum(len(text.split()) for text in texts)
    assert 15 < words / sum(counts) < 40
