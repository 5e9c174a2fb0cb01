// The output layer's softmax passes on CPU, fused, in the scores' own dtype (fp32 or bf16; which products textvae
// uses them for: cpu_kernels.KERNEL_DTYPES), the arithmetic in fp32. The
// forward reads each score once, adds its bias, exponentiates, sums each column and (in training) writes the
// exponential over the score; the backward reads and writes each once more, scaling instead of exponentiating.
//
// Scores are vocabulary-major, (vocab, rows), row-major: each of the `rows` columns is one token's softmax.
// Written with GCC/Clang vector extensions (one register of floats), which compile to AVX-512, AVX2 or NEON as the
// machine has them; built and loaded by textvae/modeling/cpu_kernels.py.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>  // _mm512_cvtneps_pbh
#endif

namespace {

// one vector register of floats: 16 with AVX-512, else 8 (AVX2, NEON pairs); wider vectors than the machine has
// are split by the compiler, and on AVX2 that split code ran several times slower
#if defined(__AVX512F__)
constexpr int64_t kWidth = 16;
#else
constexpr int64_t kWidth = 8;
#endif
constexpr int64_t kGrain = 64;  // vocabulary rows per parallel task
typedef float Floats __attribute__((vector_size(kWidth * 4)));
typedef uint32_t Bits __attribute__((vector_size(kWidth * 4)));
typedef int32_t Ints __attribute__((vector_size(kWidth * 4)));
typedef uint16_t Halves __attribute__((vector_size(kWidth * 2)));

inline Floats splat(float value) { return Floats{} + value; }

inline Floats load(const float* from) { Floats v; std::memcpy(&v, from, sizeof v); return v; }
inline Floats load(const uint16_t* from) {  // bf16 → fp32: the 16 bits are fp32's upper half
  Halves h; std::memcpy(&h, from, sizeof h);
  return (Floats)(__builtin_convertvector(h, Bits) << 16);
}
inline void store(float* to, Floats v) { std::memcpy(to, &v, sizeof v); }
inline void store(uint16_t* to, Floats v) {  // fp32 → bf16, rounding to nearest even as torch does
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  // one instruction (vcvtneps2bf16); unlike torch's conversion it flushes denormals, below 1.2e-38, to zero
  __m256bh h = _mm512_cvtneps_pbh((__m512)v);
  std::memcpy(to, &h, sizeof h);
#else
  Bits u = (Bits)v;
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  Halves h = __builtin_convertvector(u, Halves);
  std::memcpy(to, &h, sizeof h);
#endif
}
inline void store_one(float* to, float value) { *to = value; }
inline void store_one(uint16_t* to, float value) {
  uint32_t u; std::memcpy(&u, &value, 4);
  *to = uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// exp in fp32 (within about 2 ulp): 2^n · exp(r), n = round(x / ln 2), |r| <= ln 2 / 2, exp(r) by its Taylor
// series to r^7. Above 88 it returns inf and below -87 zero, which the caller treats as a column to rescore; NaN
// stays NaN (through r). Out of that range 2^n is not a float, so the last two selects replace whatever came out.
inline Floats exp_of(Floats x) {
  const float round_up = 12582912.0f;  // 1.5 · 2^23: adding then subtracting it rounds to an integer
  Floats n = (x * 1.4426950408889634f + round_up) - round_up;
  Floats r = x - n * 0.693145751953125f;  // ln 2 in two parts, so r keeps its low bits
  r = r - n * 1.428606765330187e-06f;
  Floats p = splat(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  Floats power = (Floats)((__builtin_convertvector(n, Ints) + 127) << 23);
  Floats y = p * power;
  y = x > 88.0f ? splat(__builtin_inff()) : y;
  return x < -87.0f ? splat(0.0f) : y;
}

// f(pointer, first column, columns) over one row in blocks of kWidth; the last, short block goes through a
// zero-padded copy (f must leave the padding's contribution out), copied back unless the row is read-only.
template <typename T, typename F>
inline void for_each_block(T* row, int64_t columns, F f) {
  int64_t column = 0;
  for (; column + kWidth <= columns; column += kWidth) f(row + column, column, kWidth);
  if (column < columns) {
    std::remove_const_t<T> padded[kWidth] = {};
    std::memcpy(padded, row + column, (columns - column) * sizeof(T));
    f(padded, column, columns - column);
    if constexpr (!std::is_const_v<T>) std::memcpy(row + column, padded, (columns - column) * sizeof(T));
  }
}

inline Floats first(int64_t count) {  // 1 in the first `count` lanes, 0 after
  Floats mask = {};
  for (int64_t lane = 0; lane < count; ++lane) mask[lane] = 1.0f;
  return mask;
}

int64_t padded(int64_t columns) { return (columns + kWidth - 1) / kWidth * kWidth; }

// T is const for a read-only pass; otherwise each exponential, rounded to T, is written over its score
template <typename T>
void exp_column_sums(T* scores, const float* bias, int64_t vocab, int64_t columns, float* sums) {
  const int threads = at::get_num_threads();
  std::vector<float> partial(size_t(threads) * padded(columns), 0.0f);
  at::parallel_for(0, vocab, kGrain, [&](int64_t begin, int64_t end) {
    float* sum = partial.data() + size_t(at::get_thread_num()) * padded(columns);
    for (int64_t word = begin; word < end; ++word) {
      const Floats word_bias = splat(bias ? bias[word] : 0.0f);
      for_each_block(scores + word * columns, columns, [&](T* block, int64_t column, int64_t count) {
        Floats e = exp_of(load(block) + word_bias);
        if (count < kWidth) e *= first(count);
        if constexpr (!std::is_const_v<T>) store(block, e);
        store(sum + column, load(sum + column) + e);
      });
    }
  });
  for (int64_t column = 0; column < columns; ++column) {  // in thread order: the same sums on every run
    float total = 0.0f;
    for (int thread = 0; thread < threads; ++thread) total += partial[size_t(thread) * padded(columns) + column];
    sums[column] = total;
  }
}

template <typename T>
void gradient_from_exps(T* exps, int64_t vocab, int64_t columns, const float* shift, const float* scale,
                        const int32_t* targets, const float* target_scores, const float* upstream, float* bias_grad) {
  std::vector<float> scale_padded(padded(columns), 0.0f);
  std::memcpy(scale_padded.data(), scale, columns * sizeof(float));
  at::parallel_for(0, vocab, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t word = begin; word < end; ++word) {
      Floats row_sum = {};
      for_each_block(exps + word * columns, columns, [&](T* block, int64_t column, int64_t count) {
        Floats g = load(block) * load(scale_padded.data() + column);
        if (count < kWidth) g *= first(count);
        store(block, g);
        row_sum += g;
      });
      if (bias_grad) {
        float total = 0.0f;
        for (int64_t lane = 0; lane < kWidth; ++lane) total += row_sum[lane];
        bias_grad[word] = total;
      }
    }
  });
  // the one-hot part, −upstream at each column's target: from the exact score, so the value is rounded once
  for (int64_t column = 0; column < columns; ++column) {
    const int64_t word = targets[column];
    const float value = std::exp(target_scores[column] - shift[column]) * scale[column] - upstream[column];
    store_one(exps + word * columns + column, value);
    if (bias_grad) bias_grad[word] -= upstream[column];
  }
}

void check_scores(const torch::Tensor& scores) {
  TORCH_CHECK(scores.device().is_cpu() && scores.dim() == 2 && scores.is_contiguous(),
              "scores must be a contiguous 2-d CPU tensor");
  TORCH_CHECK(scores.scalar_type() == torch::kFloat || scores.scalar_type() == torch::kBFloat16,
              "scores must be float32 or bfloat16");
}

float* float_data(const torch::Tensor& tensor, int64_t size) {
  TORCH_CHECK(tensor.scalar_type() == torch::kFloat && tensor.is_contiguous() && tensor.numel() == size,
              "expected a contiguous float32 tensor of ", size, " elements");
  return tensor.data_ptr<float>();
}

}  // namespace

