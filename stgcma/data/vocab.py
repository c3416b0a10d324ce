"""Question vocabulary for the AVQA head (MUSIC-AVQA "AVST" style, METHOD.md "Task heads").

The reference builds the word list from the training questions (placeholders filled), splits on
spaces and drops the last character of the question (its "?"), keeping case; index 0 is ``<pad>`` and
questions are padded to 14 tokens. This project also lower-cases words and strips punctuation from
every token (so a typed "how many instruments?" in the app maps to the same ids), and reserves index
1 for ``<unk>``, so an unseen word is visible instead of silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import torch

PAD = "<pad>"
UNK = "<unk>"
MAX_LEN = 14
_PUNCT = "?？.,!;:\"'()"


def tokenize(question: str) -> list[str]:
    """Split a question into lower-case words without punctuation.

    >>> tokenize("Is the <Object> louder than the piano？")
    ['is', 'the', '<object>', 'louder', 'than', 'the', 'piano']
    """
    words = (w.strip(_PUNCT).lower() for w in re.split(r"\s+", question.strip()))
    return [w for w in words if w]


class Vocab:
    """Word <-> id map with ``<pad>`` = 0 and ``<unk>`` = 1.

    Args:
        words: the known words (without ``<pad>``/``<unk>``), in id order from 2.
        max_len: length questions are padded or cut to.
    """

    def __init__(self, words: Iterable[str], max_len: int = MAX_LEN) -> None:
        self.words: list[str] = [PAD, UNK]
        self.index: dict[str, int] = {PAD: 0, UNK: 1}
        self.max_len = max_len
        for word in words:
            word = word.lower()
            if word and word not in self.index:
                self.index[word] = len(self.words)
                self.words.append(word)

    @classmethod
    def from_questions(cls, questions: Iterable[str], max_len: int = MAX_LEN) -> Vocab:
        """Build from (filled-in) questions, words in order of first appearance."""
        return cls((w for q in questions for w in tokenize(q)), max_len)

    @classmethod
    def from_file(cls, path: str | Path, max_len: int = MAX_LEN) -> Vocab:
        """Read one word per line (duplicates, blank lines and ``<pad>``/``<unk>`` are ignored)."""
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return cls((w.strip() for w in lines if w.strip() not in (PAD, UNK)), max_len)

    def save(self, path: str | Path) -> None:
        """Write one word per line, ``<pad>`` and ``<unk>`` first (readable by :meth:`from_file`)."""
        Path(path).write_text("\n".join(self.words) + "\n", encoding="utf-8")

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word.lower() in self.index

    def tokens(self, question: str) -> list[str]:
        """:func:`tokenize`, with a known multi-word name typed with spaces joined into its word:
        "acoustic guitar" -> "acoustic_guitar" when the vocabulary has that word (MUSIC-AVQA spells
        such names with underscores; people type spaces)."""
        words, out, i = tokenize(question), [], 0
        while i < len(words):
            for span in (3, 2):
                joined = "_".join(words[i:i + span])
                if i + span <= len(words) and joined in self.index:
                    out.append(joined)
                    i += span
                    break
            else:
                out.append(words[i])
                i += 1
        return out

    def ids(self, question: str) -> list[int]:
        """Token ids of a question, unpadded and uncut (unknown words -> 1)."""
        return [self.index.get(w, 1) for w in self.tokens(question)]

    def encode(self, question: str) -> torch.Tensor:
        """Token ids padded with 0 (or cut) to ``max_len``: long (max_len,)."""
        ids = self.ids(question)[: self.max_len]
        return torch.tensor(ids + [0] * (self.max_len - len(ids)), dtype=torch.long)

    def unknown_words(self, question: str) -> list[str]:
        """Words of the question that are not in the vocabulary, in order, without repeats."""
        unknown: list[str] = []
        for word in self.tokens(question):
            if word not in self.index and word not in unknown:
                unknown.append(word)
        return unknown

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to words (padding dropped), for display and debugging."""
        return " ".join(self.words[i] for i in ids if i != 0)
