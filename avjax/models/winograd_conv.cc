// A 3x3, stride-1, pad-1 NHWC/HWIO float32 convolution by Winograd's minimal
// filtering F(2x2, 3x3) (Lavin & Gray 2016), as an XLA FFI custom call built
// into onednn.py's library: 16 multiplies per 2x2 output tile where a direct
// convolution does 36, the products as one batched matmul of oneDNN's.
//
//   Y = A^T [(G g G^T) . (B^T d B)] A, per 4x4 input tile d and channel pair.
//
// Steps: the kernel's transform U [16][C][F]; the input's tiles' transform
// V [16][T][C] (T tiles of 2x2 outputs); M [16][T][F] = V U (oneDNN matmul,
// batch 16); the output transform of M's tiles into y. The transforms are
// adds over 4x4 tiles, vectorised along the channels (NHWC keeps them
// contiguous); they touch each tile once and run on OpenMP threads.
//
// With `flip` set the call computes the input gradient of such a convolution
// from the output gradient: the same convolution with the kernel flipped in
// space and its channels and features swapped, which the kernel transform
// reads in place.
#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Matmul {
  dnnl::matmul primitive;
  memory::desc src, weights, dst, plain_weights, flipped_weights, scratch;
};

// The batch-16 matmul [16, T, K] x [16, K, N] -> [16, T, N], its weights in
// the layout the primitive chooses, reordered from [16][K][N] (plain) or
// [16][N][K] (flipped: the forward's U read as the input gradient's).
std::shared_ptr<const Matmul> CachedMatmul(int64_t t, int64_t k, int64_t n) {
  static std::mutex mu;
  static auto* cache = new std::map<std::array<int64_t, 3>, std::shared_ptr<const Matmul>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& entry = (*cache)[{t, k, n}];
  if (!entry) {
    const auto f32 = memory::data_type::f32;
    const memory::desc src({16, t, k}, f32, tag::abc), dst({16, t, n}, f32, tag::abc);
    const memory::desc any({16, k, n}, f32, tag::any);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::matmul::primitive_desc pd(Engine(), src, any, dst, attr);
    entry = std::make_shared<const Matmul>(
        Matmul{dnnl::matmul(pd), src, pd.weights_desc(), dst,
               memory::desc({16, k, n}, f32, tag::abc), memory::desc({16, k, n}, f32, tag::acb),
               pd.scratchpad_desc()});
  }
  return entry;
}

// U[16][C][F] = G g G^T of each (c, f) pair's 3x3 taps g, read from the HWIO
// kernel w [3][3][C][F], flipped in space where `flip` is set (then U read as
// [16][F][C], acb, is the flipped and transposed kernel's transform).
void KernelTransform(const float* w, int64_t c, int64_t f, bool flip, float* u) {
  const int64_t cf = c * f;
#pragma omp parallel for
  for (int64_t ci = 0; ci < c; ++ci) {
    const float* g[3][3];
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b)
        g[a][b] = w + (flip ? (2 - a) * 3 + (2 - b) : a * 3 + b) * cf + ci * f;
    float* out = u + ci * f;
#pragma omp simd
    for (int64_t fi = 0; fi < f; ++fi) {
      float r[4][3];  // G g
      for (int b = 0; b < 3; ++b) {
        const float g0 = g[0][b][fi], g1 = g[1][b][fi], g2 = g[2][b][fi];
        r[0][b] = g0;
        r[1][b] = 0.5f * (g0 + g1 + g2);
        r[2][b] = 0.5f * (g0 - g1 + g2);
        r[3][b] = g2;
      }
      for (int i = 0; i < 4; ++i) {  // (G g) G^T
        const float r0 = r[i][0], r1 = r[i][1], r2 = r[i][2];
        out[(i * 4 + 0) * cf + fi] = r0;
        out[(i * 4 + 1) * cf + fi] = 0.5f * (r0 + r1 + r2);
        out[(i * 4 + 2) * cf + fi] = 0.5f * (r0 - r1 + r2);
        out[(i * 4 + 3) * cf + fi] = r2;
      }
    }
  }
}

struct Tiles {
  int64_t n, h, w, th, tw;
  int64_t count() const { return n * th * tw; }
};

