// The filter gradient of a stride-1 NHWC convolution on CPU, for
// avjax/models/native.py:
//
//   dw[ty, tx, c, f] = sum over n, y, x of xp[n, y + ty, x + tx, c] * g[n, y, x, f]
//
// with xp the padded input [N, H + kh - 1, W + kw - 1, C], g the output
// gradient [N, H, W, F] and dw [kh, kw, C, F]. XLA:CPU runs this contraction
// (as its window-sized convolution, or as one dot per tap over a long
// contraction) at 20-75 GFLOP/s on 56x56 maps and up; this loop nest reads each
// cache-resident slice of g once for every tap and channel block, as the GEMM
// micro-kernels of oneDNN and BLAS do. Needs C % 8 == 0 and F % 32 == 0.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "native_kernels.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// 16 floats: one AVX-512 register, or two AVX2 ones where -march gives no
// AVX-512 (GCC's vector extensions lower to what the target has).
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

static inline v16 load(const float* p) { return *reinterpret_cast<const v16u*>(p); }
static inline void store(float* p, v16 v) { *reinterpret_cast<v16u*>(p) = v; }

// The micro-kernel's tile: kMr input channels by kNr = 16 kNv output features,
// 16 accumulator registers. Of the tiles tried on Zen 4 (4x64, 8x32, 16x16)
// 8x32 ran fastest: per pixel, two vector loads and eight broadcasts from one
// cache line feed sixteen FMAs.
constexpr int kMr = 8, kNv = 2, kNr = 16 * kNv;
// Pixels per chunk of output rows. A chunk's kNr-column slice of g (32 KB at
// 256 pixels) and its input rows stay in cache while every kMr-channel block
// of a tap passes over them (64-1024 tried; 256-512 ran fastest).
constexpr int64_t kChunkPixels = 256;

// acc[0:kMr, 0:kNr] (rows `ldacc` apart) += the sum over rows r < `rows` and
// pixels k < w of a_rows[r][k * lda + (0:kMr)]^T b_rows[r][k * ldb + (0:kNr)].
// The sum of a chunk is formed in registers and then added to acc, which keeps
// float32 rounding to sums of chunk totals.
static inline void kernel_tile(const float* const* a_rows, int64_t a_off,
                               const float* const* b_rows, int64_t b_off, int64_t rows,
                               int64_t w, int64_t lda, int64_t ldb, float* acc, int64_t ldacc) {
  v16 s[kMr][kNv] = {};
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = a_rows[r] + a_off;
    const float* b = b_rows[r] + b_off;
    for (int64_t k = 0; k < w; ++k) {
      const float* bk = b + k * ldb;
      v16 bv[kNv];
      for (int j = 0; j < kNv; ++j) bv[j] = load(bk + 16 * j);
      const float* ak = a + k * lda;
      for (int i = 0; i < kMr; ++i) {
        const v16 ai = (v16){} + ak[i];
        for (int j = 0; j < kNv; ++j) s[i][j] += ai * bv[j];
      }
    }
  }
  for (int i = 0; i < kMr; ++i)
    for (int j = 0; j < kNv; ++j) {
      float* p = acc + i * ldacc + 16 * j;
      store(p, load(p) + s[i][j]);
    }
}

// Adds output rows [row0, row1) (row = n * H + y) of features [f0, f1) into
// acc [kh, kw, C, ld] (feature f at column f - f0), a chunk of rows at a time.
static void rows_into(const float* xp, const float* g, int64_t H, int64_t W, int64_t C,
                      int64_t F, int64_t kh, int64_t kw, int64_t row0, int64_t row1,
                      int64_t f0, int64_t f1, float* acc, int64_t ld) {
  const int64_t Wp = W + kw - 1, Hp = H + kh - 1;
  const int64_t chunk = std::max<int64_t>(1, (kChunkPixels + W / 2) / W);
  std::vector<const float*> a_rows(chunk), b_rows(chunk);
  for (int64_t r0 = row0; r0 < row1; r0 += chunk) {
    const int64_t rows = std::min(chunk, row1 - r0);
    for (int64_t i = 0; i < rows; ++i) b_rows[i] = g + (r0 + i) * W * F;
    for (int64_t ty = 0; ty < kh; ++ty)
      for (int64_t tx = 0; tx < kw; ++tx) {
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t n = (r0 + i) / H, y = (r0 + i) % H;
          a_rows[i] = xp + ((n * Hp + y + ty) * Wp + tx) * C;
        }
        float* tap = acc + (ty * kw + tx) * C * ld;
        for (int64_t f = f0; f < f1; f += kNr)
          for (int64_t c0 = 0; c0 < C; c0 += kMr)
            kernel_tile(a_rows.data(), c0, b_rows.data(), f, rows, W, C, F,
                        tap + c0 * ld + (f - f0), ld);
      }
  }
}

