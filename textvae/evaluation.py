"""Scores researchers can compare: importance-weighted NLL and PPL, ELBO parts, MI, active units, BLEU.

Conventions (README "Metrics"): NLL, rec and KL are per sentence in nats; perplexity `ppl` is
exp(total NLL / total words), where words are the whitespace-separated words of each sentence plus one
<eos> (the papers' convention, whatever the tokenizer); `ppl_per_token` divides by the predicted tokens
instead (tokens plus one <eos> per sentence; <bos> is never predicted), which differs from `ppl` only for
subword (BPE, pretrained) tokenizers. A VAE's `nll` is the importance-weighted estimate with k samples
(Burda et al. 2016), an upper bound that tightens with k; `neg_elbo` = rec + KL is reported beside it.
For the LM baseline (no z) the NLL is exact.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .atomic_files import replace_atomically
from .data import SPLIT_ALIASES, SPLITS, TokenizedSplit, iterate_batches, split_name
from .errors import TextVAEError
from .modeling import TextVAE
from .modeling.posterior import gaussian_log_density, gaussian_log_density_pairs, kl_per_dimension, reparameterize
from .runtime import autocast, keep_freed_memory
from .score_progress import ScoreProgress, fingerprint, worth_saving


def noise_generator(device: torch.device, seed: int) -> torch.Generator:
    """A private random stream for evaluation, so scores are reproducible and training's stream is untouched."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


# ---- per-sentence scores --------------------------------------------------------------------------

@torch.no_grad()
def iw_log_likelihood(model: TextVAE, token_ids: torch.Tensor, lengths: torch.Tensor, mean: torch.Tensor,
                      logvar: torch.Tensor, samples: int, chunk: int = 50,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x) per sentence by importance sampling with q(z|x) as proposal (Burda et al. 2016):
    logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log k. The posterior (mean, logvar) comes
    from one encoder pass; samples are decoded `chunk` at a time, all sentences of the batch together."""
    batch = token_ids.size(0)
    log_weights = []
    for start in range(0, samples, chunk):
        count = min(chunk, samples - start)
        z = reparameterize(mean, logvar, samples=count, generator=generator)  # (count, batch, latent)
        rec_nll, _ = model.reconstruction_nll(token_ids.repeat(count, 1), lengths.repeat(count),
                                              z.reshape(count * batch, -1))
        log_prior = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_weights.append(-rec_nll.view(count, batch) + log_prior - gaussian_log_density(z, mean, logvar))
    return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(samples)


@dataclass
class SentenceScores:
    """Per-sentence results over a split, in the split's order (numpy arrays)."""

    rec: np.ndarray  # −log p(x|z), one posterior sample z
    kl: np.ndarray  # KL(q(z|x) || p(z)), 0 for an LM
    nll: np.ndarray  # IW-NLL (VAE with iw_samples > 0), exact NLL (LM), else −ELBO
    tokens: np.ndarray  # predicted tokens
    mean: np.ndarray | None = None  # posterior means (sentences, latent)
    logvar: np.ndarray | None = None
    words: np.ndarray | None = None  # whitespace-separated words + 1 (<eos>), the per-word PPL's denominator

    @property
    def neg_elbo(self) -> np.ndarray:
        return self.rec + self.kl


@torch.no_grad()
def score_split(model: TextVAE, split: TokenizedSplit, batch_size: int = 128, iw_samples: int = 0,
                seed: int = 0, iw_chunk: int = 50, dtype: torch.dtype = torch.float32,
                progress: bool = False, save_dir: Path | None = None, save_interval: float = 60.0) -> SentenceScores:
    """Every sentence's rec, KL, NLL and posterior, with one encoder pass per sentence; matrix products
    run under `dtype` autocast (sums and log-densities stay fp32); `progress` shows a bar with an ETA.
    With `save_dir`, partial scores of a long evaluation are saved there every `save_interval` seconds and
    a rerun resumes them (score_progress)."""
    device = model.device
    if device.type == "cpu":
        keep_freed_memory()
    with autocast(device, dtype):
        return _score_split(model, split, batch_size, iw_samples, seed, iw_chunk, progress, save_dir, save_interval,
                            dtype)


