// A stride-1 NHWC convolution on CPU, for avjax/models/native.py:
//
//   y[n, oy, ox, f] = sum over ty, tx, c of xp[n, oy + ty, ox + tx, c] * w[ty, tx, c, f]
//
// with xp the padded input [N, H + kh - 1, W + kw - 1, C], w [kh, kw, C, F] and
// y [N, H, W, F]. XLA:CPU (YNNPACK) runs convolutions of 128 channels into 64
// features, the input gradient of AVE-Net's 64-to-128 layers, at about 100
// GFLOP/s where it runs its other layers at 150-200; this loop nest runs them at
// 160-185 (conv.NATIVE_FORWARD_PAIRS). Needs F % 32 == 0.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "native_kernels.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

inline v16 load(const float* p) { return *reinterpret_cast<const v16u*>(p); }
inline void store(float* p, v16 v) { *reinterpret_cast<v16u*>(p) = v; }

// The micro-kernel's tile: kP pixels of one output row by 32 features, 24
// accumulator registers fed by two weight vectors and one broadcast per pixel.
// 12 and 14 pixels ran alike.
constexpr int kP = 12, kNr = 32;
// Packed weights up to this size stay in L2 while a row's feature blocks run
// in turn (each input row read once); larger ones run block by block over all
// rows, so the weights of one block stay in cache instead.
constexpr int64_t kInnerBlockBytes = 1 << 20;

// y[p * ldy + (0:32)] = sum over taps t < `taps`, channels c < C of
// x[t][p * C + c] * w[(t * C + c) * 32 + (0:32)], for p < P.
template <int P>
void tile(const float* const* x, const float* w, int64_t taps, int64_t C, float* y,
          int64_t ldy) {
  v16 s[P][2] = {};
  for (int64_t t = 0; t < taps; ++t) {
    const float* xt = x[t];
    const float* wt = w + t * C * kNr;
    for (int64_t c = 0; c < C; ++c) {
      const v16 w0 = load(wt + c * kNr), w1 = load(wt + c * kNr + 16);
      for (int p = 0; p < P; ++p) {
        const v16 a = (v16){} + xt[p * C + c];
        s[p][0] += a * w0;
        s[p][1] += a * w1;
      }
    }
  }
  for (int p = 0; p < P; ++p) {
    store(y + p * ldy, s[p][0]);
    store(y + p * ldy + 16, s[p][1]);
  }
}

// tile<n> for a row's last n < kP pixels.
template <int P>
void short_tile(int n, const float* const* x, const float* w, int64_t taps, int64_t C,
                float* y, int64_t ldy) {
  if constexpr (P > 0) {
    if (n == P) return tile<P>(x, w, taps, C, y, ldy);
    short_tile<P - 1>(n, x, w, taps, C, y, ldy);
  }
}

struct Shape { int64_t H, W, C, F, kh, kw; };

// Output rows [r0, r1) (row = n * H + oy) of feature block fb.
void rows_block(const float* xp, const float* packed, float* y, const Shape& s, int64_t r0,
                int64_t r1, int64_t fb) {
  const int64_t Wp = s.W + s.kw - 1, Hp = s.H + s.kh - 1, taps = s.kh * s.kw;
  const float* w = packed + fb * taps * s.C * kNr;
  std::vector<const float*> x(taps);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / s.H, oy = r % s.H;
    for (int64_t ox = 0; ox < s.W; ox += kP) {
      for (int64_t ty = 0; ty < s.kh; ++ty)
        for (int64_t tx = 0; tx < s.kw; ++tx)
          x[ty * s.kw + tx] = xp + ((n * Hp + oy + ty) * Wp + ox + tx) * s.C;
      float* out = y + (r * s.W + ox) * s.F + fb * kNr;
      const int n_px = static_cast<int>(std::min<int64_t>(kP, s.W - ox));
      if (n_px == kP) tile<kP>(x.data(), w, taps, s.C, out, s.F);
      else short_tile<kP - 1>(n_px, x.data(), w, taps, s.C, out, s.F);
    }
  }
}

ffi::Error ConvForwardImpl(ffi::Buffer<ffi::F32> xp, ffi::Buffer<ffi::F32> w,
                           ffi::ResultBuffer<ffi::F32> y, int64_t threads,
                           ffi::ThreadPool pool) {
  const auto xd = xp.dimensions(), wd = w.dimensions(), yd = y->dimensions();
  if (xd.size() != 4 || wd.size() != 4 || yd.size() != 4)
    return ffi::Error::InvalidArgument("avjax_conv_forward: operands must have rank 4");
  const Shape s{yd[1], yd[2], xd[3], yd[3], wd[0], wd[1]};
  if (s.F % kNr || xd[0] != yd[0] || xd[1] != s.H + s.kh - 1 || xd[2] != s.W + s.kw - 1 ||
      wd[2] != s.C || wd[3] != s.F)
    return ffi::Error::InvalidArgument(
        "avjax_conv_forward: shapes must be xp [N, H+kh-1, W+kw-1, C], w [kh, kw, C, F], "
        "y [N, H, W, F] with F % 32 == 0");
  const int64_t taps = s.kh * s.kw, blocks = s.F / kNr, rows = yd[0] * s.H;
  // w [kh, kw, C, F] as [F / 32][kh * kw][C][32]: one contiguous stream per block.
  std::vector<float> packed(taps * s.C * s.F);
  for (int64_t fb = 0; fb < blocks; ++fb)
    for (int64_t k = 0; k < taps * s.C; ++k)
      std::memcpy(&packed[(fb * taps * s.C + k) * kNr], w.typed_data() + k * s.F + fb * kNr,
                  kNr * sizeof(float));
  const bool blocks_inner = static_cast<int64_t>(packed.size() * sizeof(float)) <= kInnerBlockBytes;
  // `threads` jobs (run on XLA's pool) of disjoint ranges of output rows.
  const int64_t T = std::max<int64_t>(1, std::min(threads, rows));
  avjax::parallel_for(pool, T, [&](int64_t i) {
    const int64_t r0 = rows * i / T, r1 = rows * (i + 1) / T;
    if (blocks_inner) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t fb = 0; fb < blocks; ++fb)
          rows_block(xp.typed_data(), packed.data(), y->typed_data(), s, r, r + 1, fb);
    } else {
      for (int64_t fb = 0; fb < blocks; ++fb)
        rows_block(xp.typed_data(), packed.data(), y->typed_data(), s, r0, r1, fb);
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(AvjaxConvForward, ConvForwardImpl, avjax::kernel_binding());