// V[16][T][C] = B^T d B of each tile's 4x4 input d (rows 2ty-1..2ty+2, columns
// 2tx-1..2tx+2 of x [N][H][W][C], zero outside: those pixels read `zeros`, C
// of them, so that the channel loop has no branch and vectorises).
void InputTransform(const float* x, const Tiles& s, int64_t c, const float* zeros, float* v) {
  const int64_t plane = s.count() * c;
#pragma omp parallel for
  for (int64_t t = 0; t < s.count(); ++t) {
    const int64_t b = t / (s.th * s.tw), ty = t / s.tw % s.th, tx = t % s.tw;
    const float* row[4][4];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        const int64_t y = 2 * ty - 1 + i, xx = 2 * tx - 1 + j;
        row[i][j] = (y >= 0 && y < s.h && xx >= 0 && xx < s.w)
                        ? x + ((b * s.h + y) * s.w + xx) * c : zeros;
      }
    float* out = v + t * c;
#pragma omp simd
    for (int64_t ci = 0; ci < c; ++ci) {
      float d[4][4];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) d[i][j] = row[i][j][ci];
      float r[4][4];  // B^T d
      for (int j = 0; j < 4; ++j) {
        r[0][j] = d[0][j] - d[2][j];
        r[1][j] = d[1][j] + d[2][j];
        r[2][j] = d[2][j] - d[1][j];
        r[3][j] = d[1][j] - d[3][j];
      }
      for (int i = 0; i < 4; ++i) {  // (B^T d) B
        out[(i * 4 + 0) * plane + ci] = r[i][0] - r[i][2];
        out[(i * 4 + 1) * plane + ci] = r[i][1] + r[i][2];
        out[(i * 4 + 2) * plane + ci] = r[i][2] - r[i][1];
        out[(i * 4 + 3) * plane + ci] = r[i][1] - r[i][3];
      }
    }
  }
}

// y[N][H][W][F] from M[16][T][F]: A^T m A, each tile's 2x2 outputs (those
// inside the map).
void OutputTransform(const float* m, const Tiles& s, int64_t f, float* y) {
  const int64_t plane = s.count() * f;
#pragma omp parallel for
  for (int64_t t = 0; t < s.count(); ++t) {
    const int64_t b = t / (s.th * s.tw), ty = t / s.tw % s.th, tx = t % s.tw;
    float* out[2][2];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) {
        const int64_t yy = 2 * ty + i, xx = 2 * tx + j;
        out[i][j] = (yy < s.h && xx < s.w) ? y + ((b * s.h + yy) * s.w + xx) * f : nullptr;
      }
    const float* in = m + t * f;
    if (out[0][1] && out[1][0]) {  // every tile but those on an odd map's edge
#pragma omp simd
      for (int64_t fi = 0; fi < f; ++fi) {
        float r[2][4];  // A^T m
        for (int j = 0; j < 4; ++j) {
          const float m0 = in[(0 + j) * plane + fi], m1 = in[(4 + j) * plane + fi],
                      m2 = in[(8 + j) * plane + fi], m3 = in[(12 + j) * plane + fi];
          r[0][j] = m0 + m1 + m2;
          r[1][j] = m1 - m2 - m3;
        }
        for (int i = 0; i < 2; ++i) {
          out[i][0][fi] = r[i][0] + r[i][1] + r[i][2];
          out[i][1][fi] = r[i][1] - r[i][2] - r[i][3];
        }
      }
    } else {
      for (int64_t fi = 0; fi < f; ++fi) {
        float r[2][4];
        for (int j = 0; j < 4; ++j) {
          const float m0 = in[(0 + j) * plane + fi], m1 = in[(4 + j) * plane + fi],
                      m2 = in[(8 + j) * plane + fi], m3 = in[(12 + j) * plane + fi];
          r[0][j] = m0 + m1 + m2;
          r[1][j] = m1 - m2 - m3;
        }
        for (int i = 0; i < 2; ++i) {
          if (out[i][0]) out[i][0][fi] = r[i][0] + r[i][1] + r[i][2];
          if (out[i][1]) out[i][1][fi] = r[i][1] - r[i][2] - r[i][3];
        }
      }
    }
  }
}

