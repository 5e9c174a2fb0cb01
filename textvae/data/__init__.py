"""Data: corpus sources (text files, folders, `datasets`, the synthetic corpus, streams), tokenizers, tokenized
splits and batches. `load_splits(config, tokenizer)` is the entry point from a run config's data and tokenizer
sections to a tokenizer and splits; nothing here imports the model, training, evaluation or generation."""

from .batching import Batch, BucketBatchSampler, collate, iterate_batches, padding_share
from .loading import hold_out, load_splits, run_tokenizer, train_batches
from .sources import SPLIT_ALIASES, SPLITS, check_text_file, is_text_folder, load_corpus, split_name, text_files
from .splits import NO_LIMIT, SplitReport, TokenizedSplit, prepare_split, prepare_texts, resolve_max_length
from .streaming import StreamingTrainSplit

__all__ = ["Batch", "BucketBatchSampler", "NO_LIMIT", "SPLITS", "SPLIT_ALIASES", "SplitReport", "StreamingTrainSplit",
           "TokenizedSplit", "check_text_file", "collate", "hold_out", "is_text_folder", "iterate_batches",
           "load_corpus", "load_splits", "padding_share", "prepare_split", "prepare_texts", "resolve_max_length",
           "run_tokenizer", "split_name", "text_files", "train_batches"]
