"""`textvae.load(run_dir)`: a trained model and its tokenizer behind one object, on the right device.

Every method takes plain sentences (a string or a list of strings); unknown words become <unk>.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from transformers import PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from .checks import is_whole
from .config import TRAIN_CONFIG, RunConfig, resumed_config, save_config
from .data import NO_LIMIT, TokenizedSplit, check_text_file, collate, prepare_texts, split_name
from .data.run_corpus import check_position_limit, corpus_lines, train_chunks
from .data.tokenization import decode_ids, encode_texts, special_ids, vocabulary_size
from .errors import TextVAEError
from .evaluation import Fidelity, score_split, sentence_fidelity, separation_report, summarise
from .evaluation.progress import progress_folder
from .evaluation.text_metrics import BLEU_TOKENIZE, reconstruction_figures, sample_figures
from .evaluation.training_set import training_set_figures
from .generation import DecodingOptions, decode, prior_sample
from .generation.latent_space import (
    analogy_point,
    check_search,
    closest_codes,
    collapse_repeats,
    latent_path,
    neighbourhood_points,
    traversal_points,
    traversal_values,
)
from .modeling import TextVAE, TextVAEConfig
from .modeling.posterior import reparameterize
from .modeling.sampling_prior import SAMPLING_PRIOR_FILE, SAMPLING_PRIORS, FittedGaussian
from .modeling.shapes import weights_mismatch
from .runtime import noise_generator, precision_name, resolve_precision, select_device


def check_run_dir(run_dir: Path) -> None:
    """Fail with one line when `run_dir` is not a trained run."""
    if not run_dir.is_dir():
        raise TextVAEError(f"run dir not found: {run_dir}; train one with: textvae train --out {run_dir}")
    for name, hint in (("config.json", "model config"), ("model.safetensors", "model weights"),
                       ("tokenizer.json", "tokenizer")):
        if not (run_dir / name).is_file():
            from .training.checkpoint import CHECKPOINT  # the training package, only when a run dir is unfinished

            fix = (f"is training finished? (textvae train --out {run_dir} --resume continues it)"
                   if (run_dir / CHECKPOINT).is_file() else f"train one with: textvae train --out {run_dir}")
            raise TextVAEError(f"run dir {run_dir} has no {name} ({hint}); {fix}")


def as_sentences(sentences: str | list[str], what: str = "sentences") -> list[str]:
    """A list of non-empty strings, from one string or a list, with the bad position named."""
    if isinstance(sentences, str):
        sentences = [sentences]
    if not isinstance(sentences, (list, tuple)) or not sentences:
        raise TextVAEError(f"{what}: expected a sentence or a non-empty list of sentences")
    for position, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise TextVAEError(f"{what}[{position}]: expected a string, got {type(sentence).__name__}")
        if not sentence.strip():
            raise TextVAEError(f"{what}[{position}] is empty; give at least one word")
    return list(sentences)


def read_lines(file: str | Path, what: str) -> list[str]:
    """A text file's non-blank lines, in order; one clear line if it is missing, empty or not UTF-8."""
    check_text_file(Path(file), what)
    return [line for line in Path(file).read_text(encoding="utf-8").splitlines() if line.strip()]


DECODE_CHUNK = 1024  # latent codes decoded at once: decoding memory stays bounded whatever the count


def check_count(value, what: str) -> None:
    """Fail with one line unless `value` is a whole number >= 1."""
    if not is_whole(value) or value < 1:
        raise TextVAEError(f"{what}: must be a positive whole number, got {value!r}")


def reconstruction_length(split: TokenizedSplit, least: int = 50) -> int:
    """Most tokens a reconstruction may have: the longest sentence of the split and its <eos>, and never fewer
    than `least` (the decoders' usual cap), so no reconstruction of a long sentence is cut short."""
    return max(least, max((len(ids) + 1 for ids in split.token_ids), default=0))


