#!/bin/bash
# Short probes for a PTB homotopy model (docs/homotopy.md, "Homotopies on PTB"): each trains
# benchmarks/ptb_homotopy_probe_base.yaml (the first homotopy recipe) with Adam (lr 0.001) for STEPS steps (default 3,945 = 3 epochs) with some model
# overrides, on one thread pinned to CORE, then scores greedy reconstructions of the whole test split
# (`textvae evaluate --iw-samples 0 --samples 0`: rec, KL, MI, AU, BLEU with tokenize="none", exact matches).
# PRECISION (environment, default bf16) sets train.precision: fp32 on a CPU without AVX-512 BF16/AMX.
# DRY_RUN=1 (environment) prints each probe's overrides, one line per probe, and trains nothing.
# One line per probe goes to runs/probes/log.txt. A probe whose run dir has a checkpoint is resumed and trained on
# to STEPS (resume is exact), so a longer STEPS continues it. Run from the repository root:
#   bash benchmarks/ptb_homotopy_probes.sh [CORE] [STEPS] [PROBE ...]     (default: core 0, all probes)
set -euo pipefail
CORE=${1:-0}; STEPS=${2:-3945}; shift $(( $# > 2 ? 2 : $# ))
OUT=runs/probes
COMMON="train.optimizer=adam train.lr=0.001 train.max_steps=$STEPS train.num_threads=1 train.precision=${PRECISION:-bf16}
        train.fit_sampling_prior=false train.progress_bar=false"
NO_DROPOUT="model.decoder_dropout=0.0 model.embedding_dropout=0.0"
# p5: twice the width, a 128-d latent, moderate dropout, and the demo recipe's near-autoencoder objective (beta 0.03
# above 1 free nat per dimension): p3 (no dropout) overfit (train rec ~55 against valid ~84), the `ae` row
# (dropout 0.5) underfit
P5="model.encoder_hidden_size=512 model.decoder_hidden_size=512 model.latent_size=128
    model.encoder_bidirectional=true model.decoder_dropout=0.3 model.embedding_dropout=0.3
    train.kl_start_weight=0.0 train.kl_max_weight=0.03 train.free_bits=1.0"
# p7: p5 with the bag-of-words loss (Zhao et al. 2017): z must predict every word of the sentence, unordered
P7="$P5 model.bag_of_words_weight=1.0"
# p12: p7 with PyTorch's default initialisation (configs/ptb_homotopy.yaml)
P12="$P7 model.weight_init_range=0.0 model.embedding_init_range=0.0"
# p21: p12 with a 512-d z and AdamW's weight decay 0.1; p24: p21 with a 16-epoch LR cool-down at STEPS 47340;
# p26 (configs/ptb_homotopy.yaml): p21 with 30 constant-LR epochs and the same cool-down at STEPS 60490
P21="$P12 model.latent_size=512 train.optimizer=adamw train.weight_decay=0.1"
P24="$P21 train.lr_cooldown=0.4444"
declare -A PROBES=(
  [p1_adam]=""
  [p2_nodrop]="$NO_DROPOUT"
  [p3_lat64_bi]="$NO_DROPOUT model.latent_size=64 model.encoder_bidirectional=true"
  [p4_lat64_bi_drop]="model.decoder_dropout=0.3 model.embedding_dropout=0.3 model.latent_size=64 model.encoder_bidirectional=true"
  [p5_512_lat128]="$P5"
  # p5 with half the decoder's input words replaced by <unk> (Bowman et al. 2016's word dropout): the decoder can
  # no longer lean on the previous words, so what it needs of a sentence has to come through z
  [p6_word_dropout]="$P5 train.word_dropout=0.5"
  [p7_bag_of_words]="$P7"
  # p7 with the bag-of-words head's scores of z added to the decoder's vocabulary scores at every step
  # (model.bag_of_words_bias, as TopicRNN's topic bias, Dieng et al. 2017): z says which words, the LSTM their order
  [p8_bow_bias]="$P7 model.bag_of_words_bias=true"
  # p7 with the bag-of-words loss weighted 4 instead of 1: the loss that moved reconstruction most, pushed harder,
  # so the encoder is made to put the sentence's words into z sooner
  [p9_bow4]="$P5 model.bag_of_words_weight=4.0"
  # p7 with the encoder's states pooled over every position (model.lstm_encoder_pooling) instead of its final
  # states: p9's bag-of-words loss hardly fell with 4 times the weight, as if the final states could not say which
  # words the middle of a sentence held; a mean (p10) or max (p11, Conneau et al. 2017) of the states can
  [p10_mean_pool]="$P7 model.lstm_encoder_pooling=mean"
  [p11_max_pool]="$P7 model.lstm_encoder_pooling=max"
  # p7 with PyTorch's default initialisation instead of the published code's U(+-0.01) weights and U(+-0.1)
  # embeddings, which were chosen for an SGD language model: with weights that small the encoder's states start
  # nearly equal for every sentence, and Adam may take long to make z say anything
  [p12_default_init]="$P12"
  # p12 with dropout 0.3 on the encoder's input embeddings too: from epoch 4 on, p12's validation reconstruction
  # loss fell ever slower (76.1, 72.9, 70.5 nats) while its training loss ran ~10 nats below it. The encoder is the
  # one part without any dropout, and codes that generalise to unseen sentences are what reconstruction needs
  [p13_encoder_dropout]="$P12 model.encoder_embedding_dropout=0.3"
  # p12 with a 512-d z instead of 128: after 9 epochs p12 reconstructs its own training sentences at greedy BLEU 34
  # (test 16), so it underfits as well as overfits; a wider code needs less precision per dimension for the same
  # nats, as the deterministic autoencoders that reconstruct well use their whole hidden state as the code
  [p14_latent512]="$P12 model.latent_size=512"
  # p15-p19 ask what narrows p12's gap between seen and unseen sentences (train rec 34 against test 66 nats after 9
  # epochs): codes made noisier by a larger KL weight above the free nats (p15 beta 0.1, p16 0.3; p12: 0.03, which
  # leaves its posteriors nearly points), stronger dropout (p17), weight decay (p18, AdamW), or a wider model held
  # back by dropout 0.5 (p19, as the larger PTB language models of Zaremba et al. 2014)
  [p15_beta01]="$P12 train.kl_max_weight=0.1"
  [p16_beta03]="$P12 train.kl_max_weight=0.3"
  [p17_dropout05]="$P12 model.decoder_dropout=0.5 model.embedding_dropout=0.5"
  [p18_weight_decay]="$P12 train.optimizer=adamw train.weight_decay=0.1"
  [p19_wide1024]="$P12 model.latent_size=512 model.encoder_hidden_size=1024 model.decoder_hidden_size=1024
    model.decoder_dropout=0.5 model.embedding_dropout=0.5"
  # p18's weight decay, the one change of p15-p19 whose validation reconstruction kept falling ~2 nats an epoch
  # after 7 (on a GPU, benchmarks/ptb_homotopy_probes_gpu.sh), stronger (p20, 0.3) and with p14's 512-d z (p21)
  # or p19's LSTMs of 1024 (p22)
  [p20_weight_decay03]="$P12 train.optimizer=adamw train.weight_decay=0.3"
  [p21_latent512_wd]="$P21"
  [p22_wide1024_wd]="$P12 model.latent_size=512 model.encoder_hidden_size=1024 model.decoder_hidden_size=1024
    model.decoder_dropout=0.5 model.embedding_dropout=0.5 train.optimizer=adamw train.weight_decay=0.1"
  # p21 whose LR falls linearly to 0 over the last 28.57% of STEPS (train.lr_cooldown): after 20 epochs p21's
  # validation reconstruction still fell 0.5-1 nat an epoch, too slowly for its plateau rule ever to halve the LR.
  # Meant to start from a copy of p21's 20-epoch run dir (cp -r runs/probes/p21_latent512_wd
  # runs/probes/p23_p21_cooldown) with STEPS = 36820: the LR then falls from 0.001 to 0 over epochs 21-28
  [p23_p21_cooldown]="$P21 train.lr_cooldown=0.2857"
  # p23 with twice the cool-down: from a copy of p21's 20-epoch run dir with STEPS = 47340, the LR falls from 0.001
  # to 0 over epochs 21-36 (p23's validation reconstruction still fell 0.5-1.5 nats an epoch at its end)
  [p24_p21_long_cooldown]="$P24"
  # p23 trained on with a second cool-down (a warm restart, Loshchilov & Hutter 2017): from a copy of p23's 28-epoch
  # run dir with STEPS = 52600, the LR jumps to 0.0005 and falls linearly to 0 over epochs 29-40
  [p25_p23_second_cooldown]="$P21 train.lr=0.0005 train.lr_cooldown=0.3"
  # p24's 16-epoch cool-down after a longer constant-LR phase: from a copy of p21's 20-epoch run dir with STEPS = 60490
  # (46 epochs), the LR stays at 0.001 to epoch 30 and falls linearly to 0 over epochs 31-46
  [p26_p21_30_long_cooldown]="$P21 train.lr_cooldown=0.3478"
  # p24 with dropout 0.5 in and out (p24 ends at a training reconstruction of ~15 nats, with dropout on, against 36.4
  # on validation: it overfits), from scratch with STEPS = 47340 (p24's schedule)
  [p27_p24_dropout05]="$P24 model.decoder_dropout=0.5 model.embedding_dropout=0.5"
)
NAMES=("$@"); [ ${#NAMES[@]} -gt 0 ] || NAMES=(p1_adam p2_nodrop p3_lat64_bi p4_lat64_bi_drop)
if [ -n "${DRY_RUN:-}" ]; then
  for name in "${NAMES[@]}"; do echo "$name:" $COMMON ${PROBES[$name]}; done
  exit 0
fi
mkdir -p "$OUT"
for name in "${NAMES[@]}"; do
  sets=(); for kv in $COMMON ${PROBES[$name]}; do sets+=(--set "$kv"); done
  echo "== $name to step $STEPS: "${PROBES[$name]} >> "$OUT/log.txt"
  if [ -f "$OUT/$name/checkpoint.pt" ]; then start=(--resume); else start=(--config benchmarks/ptb_homotopy_probe_base.yaml); fi
  OMP_NUM_THREADS=1 taskset -c "$CORE" textvae train "${start[@]}" --out "$OUT/$name" --quiet \
    "${sets[@]}" >> "$OUT/$name.train.txt" 2>&1
  OMP_NUM_THREADS=1 taskset -c "$CORE" textvae evaluate "$OUT/$name" --split test --iw-samples 0 --samples 0 2>&1 \
    | grep -E "^(rec|kl|bleu|exact_match|mi|au|neg_elbo) " | tr '\n' ' ' >> "$OUT/log.txt"
  echo >> "$OUT/log.txt"
done
