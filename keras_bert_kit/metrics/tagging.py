"""Sequence-labelling (NER) metrics, compatible with conlleval/seqeval's default mode.

- `get_entities(tags)`: `(type, start, end_inclusive)` chunks of an IOB1/IOB2/IOBES tag list.
- `entity_scores(true_sequences, pred_sequences)`: micro precision/recall/F1 over entities,
  plus per-type scores.
"""

import collections

import numpy as np

__all__ = ["entity_scores", "get_entities"]


def _check_tag(tag, where):
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"Tags must be non-empty strings, got {tag!r} {where}.")


def _end_of_chunk(prev_tag, tag, prev_type, type_):
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != type_)
    )


def _start_of_chunk(prev_tag, tag, prev_type, type_):
    return (
        tag in ("B", "S")
        or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
        or (tag not in ("O", ".") and prev_type != type_)
    )


def get_entities(tags):
    """Chunks a tag sequence into entities, exactly as seqeval's `get_entities`.

    The rules are conlleval's (seqeval's default, non-strict mode), so one
    function reads IOB1, IOB2 and IOBES: a chunk starts at `B-`/`S-`, at an
    `I-`/`E-` that follows `O`, `E-` or `S-`, or at any tag whose type differs
    from the previous one (so `["O", "I-LOC"]` and `["B-PER", "I-LOC"]` both
    start a LOC chunk); it ends after `E-`/`S-`, before `B-`/`S-`/`O`, or on a
    type change. A tag's prefix is its first character and its type is what
    follows the first "-" after it; a bare tag such as "B" has type "_".

    Args:
        tags: a flat list of tag strings, e.g. `["B-PER", "I-PER", "O", "I-LOC"]`.
            As in seqeval, a list of sentences (lists of tags) is also accepted:
            it is read as the sentences joined with an "O" after each, so no
            chunk crosses a sentence boundary, and offsets index that joined
            sequence.

    Returns:
        A list of `(type, start, end)` tuples, `end` inclusive, in order.
    """
    tags = list(tags)
    if any(isinstance(item, (list, tuple)) for item in tags):
        flat = []
        for index, sentence in enumerate(tags):
            if not isinstance(sentence, (list, tuple)):
                raise ValueError(
                    f"get_entities got a mix of tags and sentences: item {index} is "
                    f"{sentence!r}, not a list of tags."
                )
            flat.extend(sentence)
            flat.append("O")
        tags = flat
    for index, tag in enumerate(tags):
        _check_tag(tag, f"at position {index}")

    prev_tag, prev_type = "O", ""
    begin = 0
    chunks = []
    # The trailing "O" closes a chunk still open at the end.
    for index, tag in enumerate(tags + ["O"]):
        prefix = tag[0]
        type_ = tag[1:].split("-", maxsplit=1)[-1] or "_"
        if _end_of_chunk(prev_tag, prefix, prev_type, type_):
            chunks.append((prev_type, begin, index - 1))
        if _start_of_chunk(prev_tag, prefix, prev_type, type_):
            begin = index
        prev_tag, prev_type = prefix, type_
    return chunks


def _precision_recall_f1(true_positives, num_predicted, num_true):
    # 0/0 is defined as 0.0, as seqeval's default zero_division.
    precision = true_positives / num_predicted if num_predicted else 0.0
    recall = true_positives / num_true if num_true else 0.0
    denominator = precision + recall
    f1 = 2.0 * precision * recall / denominator if denominator else 0.0
    return float(precision), float(recall), float(f1)


def entity_scores(true_sequences, pred_sequences):
    """Entity-level precision, recall and F1, as seqeval's default (micro) scores.

    An entity counts as correct only if its type, start and end all match. The
    overall scores are micro-averaged (over all entities of all types), which is
    what conlleval and seqeval's `precision_score`/`recall_score`/`f1_score`
    report; 0/0 is 0.0. Sentences are chunked separately, so an entity never
    spans two sentences.

    Args:
        true_sequences: list of sentences, each a list of gold tag strings.
        pred_sequences: list of sentences of predicted tags, with the same
            number of sentences and the same length sentence by sentence.

    Returns:
        `dict(precision=, recall=, f1=, per_type={type: dict(precision=, recall=,
        f1=, support=)})`, floats except the int `support` (number of gold
        entities of that type); `per_type` covers every type found in either
        input, in sorted order.
    """
    for name, sequences in (("true_sequences", true_sequences), ("pred_sequences", pred_sequences)):
        if isinstance(sequences, str):
            raise ValueError(f"{name} must be a list of sentences (lists of tags), not a string.")
    true_sequences, pred_sequences = list(true_sequences), list(pred_sequences)
    if len(true_sequences) != len(pred_sequences):
        raise ValueError(
            f"true_sequences has {len(true_sequences)} sentences but pred_sequences "
            f"has {len(pred_sequences)}."
        )
    true_tags, pred_tags = [], []
    for index, (true_sentence, pred_sentence) in enumerate(zip(true_sequences, pred_sequences)):
        if isinstance(true_sentence, str) or isinstance(pred_sentence, str):
            raise ValueError(f"Sentence {index} is a string; expected a list of tags.")
        true_sentence, pred_sentence = list(true_sentence), list(pred_sentence)
        if len(true_sentence) != len(pred_sentence):
            raise ValueError(
                f"Sentence {index} has {len(true_sentence)} true tags but "
                f"{len(pred_sentence)} predicted tags."
            )
        for position, (true_tag, pred_tag) in enumerate(zip(true_sentence, pred_sentence)):
            where = f"in sentence {index} at position {position}"
            _check_tag(true_tag, where)
            _check_tag(pred_tag, where)
        # The "O" separator is seqeval's: it stops chunks from joining across sentences.
        true_tags += true_sentence + ["O"]
        pred_tags += pred_sentence + ["O"]

    true_entities = collections.defaultdict(set)
    pred_entities = collections.defaultdict(set)
    for type_, start, end in get_entities(true_tags):
        true_entities[type_].add((start, end))
    for type_, start, end in get_entities(pred_tags):
        pred_entities[type_].add((start, end))

    per_type = {}
    totals = np.zeros(3, dtype="int64")  # true positives, predicted, gold
    for type_ in sorted(set(true_entities) | set(pred_entities)):
        gold, predicted = true_entities[type_], pred_entities[type_]
        counts = np.array([len(gold & predicted), len(predicted), len(gold)])
        totals += counts
        precision, recall, f1 = _precision_recall_f1(*counts)
        per_type[type_] = dict(precision=precision, recall=recall, f1=f1, support=len(gold))
    precision, recall, f1 = _precision_recall_f1(*totals)
    return dict(precision=precision, recall=recall, f1=f1, per_type=per_type)
