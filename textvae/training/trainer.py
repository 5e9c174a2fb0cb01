"""The Trainer: a training run read top to bottom, data → model → steps → validations → checkpoints, as methods
over explicit state (the run's TrainerState, the model, its optimizers) instead of closures.

`train(config, out, resume=...)` is the entry point (the CLI, scripts, benchmarks and tests call it). The run
writes its run dir (training/checkpoint.py) at every validation and, between validations, every
train.checkpoint_minutes of training; checkpoints also hold the state of the collapse remedies (target-rate
multiplier, decoder reset done, aggressive mode switched off), so a resume continues exactly as an
uninterrupted run would. Remedies and the LR warm-up are parts (parts.py, collapse.py) the trainer calls at
named points: before a step, after a step, at a validation.

A train line of metrics.jsonl (every train.log_every steps) averages the steps since the previous one over
their sentences (all processes' under DDP): `loss` is the −ELBO, as on valid lines, `objective` what the
optimizer minimised, `grad_norm` the gradient norm before clipping (step.window_figures). The window's sums
are part of the checkpointed state, so a resumed run logs the same lines.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from ..config import TRAIN_CONFIG, RunConfig, save_config
from ..data import Batch, load_splits, run_tokenizer, train_batches
from ..data.tokenization import check_tokenizer_section, special_ids, vocabulary_size
from ..errors import TextVAEError, TrainingInterrupted
from ..evaluation import evaluate_split
from ..modeling import TextVAE, build_model_config, check_model_section
from ..modeling.sampling_prior import FIT_SENTENCES, SAMPLING_PRIOR_FILE, FittedGaussian
from ..runtime import describe_precision, keep_freed_memory, precision_name, resolve_precision, select_device
from .checkpoint import (
    CHECKPOINT,
    METRICS,
    TrainerState,
    apply_new_lr,
    load_checkpoint,
    prepare_out_dir,
    save_checkpoint,
    save_model,
)
from .collapse import (
    AggressiveTraining,
    AutoencoderPretraining,
    TargetRate,
    check_remedies,
    encoder_parameters,
)
from .distributed import Workers, teardown
from .distributed import setup as setup_workers
from .limits import StopRequests, diverged_advice, finished_without_loading, judged_loss, limit_reached, run_summary
from .logging_sinks import TENSORBOARD_DIR, MetricsLog, TensorBoardLog, require_tensorboard
from .objectives import Loss, kl_weight
from .parts import LinearCooldown, LinearWarmup, StepPlan, TrainingPart
from .setup import (
    build_optimizer,
    check_model_fits,
    local_processes,
    model_as_trained,
    reload_best_weights,
    seed_everything,
    start_decoder_from_lm,
    start_from_run,
)
from .step import Diverged, add_to_window, training_step, window_figures
from .threads import choose_thread_count

logger = logging.getLogger("textvae")


def train(config: RunConfig, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train a model as `config` says, writing the run dir; returns the best validation results.
    Under torchrun it trains with DDP across the processes (training/distributed.py)."""
    out_dir = Path(out_dir)
    settings = config.train
    check_model_section(config.model)  # fail on a typo before any data is read
    check_remedies(config)
    check_tokenizer_section(config.tokenizer)
    if settings.tensorboard:
        require_tensorboard()  # a missing package fails now, not after the data is read
    workers, device = setup_workers(select_device(settings.device))
    resolve_precision(settings.precision, device)  # fp16 on a CPU, say, fails before the run dir is made
    created = not out_dir.exists()
    with contextlib.ExitStack() as cleanup:  # closes what the run opens (the TensorBoard writer), even on errors
        cleanup.callback(teardown, workers)
        try:
            return run_trainer(Trainer(config, out_dir, resume, workers, device, cleanup))
        except Diverged as error:
            raise TextVAEError(diverged_advice(error, out_dir)) from None
        except BaseException:
            if created and workers.is_main:
                remove_unused_run_dir(out_dir)
            raise