def batch_generator(device: torch.device, seed: int, number: int) -> torch.Generator:
    """Batch `number`'s own noise stream, so a batch's scores do not depend on which batches ran before it
    (a resumed evaluation gives the numbers of an uninterrupted one)."""
    return noise_generator(device, seed * 1_000_003 + number)


def _score_split(model: TextVAE, split: TokenizedSplit, batch_size: int, iw_samples: int, seed: int,
                 iw_chunk: int, progress: bool, save_dir: Path | None, save_interval: float,
                 dtype: torch.dtype) -> SentenceScores:
    was_training = model.training
    model.eval()
    device = model.device
    special = {key: getattr(model.config, key) for key in ("pad_token_id", "bos_token_id", "eos_token_id")}
    count = len(split)
    latent = model.config.latent_size if model.config.has_latent else 0
    arrays = {"rec": np.zeros(count), "kl": np.zeros(count), "nll": np.zeros(count), "tokens": np.zeros(count),
              "mean": np.zeros((count, latent)), "logvar": np.zeros((count, latent))}
    if save_dir is not None and not worth_saving(count, iw_samples):
        save_dir = None
    key = fingerprint(model, split.texts, split.token_ids, iw_samples=iw_samples, seed=seed, batch_size=batch_size,
                      iw_chunk=iw_chunk, dtype=dtype) if save_dir is not None else ""
    saved = ScoreProgress(save_dir, key, arrays, save_interval)
    bar = tqdm(total=count, initial=int(saved.done.sum()), disable=not progress, unit="sentence", dynamic_ncols=True,
               desc=f"IW-NLL k={iw_samples}" if iw_samples and latent else "scoring")
    for number, batch in enumerate(iterate_batches(split, batch_size, special)):
        if saved.covers(batch.indices):
            continue
        batch_scores = score_batch(model, batch.token_ids.to(device), batch.lengths, iw_samples, iw_chunk,
                                   batch_generator(device, seed, number))
        for name, values in batch_scores.items():
            arrays[name][batch.indices] = values
        saved.mark(batch.indices)
        bar.update(len(batch.indices))
    bar.close()
    saved.finish()
    model.train(was_training)
    scores = SentenceScores(arrays["rec"], arrays["kl"], arrays["nll"], arrays["tokens"], words=word_counts(split))
    if latent:
        scores.mean, scores.logvar = arrays["mean"], arrays["logvar"]
    return scores


def word_counts(split: TokenizedSplit) -> np.ndarray | None:
    """Each sentence's whitespace-separated words plus one <eos>; None when the split has no texts to count."""
    if len(split.texts) != len(split.token_ids):
        return None
    return np.array([len(text.split()) + 1 for text in split.texts], dtype=np.int64)


def score_batch(model: TextVAE, token_ids: torch.Tensor, lengths: torch.Tensor, iw_samples: int, iw_chunk: int,
                generator: torch.Generator) -> dict[str, np.ndarray]:
    """One batch's scores: predicted tokens, rec, KL, NLL and the posterior (an LM has rec = NLL only)."""
    scores = {"tokens": (lengths - 1).numpy()}
    if not model.config.has_latent:
        scores["rec"] = scores["nll"] = model.reconstruction_nll(token_ids, lengths, None)[0].cpu().numpy()
        return scores
    mean, logvar = model.encode(token_ids, lengths)
    z = reparameterize(mean, logvar, generator=generator)
    scores["rec"] = model.reconstruction_nll(token_ids, lengths, z)[0].cpu().numpy()
    scores["kl"] = kl_per_dimension(mean, logvar).sum(-1).cpu().numpy()
    scores["mean"], scores["logvar"] = mean.cpu().numpy(), logvar.cpu().numpy()
    if iw_samples > 0:
        log_px = iw_log_likelihood(model, token_ids, lengths, mean, logvar, iw_samples, iw_chunk, generator)
        scores["nll"] = -log_px.cpu().numpy()
    else:
        scores["nll"] = scores["rec"] + scores["kl"]
    return scores