// Gt[16][T][F] = A dy A^T of each tile's 2x2 output gradient dy (where the
// tile lies outside the map it reads `zeros`, F of them): the adjoint of
// OutputTransform.
void GradTransform(const float* g, const Tiles& s, int64_t f, const float* zeros, float* gt) {
  const int64_t plane = s.count() * f;
#pragma omp parallel for
  for (int64_t t = 0; t < s.count(); ++t) {
    const int64_t b = t / (s.th * s.tw), ty = t / s.tw % s.th, tx = t % s.tw;
    const float* in[2][2];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) {
        const int64_t yy = 2 * ty + i, xx = 2 * tx + j;
        in[i][j] = (yy < s.h && xx < s.w) ? g + ((b * s.h + yy) * s.w + xx) * f : zeros;
      }
    float* out = gt + t * f;
#pragma omp simd
    for (int64_t fi = 0; fi < f; ++fi) {
      float d[2][2];
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) d[i][j] = in[i][j][fi];
      float r[4][2];  // A dy
      for (int j = 0; j < 2; ++j) {
        r[0][j] = d[0][j];
        r[1][j] = d[0][j] + d[1][j];
        r[2][j] = d[0][j] - d[1][j];
        r[3][j] = -d[1][j];
      }
      for (int i = 0; i < 4; ++i) {  // (A dy) A^T
        out[(i * 4 + 0) * plane + fi] = r[i][0];
        out[(i * 4 + 1) * plane + fi] = r[i][0] + r[i][1];
        out[(i * 4 + 2) * plane + fi] = r[i][0] - r[i][1];
        out[(i * 4 + 3) * plane + fi] = -r[i][1];
      }
    }
  }
}

// dw[3][3][C][F] = G^T dU G of each (c, f) pair's 4x4 dU[16][C][F]: the
// adjoint of KernelTransform.
void KernelGradTransform(const float* du, int64_t c, int64_t f, float* dw) {
  const int64_t cf = c * f;
#pragma omp parallel for
  for (int64_t ci = 0; ci < c; ++ci) {
    const float* in = du + ci * f;
    float* out = dw + ci * f;
#pragma omp simd
    for (int64_t fi = 0; fi < f; ++fi) {
      float q[3][4];  // G^T dU
      for (int j = 0; j < 4; ++j) {
        const float u0 = in[(0 + j) * cf + fi], u1 = in[(4 + j) * cf + fi],
                    u2 = in[(8 + j) * cf + fi], u3 = in[(12 + j) * cf + fi];
        q[0][j] = u0 + 0.5f * (u1 + u2);
        q[1][j] = 0.5f * (u1 - u2);
        q[2][j] = 0.5f * (u1 + u2) + u3;
      }
      for (int a = 0; a < 3; ++a) {  // (G^T dU) G
        out[(a * 3 + 0) * cf + fi] = q[a][0] + 0.5f * (q[a][1] + q[a][2]);
        out[(a * 3 + 1) * cf + fi] = 0.5f * (q[a][1] - q[a][2]);
        out[(a * 3 + 2) * cf + fi] = 0.5f * (q[a][1] + q[a][2]) + q[a][3];
      }
    }
  }
}

// The batch-16 matmul dU [16, C, F] = V^T Gt: V [16][T][C] read as [16, C, T]
// (acb), Gt [16, T, F] as it is, so that neither is reordered.
struct GradMatmul {
  dnnl::matmul primitive;
  memory::desc src, weights, dst, scratch;
};

std::shared_ptr<const GradMatmul> CachedGradMatmul(int64_t t, int64_t c, int64_t f) {
  static std::mutex mu;
  static auto* cache =
      new std::map<std::array<int64_t, 3>, std::shared_ptr<const GradMatmul>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& entry = (*cache)[{t, c, f}];
  if (!entry) {
    const auto f32 = memory::data_type::f32;
    const memory::desc src({16, c, t}, f32, tag::acb), weights({16, t, f}, f32, tag::abc),
        dst({16, c, f}, f32, tag::abc);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::matmul::primitive_desc pd(Engine(), src, weights, dst, attr);
    entry = std::make_shared<const GradMatmul>(
        GradMatmul{dnnl::matmul(pd), src, weights, dst, pd.scratchpad_desc()});
  }
  return entry;
}

// The float32 workspace a call takes (XLA allocates it as a second result, so
// that it comes from the program's reused temporaries instead of a fresh
// mapping per call): U (or dU), V and M (or Gt).
int64_t WorkspaceSize(int64_t tiles, int64_t k, int64_t nout, int64_t c, int64_t f) {
  return 16 * c * f + 16 * tiles * k + 16 * tiles * nout;
}

