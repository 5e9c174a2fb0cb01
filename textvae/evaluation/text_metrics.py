"""Text metrics of decoded sentences: corpus and sentence BLEU (sacrebleu, tokenize="none"), exact match, the
fidelity of a reconstruction, distinct-n and self-BLEU (novelty against the training set: training_set.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


BLEU_TOKENIZE = "none"  # sacrebleu's tokenizer for our text, which is already tokenized; results.json says it


def bleu_scorer(**options):
    """sacrebleu's BLEU with `tokenize="none"`: the sentences are split on spaces only, as the model reads and
    writes them. sacrebleu's default (13a) would re-tokenize them and split `<unk>` into `< unk >`: three
    tokens, two bigrams and a trigram that every pair of sentences with an `<unk>` shares, which inflates
    the score. `force` silences sacrebleu's warning that the text looks tokenized: it is, on purpose.
    sacrebleu is imported here, so only the commands that score BLEU load it."""
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=BLEU_TOKENIZE, force=True, **options)


def corpus_bleu_score(hypotheses: list[str], references: list[str]):
    """sacrebleu's corpus score (with its n-gram counts) of hypotheses against one reference each."""
    return bleu_scorer().corpus_score(hypotheses, [references])


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu, tokenize="none") of hypotheses against one reference each."""
    return float(corpus_bleu_score(hypotheses, references).score)


# ---- reconstruction fidelity ----------------------------------------------------------------------
# A homotopy (Bowman et al. 2016) only says something about two sentences when each end of the path decodes
# back to the sentence it was encoded from; these say how close a decode came. Sentences here are already
# tokenized (what the model reads and writes), so BLEU uses sacrebleu with tokenize="none": split on spaces.

@dataclass
class Fidelity:
    """How faithfully one decode reproduces the sentence it was encoded from."""

    text: str  # the sentence as given
    read_as: str  # the sentence as the model reads it: its tokens written back, unknown words as <unk>
    reconstruction: str  # the decode of its code
    exact: bool  # the reconstruction is `read_as`, token for token
    bleu: float  # sentence BLEU (0-100) of the reconstruction against `read_as`

    @property
    def summary(self) -> str:
        """'exact' or 'differs, BLEU 41.2', naming the model's reading when it is not the sentence as given."""
        verdict = "exact" if self.exact else f"differs, BLEU {self.bleu:.1f}"
        return verdict if self.read_as.split() == self.text.split() else f"{verdict} (read as: {self.read_as})"


def sentence_fidelity(text: str, read_as: str, reconstruction: str) -> Fidelity:
    """The `Fidelity` of one reconstruction against the model's reading of its sentence."""
    exact = reconstruction.split() == read_as.split()
    bleu = 100.0 if exact else float(bleu_scorer(effective_order=True).sentence_score(reconstruction, [read_as]).score)
    return Fidelity(text, read_as, reconstruction, exact, bleu)


def exact_match_share(hypotheses: list[str], references: list[str]) -> float:
    """Share of hypotheses equal to their reference token for token (whitespace-split)."""
    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"exact_match_share: {len(hypotheses)} hypotheses for {len(references)} references")
    return sum(h.split() == r.split() for h, r in zip(hypotheses, references)) / len(references)


def distinct_n(sentences: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the sentences (Li et al. 2016): 1.0 = no repetition."""
    grams = [tuple(words[i: i + n]) for words in (s.split() for s in sentences) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def self_bleu(sentences: list[str], limit: int = 500) -> float:
    """Mean BLEU of each sentence against all the others (Zhu et al. 2018): high = samples look alike."""
    chosen = sentences[:limit]
    if len(chosen) < 2:
        return 0.0
    scorer = bleu_scorer(effective_order=True)
    scores = [scorer.sentence_score(s, chosen[:i] + chosen[i + 1:]).score for i, s in enumerate(chosen)]
    return float(np.mean(scores))


def reconstruction_figures(decodes: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU and exact-match share of reconstructions against the sentences as the model reads them."""
    return {"bleu": corpus_bleu(decodes, references), "exact_match": exact_match_share(decodes, references)}


def sample_figures(samples: list[str]) -> dict[str, float]:
    """distinct-1, distinct-2 and self-BLEU (of the first 200) of prior samples; nothing without samples."""
    if not samples:
        return {}
    return {"distinct_1": distinct_n(samples, 1), "distinct_2": distinct_n(samples, 2),
            "self_bleu": self_bleu(samples, limit=200)}
