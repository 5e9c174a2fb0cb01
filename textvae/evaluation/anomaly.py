"""Anomaly scores: how well a per-sentence score (−ELBO, IW-NLL, NLL per token) separates outliers from
inliers, as ROC-AUC and average precision (outliers are the positives; a higher score means 'outlier')."""

from __future__ import annotations

import numpy as np


def roc_auc(inlier_scores: np.ndarray, outlier_scores: np.ndarray) -> float:
    """Area under the ROC curve when a higher score means 'outlier' (Mann–Whitney, ties count half)."""
    scores = np.concatenate([inlier_scores, outlier_scores])
    ranks = rank_with_ties(scores)
    n_in, n_out = len(inlier_scores), len(outlier_scores)
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def rank_with_ties(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start: end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def average_precision(inlier_scores: np.ndarray, outlier_scores: np.ndarray) -> float:
    """Average precision of ranking outliers first by descending score (outliers are the positives)."""
    scores = np.concatenate([inlier_scores, outlier_scores])
    positive = np.concatenate([np.zeros(len(inlier_scores)), np.ones(len(outlier_scores))])
    order = np.argsort(-scores, kind="mergesort")
    hits = np.cumsum(positive[order])
    precision = hits / np.arange(1, len(scores) + 1)
    return float((precision * positive[order]).sum() / max(positive.sum(), 1))


def separation_report(inlier_rows: list[dict], outlier_rows: list[dict],
                      keys: tuple[str, ...] = ("neg_elbo", "iw_nll", "nll_per_token")) -> dict[str, dict[str, float]]:
    """ROC-AUC and average precision of each score in `keys`, from the per-sentence rows of the two groups."""
    report = {}
    for key in keys:
        inlier_scores = np.array([row[key] for row in inlier_rows])
        outlier_scores = np.array([row[key] for row in outlier_rows])
        report[key] = {"roc_auc": roc_auc(inlier_scores, outlier_scores),
                       "average_precision": average_precision(inlier_scores, outlier_scores)}
    return report
