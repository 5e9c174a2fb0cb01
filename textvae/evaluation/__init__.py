"""Evaluation: likelihood (IW-NLL, the ELBO's parts, PPL per word and per token), latent statistics (MI, AU),
text metrics (BLEU, distinct-n, self-BLEU, novelty), anomaly scores, reports (results.json, `compare`) and
resumable progress of long evaluations. Conventions: evaluation/likelihood.py's docstring."""

from .anomaly import average_precision, roc_auc, separation_report
from .latent import active_units, mutual_information
from .likelihood import SentenceScores, evaluate_split, iw_log_likelihood, score_split, summarise
from .reports import compare_runs, compare_table, read_results, save_results
from .text_metrics import (
    BLEU_TOKENIZE,
    Fidelity,
    corpus_bleu,
    distinct_n,
    exact_match_share,
    self_bleu,
    sentence_fidelity,
)
from .training_set import copied_share, unigram_nll

__all__ = ["BLEU_TOKENIZE", "Fidelity", "SentenceScores", "active_units", "average_precision", "compare_runs",
           "compare_table", "copied_share", "corpus_bleu", "distinct_n", "evaluate_split", "exact_match_share",
           "iw_log_likelihood", "mutual_information", "read_results", "roc_auc", "save_results", "score_split",
           "self_bleu", "sentence_fidelity", "separation_report", "summarise", "unigram_nll"]