static ffi::Error FilterGradImpl(ffi::Buffer<ffi::F32> xp, ffi::Buffer<ffi::F32> g,
                                 ffi::ResultBuffer<ffi::F32> dw, int64_t threads,
                                 ffi::ThreadPool pool) {
  const auto xd = xp.dimensions(), gd = g.dimensions(), wd = dw->dimensions();
  if (xd.size() != 4 || gd.size() != 4 || wd.size() != 4)
    return ffi::Error::InvalidArgument("avjax_filter_grad: operands must have rank 4");
  const int64_t N = gd[0], H = gd[1], W = gd[2], F = gd[3], C = xd[3];
  const int64_t kh = wd[0], kw = wd[1];
  if (C % kMr || F % kNr || xd[0] != N || xd[1] != H + kh - 1 || xd[2] != W + kw - 1 ||
      wd[2] != C || wd[3] != F)
    return ffi::Error::InvalidArgument(
        "avjax_filter_grad: shapes must be xp [N, H+kh-1, W+kw-1, C], g [N, H, W, F], "
        "dw [kh, kw, C, F] with C % 8 == 0 and F % 32 == 0");
  const int64_t rows = N * H, blocks = F / kNr;
  // `threads` jobs (run on XLA's pool): the rows split into up to kRowGroups
  // groups (on 2 cores splitting rows ran up to 15% faster than splitting
  // features), then the features (disjoint parts of dw). A job past the first
  // row group sums into a buffer of its own features, added at the end:
  // buffers stay within kRowGroups - 1 copies of dw however many cores there are.
  constexpr int64_t kRowGroups = 4;
  const int64_t T = std::max<int64_t>(1, threads);
  const int64_t tr = std::max<int64_t>(1, std::min({T, kRowGroups, rows}));
  const int64_t tf = std::max<int64_t>(1, std::min(blocks, T / tr));
  float* out = dw->typed_data();
  std::memset(out, 0, kh * kw * C * F * sizeof(float));
  // One job per (feature range, row group); the first row group of a range
  // writes into dw, the others into buffers of the range's width.
  struct Job { int64_t r0, r1, f0, f1; std::vector<float> buffer; };
  std::vector<Job> jobs;
  for (int64_t i = 0; i < tf; ++i)
    for (int64_t j = 0; j < tr; ++j) {
      const int64_t f0 = blocks * i / tf * kNr, f1 = blocks * (i + 1) / tf * kNr;
      jobs.push_back({rows * j / tr, rows * (j + 1) / tr, f0, f1,
                      std::vector<float>(j == 0 ? 0 : kh * kw * C * (f1 - f0), 0.f)});
    }
  avjax::parallel_for(pool, static_cast<int64_t>(jobs.size()), [&](int64_t k) {
    Job& job = jobs[k];
    const bool direct = job.buffer.empty();
    rows_into(xp.typed_data(), g.typed_data(), H, W, C, F, kh, kw, job.r0, job.r1, job.f0,
              job.f1, direct ? out + job.f0 : job.buffer.data(), direct ? F : job.f1 - job.f0);
  });
  for (const auto& job : jobs) {
    if (job.buffer.empty()) continue;
    const int64_t width = job.f1 - job.f0;
    for (int64_t k = 0; k < kh * kw * C; ++k)
      for (int64_t f = 0; f < width; ++f) out[k * F + job.f0 + f] += job.buffer[k * width + f];
  }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(AvjaxFilterGrad, FilterGradImpl, avjax::kernel_binding());