namespace {

// exp_column_sums over `scores` in their dtype, read-only or (kWrite) writing the exponentials over them
template <bool kWrite>
torch::Tensor dispatch_exp_column_sums(const torch::Tensor& scores, const torch::Tensor& bias) {
  check_scores(scores);
  const int64_t vocab = scores.size(0), columns = scores.size(1);
  const float* bias_data = bias.numel() ? float_data(bias, vocab) : nullptr;
  torch::Tensor sums = torch::empty({columns}, scores.options().dtype(torch::kFloat));
  using Half = std::conditional_t<kWrite, uint16_t, const uint16_t>;
  using Float = std::conditional_t<kWrite, float, const float>;
  if (scores.scalar_type() == torch::kBFloat16)
    exp_column_sums(reinterpret_cast<Half*>(scores.data_ptr()), bias_data, vocab, columns, sums.data_ptr<float>());
  else
    exp_column_sums(static_cast<Float*>(scores.data_ptr<float>()), bias_data, vocab, columns,
                    sums.data_ptr<float>());
  return sums;
}

}  // namespace

// Σ_v exp(scores[v, c] + bias[v]) for every column c, in fp32 (`bias`: vocab floats, or empty for none; no
// shift: the caller rescores a column that overflowed). The bias joins here rather than in the product, which
// would write it over the whole matrix before multiplying. `scores` are left as they are (evaluation).
torch::Tensor column_exp_sums(const torch::Tensor& scores, const torch::Tensor& bias) {
  return dispatch_exp_column_sums<false>(scores, bias);
}