ffi::Error WinogradImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                        ffi::Result<ffi::Buffer<ffi::F32>> y,
                        ffi::Result<ffi::Buffer<ffi::F32>> workspace, int64_t flip) {
  const auto xd = x.dimensions(), wd = w.dimensions(), yd = y->dimensions();
  // x [N, H, W, K] -> y [N, H, W, Nout]; w [3, 3, C, F] with (K, Nout) = (C, F),
  // or (F, C) when flipped.
  const int64_t k = flip ? wd[3] : wd[2], nout = flip ? wd[2] : wd[3];
  if (xd.size() != 4 || wd.size() != 4 || yd.size() != 4 || wd[0] != 3 || wd[1] != 3 ||
      xd[3] != k || yd[3] != nout || xd[0] != yd[0] || xd[1] != yd[1] || xd[2] != yd[2])
    return ffi::Error::InvalidArgument(
        "avjax Winograd convolution: shapes must be x [N, H, W, K], kernel [3, 3, C, F], "
        "y [N, H, W, Nout] with (K, Nout) = (C, F), or (F, C) for the input gradient");
  const Tiles s{xd[0], xd[1], xd[2], (xd[1] + 1) / 2, (xd[2] + 1) / 2};
  const int64_t c = wd[2], f = wd[3], t = s.count();
  if (workspace->element_count() != WorkspaceSize(t, k, nout, c, f))
    return ffi::Error::InvalidArgument("avjax Winograd convolution: wrong workspace size");
  try {
    const auto mm = CachedMatmul(t, k, nout);
    auto& e = Engine();
    dnnl::stream stream(e);
    float* const u = workspace->typed_data();
    float* const v = u + 16 * c * f;
    float* const m = v + 16 * t * k;
    KernelTransform(w.typed_data(), c, f, flip, u);
    memory plain(flip ? mm->flipped_weights : mm->plain_weights, e, u);
    memory blocked = mm->weights == plain.get_desc() ? plain : memory(mm->weights, e);
    if (blocked != plain) dnnl::reorder(plain, blocked).execute(stream, plain, blocked);
    const std::vector<float> zeros(k, 0.0f);
    InputTransform(x.typed_data(), s, k, zeros.data(), v);
    std::unique_ptr<uint8_t[]> scratch_bytes(new uint8_t[mm->scratch.get_size()]);
    memory vm(mm->src, e, v), out(mm->dst, e, m), scratch(mm->scratch, e, scratch_bytes.get());
    mm->primitive.execute(stream, {{DNNL_ARG_SRC, vm}, {DNNL_ARG_WEIGHTS, blocked},
                                   {DNNL_ARG_DST, out}, {DNNL_ARG_SCRATCHPAD, scratch}});
    stream.wait();
    OutputTransform(m, s, nout, y->typed_data());
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("avjax Winograd convolution: ") + err.what());
  }
  return ffi::Error::Success();
}

ffi::Error FilterGradImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                          ffi::Result<ffi::Buffer<ffi::F32>> dw,
                          ffi::Result<ffi::Buffer<ffi::F32>> workspace) {
  const auto xd = x.dimensions(), gd = g.dimensions(), wd = dw->dimensions();
  if (xd.size() != 4 || gd.size() != 4 || wd.size() != 4 || wd[0] != 3 || wd[1] != 3 ||
      wd[2] != xd[3] || wd[3] != gd[3] || xd[0] != gd[0] || xd[1] != gd[1] || xd[2] != gd[2])
    return ffi::Error::InvalidArgument(
        "avjax Winograd filter gradient: shapes must be x [N, H, W, C], g [N, H, W, F], "
        "dw [3, 3, C, F]");
  const Tiles s{xd[0], xd[1], xd[2], (xd[1] + 1) / 2, (xd[2] + 1) / 2};
  const int64_t c = wd[2], f = wd[3], t = s.count();
  if (workspace->element_count() != WorkspaceSize(t, c, f, c, f))
    return ffi::Error::InvalidArgument("avjax Winograd filter gradient: wrong workspace size");
  try {
    const auto mm = CachedGradMatmul(t, c, f);
    auto& e = Engine();
    dnnl::stream stream(e);
    float* const du = workspace->typed_data();
    float* const v = du + 16 * c * f;
    float* const gt = v + 16 * t * c;
    const std::vector<float> zeros(std::max(c, f), 0.0f);
    InputTransform(x.typed_data(), s, c, zeros.data(), v);
    GradTransform(g.typed_data(), s, f, zeros.data(), gt);
    std::unique_ptr<uint8_t[]> scratch_bytes(new uint8_t[mm->scratch.get_size()]);
    memory vm(mm->src, e, v), gm(mm->weights, e, gt), um(mm->dst, e, du),
        scratch(mm->scratch, e, scratch_bytes.get());
    mm->primitive.execute(stream, {{DNNL_ARG_SRC, vm}, {DNNL_ARG_WEIGHTS, gm},
                                   {DNNL_ARG_DST, um}, {DNNL_ARG_SCRATCHPAD, scratch}});
    stream.wait();
    KernelGradTransform(du, c, f, dw->typed_data());
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("avjax Winograd filter gradient: ") + err.what());
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(AvjaxWinogradConv, WinogradImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("flip"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(AvjaxWinogradFilterGrad, FilterGradImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