# ---- latent diagnostics ---------------------------------------------------------------------------

MI_PAIRS_PER_CHUNK = 1 << 22  # sentence pairs whose log-density is held at once: 32 MB of float64


def mutual_information(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                       chunk: int | None = None) -> float:
    """I(x; z) under q (He et al. 2019): E_x E_q(z|x)[log q(z|x) − log q(z)], where q(z) is the aggregate
    posterior over the evaluated sentences, estimated with one z per sentence. log q(z_i) needs the density
    of every z_i under every sentence's posterior: `chunk` rows of z at a time (by default as many as keep
    the (rows, N) matrix of log-densities under MI_PAIRS_PER_CHUNK), as matrix products, so memory stays
    bounded however many sentences there are."""
    count, latent = mean.shape
    neg_entropy = (-0.5 * latent * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = reparameterize(mean, logvar, generator=generator)
    chunk = chunk or max(1, MI_PAIRS_PER_CHUNK // max(count, 1))
    log_aggregate = []
    for start in range(0, count, chunk):
        log_q = gaussian_log_density_pairs(z[start: start + chunk], mean, logvar)
        log_aggregate.append(torch.logsumexp(log_q, dim=1) - math.log(count))
    return float(neg_entropy - torch.cat(log_aggregate).mean())


def mutual_information_draws(mean: torch.Tensor, logvar: torch.Tensor, seed: int, draws: int) -> list[float]:
    """`draws` one-draw MI estimates, with the noise seeds seed, seed + 1, ... (the first is evaluation's)."""
    return [mutual_information(mean, logvar, noise_generator(torch.device("cpu"), seed + draw)) for draw in range(draws)]


def active_units(mean: torch.Tensor, threshold: float = 0.01) -> int:
    """Dimensions whose posterior mean varies across sentences: Cov_x(E_q[z]) > threshold (Burda et al. 2016)."""
    return int((mean.var(dim=0, unbiased=True) > threshold).sum()) if mean.size(0) > 1 else 0


# ---- corpus summary -------------------------------------------------------------------------------

def summarise(scores: SentenceScores, iw_samples: int = 0, au_threshold: float = 0.01,
              seed: int = 0, mi_draws: int = 1) -> dict[str, float | int | list[float]]:
    """Corpus numbers from per-sentence scores: means per sentence, PPL per word (and per predicted token),
    MI, AU. MI is the mean of `mi_draws` one-draw estimates (seeds seed, seed + 1, ...), with their standard
    deviation as mi_sd when there are several. Without word counts, `ppl` falls back to per token."""
    sentences, tokens = len(scores.rec), int(scores.tokens.sum())
    if sentences == 0:
        raise ValueError("nothing to evaluate: the split has no sentences")
    words = int(scores.words.sum()) if scores.words is not None else tokens
    results = {
        "nll": float(scores.nll.mean()),
        "ppl": math.exp(scores.nll.sum() / words),
        "ppl_per_token": math.exp(scores.nll.sum() / tokens),
        "neg_elbo": float(scores.neg_elbo.mean()),
        "ppl_bound": math.exp(scores.neg_elbo.sum() / words),
        "ppl_bound_per_token": math.exp(scores.neg_elbo.sum() / tokens),
        "rec": float(scores.rec.mean()),
        "kl": float(scores.kl.mean()),
        "sentences": sentences,
        "words": words,
        "tokens": tokens,
        "iw_samples": iw_samples,
    }
    if scores.mean is not None:
        mean, logvar = torch.from_numpy(scores.mean).float(), torch.from_numpy(scores.logvar).float()
        draws = mutual_information_draws(mean, logvar, seed, mi_draws)
        results["mi"] = sum(draws) / mi_draws
        if mi_draws > 1:
            results["mi_sd"] = statistics.stdev(draws)
        results["au"] = active_units(mean, au_threshold)
        results["kl_per_dim"] = [round(float(v), 5) for v in kl_per_dimension(mean, logvar).mean(0)]
        if iw_samples == 0:  # without importance sampling the VAE's NLL is only the ELBO bound
            results["nll"], results["ppl"] = results["neg_elbo"], results["ppl_bound"]
            results["ppl_per_token"] = results["ppl_bound_per_token"]
    return results


def evaluate_split(model: TextVAE, split: TokenizedSplit, batch_size: int = 128, seed: int = 0,
                   iw_samples: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Score a split and summarise it (what validation during training and `textvae evaluate` report)."""
    scores = score_split(model, split, batch_size, iw_samples, seed, dtype=dtype)
    return summarise(scores, iw_samples, seed=seed)


class UnigramCounts:
    """Token counts of a training set, added a chunk of sentences at a time (so the set is streamed, never
    held whole), for an add-one-smoothed unigram model: the floor any model must beat."""

    def __init__(self, eos_id: int):
        self.eos_id = eos_id
        self.counts: Counter = Counter()

    def add(self, token_ids: list[list[int]]) -> None:
        for ids in token_ids:
            self.counts.update(ids)
        self.counts[self.eos_id] += len(token_ids)

    def nll(self, split: TokenizedSplit, vocab_size: int) -> float:
        """Per-sentence NLL of `split` (each sentence's tokens and <eos>) under the smoothed unigram model."""
        total = sum(self.counts.values()) + vocab_size
        log_prob = {token: math.log((count + 1) / total) for token, count in self.counts.items()}
        unseen = math.log(1 / total)
        nll = sum(-log_prob.get(token, unseen) for ids in split.token_ids for token in [*ids, self.eos_id])
        return nll / max(len(split.token_ids), 1)


def unigram_nll(train: TokenizedSplit, split: TokenizedSplit, vocab_size: int, eos_id: int) -> float:
    """Per-sentence NLL of an add-one-smoothed unigram model fitted on `train`: the floor any model must beat."""
    counts = UnigramCounts(eos_id)
    counts.add(train.token_ids)
    return counts.nll(split, vocab_size)


# ---- text quality ---------------------------------------------------------------------------------

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


class CopiedSamples:
    """Which samples appear verbatim (whitespace-normalised) in a training set that is streamed past a chunk
    at a time (`add`), so the set is never held whole."""

    def __init__(self, samples: list[str]):
        self.samples = [" ".join(sample.split()) for sample in samples]
        self.unseen = set(self.samples)

    def add(self, training_texts: list[str]) -> None:
        if self.unseen:
            self.unseen -= {" ".join(text.split()) for text in training_texts}

    @property
    def share(self) -> float:
        return sum(sample not in self.unseen for sample in self.samples) / len(self.samples) if self.samples else 0.0


def copied_share(samples: list[str], training_texts: list[str]) -> float:
    """Share of samples that appear verbatim (whitespace-normalised) in the training set."""
    copied = CopiedSamples(samples)
    copied.add(training_texts)
    return copied.share


# ---- anomaly detection ----------------------------------------------------------------------------

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


# ---- reports --------------------------------------------------------------------------------------

COMPARE_ROWS = (("NLL", "nll"), ("-ELBO", "neg_elbo"), ("rec", "rec"), ("KL", "kl"), ("MI", "mi"), ("AU", "au"),
                ("PPL per word", "ppl"), ("PPL per token", "ppl_per_token"), ("BLEU", "bleu"),
                ("BLEU tokenize", "bleu_tokenize"), ("IW samples", "iw_samples"), ("sentences", "sentences"))
RESULTS = "results.json"


def read_old_results(results: dict) -> dict:
    """results.json as textvae writes it now, from any version: one written before per-word PPL (no `words`
    key) has its per-token PPL under `ppl`, so it moves to `ppl_per_token` and the per-word PPL is unknown;
    one written before `bleu_tokenize` scored BLEU with sacrebleu's 13a tokenizer."""
    results = dict(results)
    if "words" not in results and "ppl" in results:
        results["ppl_per_token"], results["ppl"] = results["ppl"], None
    if ("bleu" in results or "self_bleu" in results) and "bleu_tokenize" not in results:
        results["bleu_tokenize"] = "13a"
    return results


def read_results(run_dir: Path) -> dict[str, dict]:
    """The evaluations saved in a run dir's results.json, keyed by what was evaluated: a split's name, or a
    file's absolute path. A results.json of one evaluation (as textvae wrote it before) reads as one entry."""
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise TextVAEError(f"{path} is not valid JSON; delete it and run textvae evaluate {run_dir} again") from None
    if not isinstance(loaded, dict):
        raise TextVAEError(f"{path} does not hold evaluation results; delete it and run textvae evaluate again")
    if loaded and all(isinstance(value, dict) for value in loaded.values()):
        return loaded
    return {str(loaded.get("split", "test")): loaded}


def save_results(run_dir: Path, results: dict) -> Path:
    """Add one evaluation to the run dir's results.json under what was evaluated (results['split']),
    keeping the others: `--split test` and `--file other.txt` never overwrite each other."""
    saved = read_results(run_dir)
    saved[str(results["split"])] = results
    target = Path(run_dir) / RESULTS
    replace_atomically(lambda tmp: tmp.write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8"), target)
    return target


def unique_labels(paths: list[str | Path]) -> list[str]:
    """The shortest trailing part of each path that tells it from the others: runs/a, runs/b -> a, b;
    x/run, y/run -> x/run, y/run. Equal paths keep equal labels."""
    parts = [Path(path).resolve().parts for path in paths]
    labels = []
    for own in parts:
        others = {other for other in parts if other != own}
        depth = 1
        while depth < len(own) and any(other[-depth:] == own[-depth:] for other in others):
            depth += 1
        labels.append("/".join(own[-depth:]))
    return labels


def evaluated_on(key: str) -> str:
    """How a results key reads in a table: a split's name as it is, a file's path relative to here if it can."""
    if not key.startswith("/"):
        return key
    try:
        return str(Path(key).relative_to(Path.cwd()))
    except ValueError:
        return key


def compare_table(columns: dict[str, dict] | list[tuple[str, dict]]) -> str:
    """A Markdown table with one column per (label, results) and the rows of the papers' tables (NLL, KL, MI, AU,
    PPL per word and per token, BLEU with the tokenizer it was scored with), under a row saying what each column
    was evaluated on (its split or file); results.json of older versions are read as `read_old_results` says."""
    pairs = [(label, read_old_results(results))
             for label, results in (columns.items() if isinstance(columns, dict) else columns)]
    lines = ["| metric | " + " | ".join(label for label, _ in pairs) + " |", "| --- |" + " ---: |" * len(pairs)]
    if any("split" in results for _, results in pairs):
        lines.append("| evaluated on | " + " | ".join(evaluated_on(str(results.get("split", "–")))
                                                      for _, results in pairs) + " |")
    for label, key in COMPARE_ROWS:
        cells = []
        for _, results in pairs:
            value = results.get(key)
            cells.append("–" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_runs(run_dirs: list[str | Path], on: str | None = None) -> str:
    """The compare table of several run dirs: one column per run and evaluation (all of them, or only those
    of the split or file `on`), each headed by the shortest part of the run's path that is unique."""
    columns = []
    for run_dir, label in zip(run_dirs, unique_labels(run_dirs)):
        saved = read_results(Path(run_dir))
        if not saved:
            raise TextVAEError(f"{run_dir} has no results.json; run: textvae evaluate {run_dir}")
        if on is not None:
            wanted = results_key(on)
            if wanted not in saved:
                known = ", ".join(evaluated_on(key) for key in saved)
                raise TextVAEError(f"{run_dir} has no evaluation on {on} (it has: {known}); run: textvae evaluate "
                                   f"{run_dir} {'--file' if wanted.startswith('/') else '--split'} {on}")
            saved = {wanted: saved[wanted]}
        columns.extend((label, results) for results in saved.values())
    return compare_table(columns)


def results_key(split_or_file: str) -> str:
    """The results.json key of a split name (aliases such as dev -> valid) or of a text file (its absolute path)."""
    if split_or_file in SPLITS or split_or_file in SPLIT_ALIASES:
        return split_name(split_or_file)
    return str(Path(split_or_file).resolve())