// column_exp_sums that also writes each exp(scores + bias) over its score, rounded to the scores' dtype (training:
// the backward scales them instead of exponentiating again).
torch::Tensor exp_column_sums_(torch::Tensor& scores, const torch::Tensor& bias) {
  return dispatch_exp_column_sums<true>(scores, bias);
}

// Overwrites `exps` (exp(scores + bias − shift) per column, as exp_column_sums_ left them) with the gradient of
// Σ_c upstream[c] · (−log softmax(scores[:, c] + bias)[targets[c]]): exps · scale − upstream · one_hot(targets),
// where scale = upstream / Σ exps and target_scores = scores[target] + bias[target] in fp32 (the target's entry
// comes from it, not from the rounded exponential). `bias_grad` (vocab floats, or empty) receives the gradient's
// row sums, taken in fp32 before rounding.
void softmax_gradient_(torch::Tensor& exps, const torch::Tensor& shift, const torch::Tensor& scale,
                       const torch::Tensor& targets, const torch::Tensor& target_scores,
                       const torch::Tensor& upstream, torch::Tensor& bias_grad) {
  check_scores(exps);
  const int64_t vocab = exps.size(0), columns = exps.size(1);
  TORCH_CHECK(targets.scalar_type() == torch::kInt && targets.is_contiguous() && targets.numel() == columns,
              "targets must be a contiguous int32 tensor with one entry per column");
  float* bias_sums = bias_grad.numel() ? float_data(bias_grad, vocab) : nullptr;
  const float *shift_data = float_data(shift, columns), *scale_data = float_data(scale, columns),
              *target_data = float_data(target_scores, columns), *upstream_data = float_data(upstream, columns);
  const int32_t* target_words = targets.data_ptr<int32_t>();
  for (int64_t column = 0; column < columns; ++column)
    TORCH_CHECK(target_words[column] >= 0 && target_words[column] < vocab, "target ", target_words[column],
                " is outside the vocabulary of ", vocab);
  if (exps.scalar_type() == torch::kBFloat16)
    gradient_from_exps(reinterpret_cast<uint16_t*>(exps.data_ptr()), vocab, columns, shift_data, scale_data,
                       target_words, target_data, upstream_data, bias_sums);
  else
    gradient_from_exps(exps.data_ptr<float>(), vocab, columns, shift_data, scale_data, target_words, target_data,
                       upstream_data, bias_sums);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("column_exp_sums", &column_exp_sums, "Σ exp over each column of (vocab, rows) scores, in fp32");
  module.def("exp_column_sums_", &exp_column_sums_, "column_exp_sums, writing the exponentials over the scores");
  module.def("softmax_gradient_", &softmax_gradient_, "the softmax cross-entropy gradient, over the exponentials");
}
