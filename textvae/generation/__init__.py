"""Generation: turning latent codes into sentences (greedy, sampling, top-k, top-p, beam search) and choosing the
codes worth decoding (paths between two codes, analogies, traversals, neighbourhoods, closest codes)."""

from .decoding import DecodingOptions, decode, prior_sample, score_sequences
from .latent_space import latent_path

__all__ = ["DecodingOptions", "decode", "latent_path", "prior_sample", "score_sequences"]