def run_trainer(trainer: Trainer) -> dict[str, Any]:
    """Set up and fit `trainer`; its model (under DDP, holding the process group) is freed when this returns, so
    that the process group is destroyed after it (the other order can hang gloo's worker thread at exit)."""
    finished = trainer.setup()
    return finished if finished is not None else trainer.fit()


def remove_unused_run_dir(out_dir: Path) -> None:
    """Remove the run dir a failed run created before it checkpointed anything: an empty or half-made folder
    would only be in the way (and look like a run); one with a checkpoint is kept for --resume."""
    if out_dir.is_dir() and not (out_dir / CHECKPOINT).exists() and not (out_dir / "model.safetensors").exists():
        shutil.rmtree(out_dir, ignore_errors=True)


class Trainer:
    """One training run of `config` into `out_dir`: `setup` builds everything (or finds a resumed run finished),
    `fit` trains until a limit ends the run. Every process of a DDP run holds one; rank 0 writes the files."""

    def __init__(self, config: RunConfig, out_dir: Path, resume: bool, workers: Workers, device: torch.device,
                 cleanup: contextlib.ExitStack):
        self.config, self.settings, self.out_dir, self.resume = config, config.train, out_dir, resume
        self.workers, self.device, self.cleanup = workers, device, cleanup
        self.already_finished: str | None = None  # why a resumed run had nothing left to train

    # ---- setup --------------------------------------------------------------------------------------------

    def setup(self) -> dict[str, Any] | None:
        """Prepare the run dir, the runtime, the data, the model and its optimizers, the state (restored on
        resume), the logs and the parts; returns the summary of a resumed run that has nothing left to train
        (read from its checkpoint alone, before any data is loaded), else None."""
        if self.workers.is_main:
            prepare_out_dir(self.out_dir, self.resume)
        self.workers.barrier()
        if self.resume:
            done = finished_without_loading(self.out_dir, self.config)
            if done is not None:
                return done
        self.configure_runtime()
        self.load_data()
        self.build_model()
        self.restore() if self.resume else self.start()
        self.open_logs()
        self.parts = self.build_parts()
        for part in self.parts:
            part.on_start(self)
        return None

    def configure_runtime(self) -> None:
        """Progress bars, CPU threads, seeds, the compute precision (and fp16's loss scaler), the allocator, and the
        generator of the steps' word-dropout and posterior draws (shared by all processes, checkpointed)."""
        settings, device = self.settings, self.device
        hf_logging.disable_progress_bar()
        if not settings.progress_bar or not self.workers.is_main:
            import datasets

            datasets.disable_progress_bars()  # --quiet: no "Generating train split" bars either
        if device.type == "cpu" or settings.num_threads:
            threads, reason = choose_thread_count(settings.num_threads, local_processes(self.workers))
            torch.set_num_threads(threads)
            logger.info(reason)
        seed_everything(settings.seed)
        self.dtype = resolve_precision(settings.precision, device)
        logger.info(f"training on {device} in {describe_precision(settings.precision, self.dtype)}")
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None
        if device.type == "cpu":
            keep_freed_memory()
        self.draws = torch.Generator(device=device)
        self.draws.manual_seed(settings.seed + 1)

    def load_data(self) -> None:
        """The tokenizer and splits (data.load_splits): rank 0 of a new run builds the tokenizer and writes it with
        train_config.yaml; the other processes, and a resumed run, read the run dir's tokenizer back."""
        if self.workers.is_main and not self.resume:
            tokenizer, self.splits = load_splits(self.config, run_tokenizer(self.settings.init_from))
            tokenizer.save_pretrained(str(self.out_dir))
            save_config(self.config, self.out_dir / TRAIN_CONFIG)
        self.workers.barrier()
        if not self.workers.is_main or self.resume:
            tokenizer, self.splits = load_splits(self.config, run_tokenizer(self.out_dir, "--out"))
        self.tokenizer, self.special = tokenizer, special_ids(tokenizer)

    def build_model(self) -> None:
        """The model (refused before it is built when it cannot fit in memory), its optimizer and LR scheduler,
        and aggressive training's encoder optimizer (He et al. 2019)."""
        settings = self.settings
        model_config = build_model_config(self.config.model, vocabulary_size(self.tokenizer), self.special)
        check_model_fits(model_config, self.device)
        self.model = TextVAE(model_config).to(self.device)
        self.model.attach_tokenizer(self.tokenizer)  # a pretrained encoder reads sentences back as text
        self.optimizer = build_optimizer(self.model, settings)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=settings.lr_decay_factor, patience=settings.lr_decay_patience,
            min_lr=settings.min_lr)
        self.encoder_optimizer = (build_optimizer(encoder_parameters(self.model), settings)
                                  if settings.aggressive else None)

    def restore(self) -> None:
        """Resume: the checkpoint's weights, optimizers and state; the resumed run's own limits decide whether it
        is finished (a finished run stays finished unless --set raised what ended it)."""
        state = load_checkpoint(self.out_dir, self.model, self.optimizer, self.scheduler, self.scaler, self.draws,
                                self.encoder_optimizer)
        reason = limit_reached(state, self.settings)
        state.finished = reason is not None
        apply_new_lr(state, self.out_dir, self.settings.lr, [self.optimizer, self.encoder_optimizer])
        at_validation = bool(state.history) and state.history[-1]["step"] == state.step
        self.already_finished = reason if at_validation else None  # else: validate once more
        if state.evals_since_best == 0 and at_validation and self.workers.is_main:
            save_model(self.model, self.out_dir)  # the checkpoint's weights are the best: redo a save a kill cut
        if self.already_finished is None:
            logger.info(f"resumed at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
        else:
            logger.info(f"{self.out_dir} has finished training: {self.already_finished}")
        self.state = state

    def start(self) -> None:
        """A new run: weights from train.init_from and train.decoder_from when set, a fresh state, the model config written, and the
        metrics of a run that died before its first checkpoint removed."""
        if self.settings.init_from:
            start_from_run(self.model, Path(self.settings.init_from), self.settings)
        if self.settings.decoder_from:
            start_decoder_from_lm(self.model, Path(self.settings.decoder_from), self.tokenizer)
        self.state = TrainerState(train_lr=self.settings.lr)
        if self.workers.is_main:
            self.model.config.save_pretrained(str(self.out_dir))
            (self.out_dir / METRICS).unlink(missing_ok=True)
            shutil.rmtree(self.out_dir / TENSORBOARD_DIR, ignore_errors=True)

    def open_logs(self) -> None:
        """metrics.jsonl and TensorBoard (rank 0), the model as trained (DDP, torch.compile), the progress bar."""
        settings, state, main = self.settings, self.state, self.workers.is_main
        resume_step = state.step if self.resume else None
        self.metrics = MetricsLog(self.out_dir / METRICS, resume_step) if main else None
        self.board = None
        if settings.tensorboard and main:
            self.board = TensorBoardLog(self.out_dir / TENSORBOARD_DIR, resume_step)
            self.cleanup.callback(self.board.close)
        self.trained = model_as_trained(self.model, settings, self.device, self.workers.distributed,
                                        self.scaler is not None)
        batches_per_epoch = -(-len(self.splits["train"]) // settings.batch_size)
        total_steps = settings.max_steps or settings.max_epochs * batches_per_epoch
        if settings.max_steps:
            total_steps = min(total_steps, settings.max_epochs * batches_per_epoch)
        self.total_steps = total_steps  # the run's length in steps (the LR cool-down counts back from it)
        self.bar = tqdm(total=total_steps, initial=state.step, disable=not (settings.progress_bar and main),
                        desc="train", dynamic_ncols=True)
        self.checkpointed_at = state.train_seconds  # the training time when the last checkpoint was written

    def build_parts(self) -> list[TrainingPart]:
        """The parts this recipe turns on, in the order their hooks run."""
        settings, parts = self.settings, []
        if settings.pretrain_ae_steps:
            parts.append(AutoencoderPretraining())
        if settings.warmup_steps:
            parts.append(LinearWarmup())
        if settings.lr_cooldown:
            parts.append(LinearCooldown())
        if settings.target_rate:
            parts.append(TargetRate())
        if settings.aggressive:
            parts.append(AggressiveTraining())
        return parts

    # ---- the loop -----------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Epochs of steps until a limit (or a validation's verdict) ends the run, then a last validation if the
        last step had none; returns the run's summary (limits.run_summary)."""
        state = self.state
        self.window_tokens, self.window_start = 0, time.perf_counter()
        self.step_start = self.window_start
        with StopRequests() as self.stops:
            while not state.finished and state.epoch < self.settings.max_epochs:
                self.run_epoch()
            self.bar.close()
            if not state.history or state.history[-1]["step"] != state.step:
                self.validate_and_checkpoint()
        if self.settings.fit_sampling_prior and self.workers.is_main and self.model.config.has_latent:
            self.fit_sampling_prior()
        return run_summary(state, self.settings, self.already_finished)

    def fit_sampling_prior(self) -> None:
        """Fit a Gaussian to the best model's posterior means of up to FIT_SENTENCES training sentences and write it
        beside the model (modeling/sampling_prior.py: where `sample` draws z from when the aggregate posterior is
        far from N(0, I))."""
        best = TextVAE.from_pretrained(str(self.out_dir)).to(self.device).eval()  # in fp32, on any CPU the same
        best.attach_tokenizer(self.tokenizer)
        means, count = [], 0
        with torch.no_grad():
            for batch in train_batches(self.splits["train"], self.settings.eval_batch_size, self.special,
                                       self.settings.seed, 0, 0):
                means.append(best.encode(batch.token_ids.to(self.device), batch.lengths)[0].float())
                count += len(batch.indices)
                if count >= FIT_SENTENCES:
                    break
        if count < 2:
            return
        fitted = FittedGaussian.fit(torch.cat(means)[:FIT_SENTENCES])
        fitted.save(self.out_dir)
        logger.info(f"sampling prior: a Gaussian fitted to the posterior means of {fitted.sentences:,} training "
                    f"sentences ({SAMPLING_PRIOR_FILE}); `sample` draws from it")

    def run_epoch(self) -> None:
        """The rest of the current epoch (a resumed run skips the batches it trained on), then its end."""
        settings, state = self.settings, self.state
        self.trained.train()
        for batch in train_batches(self.splits["train"], settings.batch_size, self.special, settings.seed,
                                   state.epoch, state.batch_in_epoch):
            state.batch_in_epoch += 1
            if len(batch.indices) < self.workers.world_size:  # too few sentences to give every process one
                continue
            loss, plan = self.train_step(batch)
            if self.after_step(loss, plan):
                return
            self.step_start = time.perf_counter()
        state.epoch += 1
        state.batch_in_epoch = 0
        if not settings.eval_every:
            self.validate_and_checkpoint()
            self.step_start = time.perf_counter()
        if self.stop_requested():
            self.stop_for_signal()

    def train_step(self, batch: Batch) -> tuple[Loss, StepPlan]:
        """One step on `batch`, with the parts' hooks before and after it, added to the log window."""
        state, workers = self.state, self.workers
        plan = StepPlan()
        for part in self.parts:
            part.before_step(self, batch, plan)
        rows = workers.rows(len(batch.indices))
        loss = training_step(self.trained, self.optimizer, batch.token_ids.to(self.device), batch.lengths, state.step,
                             self.settings, self.special, self.dtype, self.scaler, self.draws, rows, workers.world_size,
                             state.kl_multiplier, plan.parameters)
        for part in self.parts:
            part.after_step(self, batch, loss)
        add_to_window(state.log_window, loss, len(batch.indices), workers)
        state.step += 1
        self.window_tokens += batch.predicted_tokens
        state.train_seconds += time.perf_counter() - self.step_start
        self.bar.update(1)
        return loss, plan

    def after_step(self, loss: Loss, plan: StepPlan) -> bool:
        """What comes due after a step: a train line, a validation, a time-based checkpoint, the end of training
        (returns True), a stop request (checkpoint and stop)."""
        settings, state = self.settings, self.state
        if state.step % settings.log_every == 0:
            self.log_train_line(loss, plan)
        if settings.eval_every and state.step % settings.eval_every == 0:
            self.validate_and_checkpoint()
            self.window_tokens, self.window_start = 0, time.perf_counter()
        self.checkpoint_if_due()
        if state.finished or (settings.max_steps and state.step >= settings.max_steps) or self.over_time():
            state.finished = True
            return True
        if self.stop_requested():
            self.stop_for_signal()
        return False

    def encoder_update(self, batch: Batch) -> float:
        """One encoder-only update (aggressive training's inner step); the whole batch's summed loss (all
        processes together)."""
        workers = self.workers
        rows = workers.rows(len(batch.indices))
        loss = training_step(self.trained, self.encoder_optimizer, batch.token_ids.to(self.device), batch.lengths,
                             self.state.step, self.settings, self.special, self.dtype, self.scaler, self.draws, rows,
                             workers.world_size, self.state.kl_multiplier, encoder_parameters(self.model))
        return workers.all_sum(loss.value * workers.share(len(batch.indices)), self.device)

    # ---- logs ---------------------------------------------------------------------------------------------

    def log(self, record: dict[str, Any]) -> None:
        """A record to metrics.jsonl and TensorBoard (rank 0 holds them; elsewhere nothing happens)."""
        if self.metrics is not None:
            self.metrics.write(record)
        if self.board is not None:
            self.board.write(record)

    def log_train_line(self, loss: Loss, plan: StepPlan) -> None:
        """A train line: the log window's means, the KL weight, LR and speed, and the parts' fields."""
        state = self.state
        elapsed = time.perf_counter() - self.window_start
        tokens_per_s = self.window_tokens / elapsed if elapsed > 0 else 0.0
        figures = window_figures(state.log_window)
        state.log_window = {}
        record = {"step": state.step, "epoch": state.epoch, "split": "train", **figures, "kl_weight": loss.kl_weight,
                  "lr": self.optimizer.param_groups[0]["lr"], "tokens_per_s": round(tokens_per_s, 1)}
        for part in self.parts:
            record.update(part.train_line(self, plan))
        self.log(record)
        self.bar.set_postfix(loss=f"{figures['loss']:.2f}", kl=f"{figures['kl']:.2f}", tok_s=f"{tokens_per_s:.0f}")
        self.window_tokens, self.window_start = 0, time.perf_counter()

    # ---- validation ---------------------------------------------------------------------------------------

    def validate_and_checkpoint(self) -> None:
        """Score the valid split, keep the best model, adapt the LR, decide on early stopping, checkpoint. Rank 0
        evaluates and writes; every process takes the same decisions from its results."""
        state, settings = self.state, self.settings
        record = self.workers.from_main(self.validate() if self.workers.is_main else None)
        if not math.isfinite(record["loss"]):  # keep the last checkpoint, from before the problem
            raise Diverged("validation loss", record["loss"], state.step, self.optimizer.param_groups[0]["lr"])
        state.history.append(record)
        for part in self.parts:
            part.after_validation(self, record)
        judged = judged_loss(record, settings)
        improved = judged < state.best_valid
        if improved:
            state.best_valid, state.evals_since_best = judged, 0
        else:
            state.evals_since_best += 1
        if not record.get("pretraining"):  # the autoencoder phase neither decays the LR nor stops early
            self.decay_on_plateau(judged)
            if settings.early_stopping_patience and state.evals_since_best >= settings.early_stopping_patience:
                logger.info(f"early stop at step {state.step}: no improvement in {state.evals_since_best} evaluations")
                state.finished = True
        if self.workers.is_main:  # checkpoint first: a kill between the two leaves what resume repairs
            self.write_checkpoint()
            if improved:
                save_model(self.model, self.out_dir)
        self.checkpointed_at = state.train_seconds
        self.workers.barrier()

    def validate(self) -> dict[str, Any]:
        """The valid split's record (rank 0): −ELBO and its parts, PPL bound, MI and AU, the parts' fields; logged."""
        state = self.state
        results = evaluate_split(self.model, self.splits["valid"], self.settings.eval_batch_size,
                                 seed=self.settings.seed, dtype=self.dtype)
        record = {"step": state.step, "epoch": state.epoch, "split": "valid", "loss": results["neg_elbo"],
                  "rec": results["rec"], "kl": results["kl"], "kl_weight": kl_weight(state.step, self.settings),
                  "ppl_bound": results["ppl_bound"], "train_seconds": round(state.train_seconds, 1),
                  "precision": precision_name(self.dtype)}
        record.update({key: results[key] for key in ("mi", "au") if key in results})  # collapse diagnostics
        for part in self.parts:
            part.validation_fields(self, record)
        self.log(record)
        return record

    def decay_on_plateau(self, loss: float) -> None:
        """Let the plateau scheduler judge a validation loss, no sooner than train.lr_decay_from_epoch. At a
        decay, with train.lr_decay_reload_best, go back to the best weights so far and restart the optimizers
        (the published PTB code of He et al. 2019 and Li et al. 2019, which also judge the next plateau against
        the loss that triggered the decay); after train.lr_decay_max decays, training ends."""
        settings, state, optimizer, scheduler = self.settings, self.state, self.optimizer, self.scheduler
        scheduler.patience = settings.lr_decay_patience if state.epoch >= settings.lr_decay_from_epoch else math.inf
        before = optimizer.param_groups[0]["lr"]
        scheduler.step(loss)
        if optimizer.param_groups[0]["lr"] >= before:
            return
        state.lr_decays += 1
        logger.info(f"step {state.step}: LR decay {state.lr_decays}, {before:g} -> {optimizer.param_groups[0]['lr']:g}")
        if settings.lr_decay_reload_best:
            reload_best_weights(self.model, self.out_dir, [optimizer, self.encoder_optimizer])
            scheduler.best = loss
        if settings.lr_decay_max and state.lr_decays >= settings.lr_decay_max:
            logger.info(f"training ends: the LR has decayed {state.lr_decays} times (train.lr_decay_max)")
            state.finished = True

    # ---- checkpoints and stopping -------------------------------------------------------------------------

    def write_checkpoint(self) -> None:
        """checkpoint.pt with everything resuming needs (rank 0 calls it)."""
        save_checkpoint(self.out_dir, self.model, self.optimizer, self.scheduler, self.state, self.scaler, self.draws,
                        self.encoder_optimizer)

    def checkpoint_if_due(self) -> None:
        """After train.checkpoint_minutes of training since the last checkpoint, write one without validating,
        so a kill in a long epoch (aggressive training, a large corpus) loses at most that much. Rank 0 alone
        decides and writes; the others need not wait."""
        minutes = self.settings.checkpoint_minutes
        if not minutes or self.state.train_seconds - self.checkpointed_at < 60 * minutes:
            return
        if self.workers.is_main:
            self.write_checkpoint()
        self.checkpointed_at = self.state.train_seconds

    def over_time(self) -> bool:
        """train.max_minutes spent (every process agrees: rank 0's clock decides)."""
        if not self.settings.max_minutes:
            return False
        return bool(self.workers.from_main(self.state.train_seconds >= 60 * self.settings.max_minutes))

    def stop_requested(self) -> bool:
        """Whether a SIGINT/SIGTERM asked training to stop (on any process: all of them stop at the same step)."""
        asked = self.stops.received is not None
        if self.workers.distributed:
            asked = self.workers.all_sum(float(asked), self.device) > 0
        return asked

    def stop_for_signal(self) -> None:
        """Checkpoint the step just finished (rank 0 writes, atomically) and end training with TrainingInterrupted."""
        if self.workers.is_main:
            self.write_checkpoint()
        self.workers.barrier()
        self.bar.close()  # before the message, so that it gets a line of its own
        received = self.stops.received or signal.SIGTERM  # another process received it
        logger.info(f"{received.name}: checkpointed step {self.state.step}")
        raise TrainingInterrupted(received.name, 128 + int(received), self.state.step, self.out_dir)