class Interpolation(list):
    """The sentences of a homotopy (a list, as before), with `ends`: how faithfully its first and last
    sentences reconstruct the two sentences it was asked to join (two `Fidelity`), or None when an end was
    a latent vector or a prior sample. A path means something only where both ends are exact."""

    def __init__(self, sentences: list[str], ends: tuple[Fidelity, Fidelity] | None = None):
        super().__init__(sentences)
        self.ends = ends


class TextVAEPipeline:
    """A trained TextVAE with its tokenizer: sample, reconstruct (and its fidelity), interpolate, analogy,
    traverse, neighbourhood, encode, nearest, evaluate, score, detect."""

    def __init__(self, model: TextVAE, tokenizer: PreTrainedTokenizerFast, run_config: RunConfig | None = None,
                 run_dir: Path | None = None, dtype: torch.dtype = torch.float32):
        self.model = model.eval()
        self.dtype = dtype  # compute dtype of scoring (evaluate, score, detect)
        self.progress = False  # progress bars (with ETA) while scoring; the CLI turns them on
        self.resumable = True  # save partial scores in the run dir, so a stopped evaluate/score resumes
        self.tokenizer = tokenizer
        self.run_config = run_config
        self.run_dir = run_dir
        self.special = special_ids(tokenizer)
        # where `sample` draws z from besides N(0, I): the run's fitted Gaussian (train.fit_sampling_prior), if any
        self.sampling_prior = FittedGaussian.load(run_dir) if run_dir is not None else None

    @property
    def device(self) -> torch.device:
        """The device the model (and every tensor the pipeline makes) is on."""
        return self.model.device

    def save_pretrained(self, folder: str | Path) -> None:
        """Write the model and its tokenizer into `folder` (config.json, model.safetensors, tokenizer files, and
        train_config.yaml when the run's is known), so that `textvae.load(folder)` and `from_pretrained` read it."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.model.save_pretrained(str(folder))
            self.tokenizer.save_pretrained(str(folder))
            if self.run_config is not None:
                save_config(self.run_config, folder / TRAIN_CONFIG)
            if self.sampling_prior is not None:
                self.sampling_prior.save(folder)
        except OSError as error:
            raise TextVAEError(f"could not write {folder} ({error.strerror or error}); choose another folder") from None

    def require_latent(self, what: str) -> None:
        """Refuse, with one line, what only a VAE can do when this run is a language model."""
        if not self.model.config.has_latent:
            raise TextVAEError(f"{what} needs a latent space, but this run is a language model (model_variant: lm)")

    def batches(self, sentences: list[str], batch_size: int = 256):
        """Sentences as padded batches, in their given order."""
        encoded = encode_texts(self.tokenizer, sentences)
        self.check_fits(encoded)
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start: start + batch_size]
            yield collate(chunk, list(range(start, start + len(chunk))), self.special["bos_token_id"],
                          self.special["eos_token_id"], self.special["pad_token_id"])

    @torch.no_grad()
    def posterior(self, sentences: str | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior means and log-variances (n, latent) of the sentences, in order."""
        self.require_latent("encoding")
        sentences = as_sentences(sentences)
        means, logvars = [], []
        for batch in self.batches(sentences):
            mean, logvar = self.model.encode(batch.token_ids.to(self.device), batch.lengths)
            means.append(mean)
            logvars.append(logvar)
        return torch.cat(means), torch.cat(logvars)

    def encode(self, sentences: str | list[str], sample: bool = False, seed: int = 0,
               return_tensors: str = "np") -> np.ndarray | torch.Tensor:
        """Latent vectors of the sentences: posterior means, or one posterior sample each with sample=True."""
        mean, logvar = self.posterior(sentences)
        z = reparameterize(mean, logvar, generator=noise_generator(self.device, seed)) if sample else mean
        if return_tensors == "pt":
            return z.cpu()
        if return_tensors == "np":
            return z.cpu().numpy()
        raise TextVAEError(f"return_tensors: '{return_tensors}' is not one of np, pt")

    def decode_latents(self, z: torch.Tensor | None, count: int | None = None, strategy: str = "greedy",
                       temperature: float = 1.0, max_length: int = 50, seed: int | None = None,
                       **decoding) -> list[str]:
        """Sentences decoded from latent codes (or `count` LM samples), batched.

        `strategy` is greedy, sample, top-k, top-p or beam; `decoding` takes the other `DecodingOptions`
        (top_k, top_p, beam_size, length_penalty, ban_unk); `seed` makes sampling reproducible.
        A sentence the model ends at once (its first token <eos>) is the empty string.
        """
        options = DecodingOptions.build(strategy=strategy, temperature=temperature, max_length=max_length, **decoding)
        generator = noise_generator(self.device, seed) if seed is not None else None
        return list(self.decoded(z, count, options, generator))

    def decoded(self, z: torch.Tensor | None, count: int | None, options: DecodingOptions,
                generator: torch.Generator | None) -> Iterator[str]:
        """The decodes of the rows of `z` (or of `count` LM samples), DECODE_CHUNK rows at a time, as they come."""
        total = z.size(0) if z is not None else count
        for start in range(0, total, DECODE_CHUNK):
            rows = min(DECODE_CHUNK, total - start)
            chunk = z[start: start + rows] if z is not None else None
            for ids in decode(self.model, chunk, options, rows, generator):
                yield decode_ids(self.tokenizer, ids)

    def sample(self, n: int = 5, strategy: str = "greedy", temperature: float = 1.0, max_length: int = 50,
               seed: int | None = None, prior: str = "auto", **decoding) -> list[str]:
        """`n` sentences from the prior, or from the LM for a language-model run.

        Any strategy of `decode_latents`, e.g. `vae.sample(5, strategy="top-p", top_p=0.9, seed=0)`. `prior`:
        'standard' draws z from N(0, I); 'fitted' from the Gaussian fitted to the training codes
        (`train.fit_sampling_prior`); 'auto' (the default) the fitted one when the run has it.
        """
        return list(self.iter_sample(n, strategy, temperature, max_length, seed, prior, **decoding))

    def iter_sample(self, n: int = 5, strategy: str = "greedy", temperature: float = 1.0, max_length: int = 50,
                    seed: int | None = None, prior: str = "auto", **decoding) -> Iterator[str]:
        """`sample`'s sentences one at a time, drawn and decoded DECODE_CHUNK at a time: any n in bounded memory
        (`textvae sample` prints them as they come). The options are checked before the first is drawn."""
        check_count(n, "n")
        options = DecodingOptions.build(strategy=strategy, temperature=temperature, max_length=max_length, **decoding)
        return self.sampled(n, options, seed, self.prior_to_draw_from(prior))

    def prior_to_draw_from(self, prior: str = "auto") -> FittedGaussian | None:
        """The fitted Gaussian `prior` names ('fitted', or 'auto' when the run has one), or None for N(0, I)."""
        if prior not in SAMPLING_PRIORS:
            raise TextVAEError(f"prior {prior!r}: choose one of {', '.join(SAMPLING_PRIORS)}")
        if prior == "fitted" and self.sampling_prior is None:
            raise TextVAEError(f"prior 'fitted': this run has no {SAMPLING_PRIOR_FILE} (it was trained without "
                               "train.fit_sampling_prior: true); use prior 'standard' or retrain with it")
        return None if prior == "standard" else self.sampling_prior

    def sampled(self, n: int, options: DecodingOptions, seed: int | None,
                fitted: FittedGaussian | None = None) -> Iterator[str]:
        """`n` decodes of prior samples (or LM samples): z from N(0, I), or from `fitted` when given; prior draws
        from `seed`, decoding draws from seed + 1, each stream continued across the chunks."""
        prior = noise_generator(self.device, seed) if seed is not None else None
        sampler = noise_generator(self.device, seed + 1) if seed is not None else None
        latent = self.model.config.has_latent
        return self.drawn_and_decoded(n, lambda rows: self.prior_codes(rows, prior, fitted) if latent else None,
                                      options, sampler)

    def prior_codes(self, rows: int, generator: torch.Generator | None, fitted: FittedGaussian | None) -> torch.Tensor:
        """`rows` latent codes from N(0, I), or from `fitted` when given."""
        if fitted is None:
            return prior_sample(self.model, rows, generator)
        return fitted.sample(rows, generator, self.device)

    def drawn_and_decoded(self, n: int, draw: Callable[[int], torch.Tensor | None], options: DecodingOptions,
                          sampler: torch.Generator | None) -> Iterator[str]:
        """The decodes of n latent codes that draw(rows) makes DECODE_CHUNK rows at a time (None: an LM's
        samples), as they come: any n in bounded memory."""
        for start in range(0, n, DECODE_CHUNK):
            rows = min(DECODE_CHUNK, n - start)
            yield from self.decoded(draw(rows), rows, options, sampler)

    def reconstruct(self, sentences: str | list[str], strategy: str = "greedy", max_length: int = 50,
                    seed: int | None = None, **decoding) -> list[str]:
        """Each sentence encoded to its posterior mean and decoded back (any strategy of `decode_latents`)."""
        DecodingOptions.build(strategy=strategy, max_length=max_length, **decoding)
        mean, _ = self.posterior(sentences)
        return self.decode_latents(mean, strategy=strategy, max_length=max_length, seed=seed, **decoding)

    def read_as(self, sentences: str | list[str]) -> list[str]:
        """Each sentence as the model reads it: its tokens written back, unknown words as <unk>."""
        sentences = as_sentences(sentences)
        return [decode_ids(self.tokenizer, ids) for ids in encode_texts(self.tokenizer, sentences)]

    def fidelity(self, sentences: str | list[str], strategy: str = "greedy", max_length: int = 50,
                 seed: int | None = None, **decoding) -> list[Fidelity]:
        """How faithfully each sentence comes back from its posterior mean (decoded as in `reconstruct`):
        the reconstruction, whether it is the sentence token for token, and its sentence BLEU."""
        sentences = as_sentences(sentences)
        reconstructions = self.reconstruct(sentences, strategy=strategy, max_length=max_length, seed=seed, **decoding)
        return [sentence_fidelity(text, read, output)
                for text, read, output in zip(sentences, self.read_as(sentences), reconstructions)]

    def latent(self, item: str | np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
        """One latent code: a sentence's posterior mean, or a given vector of the latent size."""
        if isinstance(item, str):
            return self.posterior(as_sentences(item, what))[0][0]
        size = self.model.config.latent_size
        if isinstance(item, (np.ndarray, torch.Tensor, list, tuple)):
            vector = torch.as_tensor(np.asarray(item, dtype=np.float32) if not isinstance(item, torch.Tensor) else item)
            if vector.numel() == size:
                return vector.reshape(size).float().to(self.device)
            raise TextVAEError(f"{what}: a latent vector needs {size} numbers, got shape {tuple(vector.shape)}")
        raise TextVAEError(f"{what}: expected a sentence or a latent vector, got {type(item).__name__}")

    def interpolate(self, first: str | np.ndarray | torch.Tensor | None = None,
                    second: str | np.ndarray | torch.Tensor | None = None, steps: int = 7, path: str = "linear",
                    strategy: str = "greedy", collapse: bool = False, seed: int | None = None,
                    **decoding) -> Interpolation:
        """The homotopy of Bowman et al. 2016: decodes of `steps` points from `first` to `second`, ends included.

        Each end is a sentence (its posterior mean) or a latent vector; with neither, two prior samples
        (drawn with `seed`). `path` is 'linear' or 'slerp' (see `generation.latent_space.slerp_path`); each point is
        decoded with `strategy` and `decoding` as in `decode_latents`. `collapse=True` keeps one of each
        run of equal consecutive sentences (`generation.latent_space.collapse_repeats` also gives their steps).
        With two sentences, the result's `ends` say how faithfully the path's first and last decodes
        reproduce them (`Fidelity`: exact or not, sentence BLEU): a path that does not start at the first
        sentence joins the model's reading of it, not the sentence.
        """
        self.require_latent("interpolation")
        DecodingOptions.build(strategy=strategy, **decoding)
        if (first is None) != (second is None):
            raise TextVAEError("interpolate: give both ends (sentences or latent vectors), or neither for two "
                               "prior samples")
        if first is None:
            ends = self.prior_codes(2, noise_generator(self.device, 0 if seed is None else seed),
                                    self.prior_to_draw_from("auto"))
            start, end = ends[0], ends[1]
        elif isinstance(first, str) and isinstance(second, str):
            mean, _ = self.posterior(as_sentences([first, second], "interpolate"))
            start, end = mean[0], mean[1]
        else:
            start, end = self.latent(first, "interpolate first"), self.latent(second, "interpolate second")
        points = latent_path(start, end, steps, path)
        sentences = self.decode_latents(points, strategy=strategy, seed=None if seed is None else seed + 1, **decoding)
        ends = None
        if isinstance(first, str) and isinstance(second, str):
            first_read, second_read = self.read_as([first, second])
            ends = (sentence_fidelity(first, first_read, sentences[0]),
                    sentence_fidelity(second, second_read, sentences[-1]))
        kept = [sentence for _, sentence in collapse_repeats(sentences)] if collapse else sentences
        return Interpolation(kept, ends)

    def analogy(self, a: str, b: str, c: str, strategy: str = "greedy", seed: int | None = None,
                **decoding) -> str:
        """Latent arithmetic: "a is to b as c is to ?", the decode of z_b − z_a + z_c (posterior means)."""
        self.require_latent("analogy")
        mean, _ = self.posterior(as_sentences([a, b, c], "analogy"))
        point = analogy_point(mean[0], mean[1], mean[2]).unsqueeze(0)
        return self.decode_latents(point, strategy=strategy, seed=seed, **decoding)[0]

    def traverse(self, sentence: str | np.ndarray | torch.Tensor | None = None, dimension: int = 0,
                 span: float = 3.0, steps: int = 7, strategy: str = "greedy", seed: int | None = None,
                 **decoding) -> list[str]:
        """Decodes of one latent coordinate swept from −span to +span in `steps` even steps
        (`generation.latent_space.traversal_values`), the others held at the sentence's posterior mean (or a given
        vector; with neither, at the prior mean 0)."""
        self.require_latent("traversal")
        DecodingOptions.build(strategy=strategy, **decoding)
        values = traversal_values(span, steps)
        origin = (torch.zeros(self.model.config.latent_size, device=self.device) if sentence is None
                  else self.latent(sentence, "traverse"))
        points = traversal_points(origin, dimension, values)
        return self.decode_latents(points, strategy=strategy, seed=seed, **decoding)

    def neighbourhood(self, sentence: str | np.ndarray | torch.Tensor, n: int = 10, radius: float = 0.5,
                      strategy: str = "greedy", seed: int | None = 0, **decoding) -> list[str]:
        """Decodes of `n` codes z + radius·ε (ε ~ N(0, I), drawn with `seed`) around a sentence's posterior
        mean z (or a given vector): what the model puts near it."""
        return list(self.iter_neighbourhood(sentence, n, radius, strategy, seed, **decoding))

    def iter_neighbourhood(self, sentence: str | np.ndarray | torch.Tensor, n: int = 10, radius: float = 0.5,
                           strategy: str = "greedy", seed: int | None = 0, **decoding) -> Iterator[str]:
        """`neighbourhood`'s sentences one at a time, drawn and decoded DECODE_CHUNK at a time (any n in
        bounded memory); everything is checked before the first is drawn."""
        self.require_latent("neighbourhood sampling")
        check_count(n, "n")
        options = DecodingOptions.build(strategy=strategy, **decoding)
        neighbourhood_points(torch.zeros(1), 0, radius)  # checks the radius
        center = self.latent(sentence, "neighbourhood")
        seed = 0 if seed is None else seed
        noise, sampler = noise_generator(self.device, seed), noise_generator(self.device, seed + 1)
        return self.drawn_and_decoded(n, lambda rows: neighbourhood_points(center, rows, radius, noise), options,
                                      sampler)

    def nearest(self, query: str, sentences: list[str] | None = None, file: str | Path | None = None, k: int = 5,
                metric: str = "cosine", line_numbers: bool = False) -> list[tuple]:
        """The k sentences (given, or a file's non-blank lines) whose posterior means are closest to the
        query's: (sentence, score) best first, the score a cosine similarity or a Euclidean distance. With
        `line_numbers`, (line number, sentence, score): the line in the file (from 1, blank lines counted),
        or the position in `sentences` (from 1)."""
        self.require_latent("nearest-sentence search")
        check_search(k, metric)
        if (sentences is None) == (file is None):
            raise TextVAEError("nearest: give the sentences to search, either as sentences= or as file=")
        if file is not None:
            check_text_file(Path(file), "nearest")
            numbered = [(number, line) for number, line in
                        enumerate(Path(file).read_text(encoding="utf-8").splitlines(), start=1) if line.strip()]
        else:
            numbered = list(enumerate(as_sentences(sentences, "sentences"), start=1))
        corpus = [line for _, line in numbered]
        query_mean, _ = self.posterior(as_sentences(query, "query"))
        corpus_mean, _ = self.posterior(corpus)
        scores, indices = closest_codes(query_mean[:1], corpus_mean, k, metric)
        found = [(numbered[index], float(score)) for score, index in zip(scores[0].tolist(), indices[0].tolist())]
        if line_numbers:
            return [(number, line, score) for (number, line), score in found]
        return [(line, score) for (_, line), score in found]

    def corpus_lines(self, split: str) -> tuple[list[str], dict[str, list]]:
        """The lines (blank ones included) of a split of the run's corpus, and its label columns (the synthetic
        corpus's factors; none for text files), one value per line. dev, validation and val name valid."""
        if self.run_config is None:
            raise TextVAEError(f"this run has no {TRAIN_CONFIG}, so its corpus is unknown; pass sentences= or file=")
        return corpus_lines(self.run_config.data, split)

    def split_lines(self, split: str) -> int:
        """How many lines (blank ones included) a split of the run's corpus has."""
        return len(self.corpus_lines(split)[0])

    def corpus_split(self, split: str, extra_labels: dict[str, list] | None = None) -> TokenizedSplit:
        """A split of the run's corpus, tokenized with the run's tokenizer and no length policy: evaluation
        scores every line it is given (data.max_length shapes training only); blank lines are skipped.
        `extra_labels` (one value per line of the split) come along as label columns of the kept sentences."""
        lines, labels = self.corpus_lines(split)
        target = prepare_texts(lines, self.tokenizer, NO_LIMIT, "truncate", {**labels, **(extra_labels or {})})
        self.check_fits(target, f"{split} split")
        return target

    def train_chunks(self, chunk: int = 10_000) -> Iterator[TokenizedSplit]:
        """The run's train split a chunk of sentences at a time, under the training length policy (it is the
        set the model was trained on): read straight from the file for text corpora (streamed or not), a
        chunk of rows at a time otherwise, so it is never held whole."""
        return train_chunks(self.run_config.data, self.tokenizer, chunk)

    def given_split(self, sentences: str | list[str] | None, file: str | Path | None) -> TokenizedSplit:
        """Sentences (or a file's non-blank lines) tokenized with no length limit."""
        if file is not None:
            check_text_file(Path(file), "file")
            split = prepare_texts(Path(file).read_text(encoding="utf-8").splitlines(), self.tokenizer, NO_LIMIT,
                                  "truncate")
            self.check_fits(split, str(file))
            return split
        split = prepare_texts(as_sentences(sentences), self.tokenizer, NO_LIMIT, "truncate")
        self.check_fits(split)
        return split

    def check_fits(self, encoded: TokenizedSplit | list[list[int]], where: str | None = None) -> None:
        """Refuse, naming it, a sentence longer than a Transformer of this model can read: by its line when
        `encoded` is a split read from `where` (a file or a corpus split), else by its place in the list."""
        check_position_limit(encoded, self.model.config.position_limit, where)

    def partial_scores_dir(self) -> Path | None:
        """Where evaluate/score save partial scores (evaluation/progress.py): the run dir, unless turned off or read-only."""
        return progress_folder(self.run_dir) if self.resumable else None

    def evaluate(self, split: str = "test", sentences: list[str] | None = None, file: str | Path | None = None,
                 iw_samples: int = 500, batch_size: int = 128, seed: int = 0, bleu: bool = True,
                 samples: int = 500, au_threshold: float = 0.01, mi_draws: int = 1,
                 unigram: bool = True, beam_size: int = 1) -> dict[str, Any]:
        """Corpus scores (docs/metrics.md) on a split of the run's corpus, given sentences, or a text file:
        IW-NLL with `iw_samples` samples and its PPL (per word and per token), −ELBO, rec, KL, MI (the mean of
        `mi_draws` draws of z, with mi_sd), AU, reconstruction BLEU, the quality of `samples` prior samples
        (distinct-1/2, self-BLEU, share copied from the training set) and, with `unigram`, a unigram model's
        NLL. The reconstructions behind BLEU and exact_match are greedy decodes of the posterior means (the
        papers' protocol), or beam searches of `beam_size` hypotheses when it is above 1. Every line is
        scored, whatever its length; the train split is read (streamed) only for the figures that need it:
        copied_share and unigram_nll of a corpus split."""
        if not isinstance(iw_samples, int) or iw_samples < 0:
            raise TextVAEError(f"iw_samples: must be a whole number >= 0 (0 = report the ELBO bound), got {iw_samples!r}")
        if not isinstance(mi_draws, int) or mi_draws < 1:
            raise TextVAEError(f"mi_draws: must be a whole number >= 1 (draws of z for the MI estimate), got {mi_draws!r}")
        search = {"strategy": "beam", "beam_size": beam_size} if beam_size != 1 else {}  # 1: greedy
        DecodingOptions.build(**search)  # a bad beam_size fails here, not after the scoring
        from_corpus = sentences is None and file is None
        target = self.corpus_split(split) if from_corpus else self.given_split(sentences, file)
        latent = self.model.config.has_latent
        scores = score_split(self.model, target, batch_size, iw_samples if latent else 0, seed, dtype=self.dtype,
                             progress=self.progress, save_dir=self.partial_scores_dir())
        results = summarise(scores, iw_samples if latent else 0, au_threshold, seed, mi_draws)
        # what was evaluated, also the key of results.json: a split's name, a file's absolute path
        results["split"] = (str(Path(file).resolve()) if file is not None else
                            "sentences" if sentences is not None else split_name(split))
        results["precision"] = precision_name(self.dtype)  # what the scoring passes ran in (auto picks it)
        if latent and bleu:  # decodes of the posterior means score_split already computed
            references = [decode_ids(self.tokenizer, ids) for ids in target.token_ids]
            decodes = self.decode_latents(torch.from_numpy(scores.mean).float(),
                                          max_length=reconstruction_length(target), **search)
            results.update(reconstruction_figures(decodes, references))
            if search:  # absent: greedy, as in every results.json written before the option
                results["bleu_decoding"] = f"beam {beam_size}"
        generated = self.sample(samples, strategy="sample", seed=seed) if samples else []
        results.update(sample_figures(generated))
        if generated and latent:  # which prior the samples came from (sample's 'auto')
            results["sampling_prior"] = "fitted" if self.sampling_prior is not None else "standard"
        if "bleu" in results or "self_bleu" in results:
            results["bleu_tokenize"] = BLEU_TOKENIZE
        if from_corpus and (generated or unigram):
            results.update(training_set_figures(self.train_chunks(), generated, target, self.special["eos_token_id"],
                                                vocabulary_size(self.tokenizer), unigram,
                                                lambda ids: decode_ids(self.tokenizer, ids)))
        return results

    def score(self, sentences: str | list[str] | None = None, file: str | Path | None = None,
              iw_samples: int = 100, batch_size: int = 128, seed: int = 0) -> list[dict[str, Any]]:
        """Per-sentence scores for anomaly detection, in order: −ELBO, IW-NLL (exact NLL for an LM) and
        NLL per predicted token; higher means less likely under the model."""
        target = self.given_split(sentences, file)
        iw_samples = iw_samples if self.model.config.has_latent else 0
        scores = score_split(self.model, target, batch_size, iw_samples, seed, dtype=self.dtype,
                             progress=self.progress, save_dir=self.partial_scores_dir())
        return [{"text": text, "neg_elbo": float(neg_elbo), "iw_nll": float(nll), "nll_per_token": float(nll / tokens),
                 "tokens": int(tokens)}
                for text, neg_elbo, nll, tokens in zip(target.texts, scores.neg_elbo, scores.nll, scores.tokens)]

    def detect(self, inliers: list[str] | str | Path, outliers: list[str] | str | Path,
               iw_samples: int = 100, seed: int = 0) -> dict[str, dict[str, float]]:
        """How well each score separates outliers from inliers: ROC-AUC and average precision per score."""
        def rows(group):
            """The per-sentence scores of a group given as sentences or as a file."""
            if isinstance(group, (str, Path)):
                return self.score(file=group, iw_samples=iw_samples, seed=seed)
            return self.score(group, iw_samples=iw_samples, seed=seed)

        return separation_report(rows(inliers), rows(outliers))


def check_weights_fit(run_dir: Path) -> None:
    """Fail with one line when model.safetensors does not hold the weights config.json describes (files of
    two runs mixed up), instead of transformers' size-mismatch report; damaged files are left to `load`."""
    try:
        with safe_open(str(run_dir / "model.safetensors"), "pt") as weights:
            saved = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
        with torch.device("meta"):  # shapes only: no memory for the weights
            skeleton = TextVAE(TextVAEConfig.from_pretrained(str(run_dir)))
    except Exception:  # unreadable or damaged files: `load` reports those
        return
    mismatch = weights_mismatch(skeleton, saved, "model.safetensors")
    if mismatch:
        raise TextVAEError(f"run dir {run_dir}: model.safetensors does not fit config.json ({mismatch}); the two "
                           "files come from different runs: copy both from the same run, or retrain")


def load(run_dir: str | Path, device: str = "auto", precision: str = "auto") -> TextVAEPipeline:
    """The model and tokenizer of a run dir, ready on `device` ('auto' = CUDA when present); scoring runs
    in `precision` (auto | fp32 | bf16 | fp16; auto = bf16 where the hardware is fast at it)."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    hf_logging.disable_progress_bar()
    check_weights_fit(run_dir)
    try:
        model = TextVAE.from_pretrained(str(run_dir))
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise TextVAEError(f"run dir {run_dir}: the model cannot be loaded ({str(error).splitlines()[0][:160]}); "
                           "its files may be truncated or damaged: copy the run dir again or retrain") from None
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(run_dir))
    except Exception as error:  # tokenizers raises a bare Exception for unreadable files
        raise TextVAEError(f"run dir {run_dir}: the tokenizer cannot be loaded ({str(error).splitlines()[0][:160]}); "
                           "its files may be truncated or damaged: copy the run dir again or retrain") from None
    if vocabulary_size(tokenizer) != model.config.vocab_size:
        raise TextVAEError(f"run dir {run_dir}: tokenizer has {vocabulary_size(tokenizer)} ids but the model expects "
                           f"{model.config.vocab_size}; the tokenizer files belong to another run")
    run_config = resumed_config(run_dir, ()) if (run_dir / TRAIN_CONFIG).is_file() else None
    target = select_device(device)
    return TextVAEPipeline(model.to(target), tokenizer, run_config, run_dir, resolve_precision(precision, target))
