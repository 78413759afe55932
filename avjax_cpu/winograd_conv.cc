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

// A batch-16 matmul primitive and the layouts it was built for.
struct Matmul {
  dnnl::matmul primitive;
  memory::desc src, weights, dst, scratch;
};

Matmul Build(const memory::desc& src, const memory::desc& weights, const memory::desc& dst) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const dnnl::matmul::primitive_desc pd(Engine(), src, weights, dst, attr);
  return {dnnl::matmul(pd), src, pd.weights_desc(), dst, pd.scratchpad_desc()};
}

// build(a, b, c), made once per shape and kept: a compiled program calls the
// same few shapes every step.
template <Matmul (*build)(int64_t, int64_t, int64_t)>
std::shared_ptr<const Matmul> Cached(int64_t a, int64_t b, int64_t c) {
  static std::mutex mu;
  static auto* cache = new std::map<std::array<int64_t, 3>, std::shared_ptr<const Matmul>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& entry = (*cache)[{a, b, c}];
  if (!entry) entry = std::make_shared<const Matmul>(build(a, b, c));
  return entry;
}

// M [16, T, N] = V [16, T, K] x U [16, K, N], U in the layout the primitive
// chooses (reordered per call from [16][K][N], or from [16][N][K] for the
// input gradient: see KernelTransform).
Matmul TileMatmul(int64_t t, int64_t k, int64_t n) {
  const auto f32 = memory::data_type::f32;
  return Build(memory::desc({16, t, k}, f32, tag::abc), memory::desc({16, k, n}, f32, tag::any),
               memory::desc({16, t, n}, f32, tag::abc));
}

// dU [16, C, F] = V^T Gt: V [16][T][C] read as [16, C, T] (acb), Gt [16, T, F]
// as it is, so that neither is reordered.
Matmul FilterGradMatmul(int64_t t, int64_t c, int64_t f) {
  const auto f32 = memory::data_type::f32;
  return Build(memory::desc({16, c, t}, f32, tag::acb), memory::desc({16, t, f}, f32, tag::abc),
               memory::desc({16, c, f}, f32, tag::abc));
}

// Runs `mm` on src, weights (already in mm.weights' layout) and dst, with
// scratch memory of its own (calls may run side by side).
void Multiply(const Matmul& mm, float* src, const dnnl::memory& weights, float* dst,
              dnnl::stream& stream) {
  auto& e = Engine();
  std::unique_ptr<uint8_t[]> scratch_bytes(new uint8_t[mm.scratch.get_size()]);
  memory sm(mm.src, e, src), dm(mm.dst, e, dst), scratch(mm.scratch, e, scratch_bytes.get());
  mm.primitive.execute(stream, {{DNNL_ARG_SRC, sm}, {DNNL_ARG_WEIGHTS, weights},
                                {DNNL_ARG_DST, dm}, {DNNL_ARG_SCRATCHPAD, scratch}});
  stream.wait();
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
  // The map's pixel at row 2ty + i, column 2tx + j of tile t (ty, tx), as an
  // index into its N * H * W pixels; -1 outside the map.
  int64_t pixel(int64_t t, int64_t i, int64_t j) const {
    const int64_t b = t / (th * tw), y = 2 * (t / tw % th) + i, x = 2 * (t % tw) + j;
    return (y >= 0 && y < h && x >= 0 && x < w) ? (b * h + y) * w + x : -1;
  }
};

// V[16][T][C] = B^T d B of each tile's 4x4 input d (rows 2ty-1..2ty+2, columns
// 2tx-1..2tx+2 of x [N][H][W][C], zero outside: those pixels read `zeros`, C
// of them, so that the channel loop has no branch and vectorises).
void InputTransform(const float* x, const Tiles& s, int64_t c, const float* zeros, float* v) {
  const int64_t plane = s.count() * c;
#pragma omp parallel for
  for (int64_t t = 0; t < s.count(); ++t) {
    const float* row[4][4];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        const int64_t p = s.pixel(t, i - 1, j - 1);
        row[i][j] = p >= 0 ? x + p * c : zeros;
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
// outside an odd map go to a row of the thread's own, so that the channel
// loop has no branch).
void OutputTransform(const float* m, const Tiles& s, int64_t f, float* y) {
  const int64_t plane = s.count() * f;
#pragma omp parallel
  {
    std::vector<float> sink(f);
#pragma omp for
    for (int64_t t = 0; t < s.count(); ++t) {
      float* out[2][2];
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) {
          const int64_t p = s.pixel(t, i, j);
          out[i][j] = p >= 0 ? y + p * f : sink.data();
        }
      const float* in = m + t * f;
#pragma omp simd
      for (int64_t fi = 0; fi < f; ++fi) {
        float r[2][4];  // A^T m
        for (int j = 0; j < 4; ++j) {
          const float m0 = in[(0 + j) * plane + fi], m1 = in[(4 + j) * plane + fi],
                      m2 = in[(8 + j) * plane + fi], m3 = in[(12 + j) * plane + fi];
          r[0][j] = m0 + m1 + m2;
          r[1][j] = m1 - m2 - m3;
        }
        for (int i = 0; i < 2; ++i) {  // (A^T m) A
          out[i][0][fi] = r[i][0] + r[i][1] + r[i][2];
          out[i][1][fi] = r[i][1] - r[i][2] - r[i][3];
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
    const float* in[2][2];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) {
        const int64_t p = s.pixel(t, i, j);
        in[i][j] = p >= 0 ? g + p * f : zeros;
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

// The float32 workspace a call takes (XLA allocates it as a second result, so
// that it comes from the program's reused temporaries instead of a fresh
// mapping per call): U (or dU), V and M (or Gt).
int64_t WorkspaceSize(int64_t tiles, int64_t k, int64_t nout, int64_t c, int64_t f) {
  return 16 * c * f + 16 * tiles * k + 16 * tiles * nout;
}

// Whether a and b are both [N, H, W, *] maps of the same N, H and W.
bool SameMap(ffi::Span<const int64_t> a, ffi::Span<const int64_t> b) {
  return a.size() == 4 && b.size() == 4 && a[0] == b[0] && a[1] == b[1] && a[2] == b[2];
}

// The 2x2 output tiles of an [N, H, W, *] map.
Tiles TilesOf(ffi::Span<const int64_t> map) {
  return {map[0], map[1], map[2], (map[1] + 1) / 2, (map[2] + 1) / 2};
}

// Runs `body` once the workspace has the size WorkspaceSize gives; errors, and
// oneDNN's exceptions, come back as the call's, named by `what`.
template <typename Body>
ffi::Error Checked(const std::string& what, int64_t workspace, int64_t expected, Body body) {
  if (workspace != expected) return ffi::Error::InvalidArgument(what + ": wrong workspace size");
  try {
    body();
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(what + ": " + err.what());
  }
  return ffi::Error::Success();
}

ffi::Error WinogradImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                        ffi::Result<ffi::Buffer<ffi::F32>> y,
                        ffi::Result<ffi::Buffer<ffi::F32>> workspace, int64_t flip) {
  const auto xd = x.dimensions(), wd = w.dimensions(), yd = y->dimensions();
  // x [N, H, W, K] -> y [N, H, W, Nout]; w [3, 3, C, F] with (K, Nout) = (C, F),
  // or (F, C) when flipped.
  const bool kernel_3x3 = wd.size() == 4 && wd[0] == 3 && wd[1] == 3;
  const int64_t k = kernel_3x3 ? wd[flip ? 3 : 2] : -1, nout = kernel_3x3 ? wd[flip ? 2 : 3] : -1;
  if (!SameMap(xd, yd) || !kernel_3x3 || xd[3] != k || yd[3] != nout)
    return ffi::Error::InvalidArgument(
        "avjax Winograd convolution: shapes must be x [N, H, W, K], kernel [3, 3, C, F], "
        "y [N, H, W, Nout] with (K, Nout) = (C, F), or (F, C) for the input gradient");
  const Tiles s = TilesOf(xd);
  const int64_t c = wd[2], f = wd[3], t = s.count();
  return Checked("avjax Winograd convolution", workspace->element_count(),
                 WorkspaceSize(t, k, nout, c, f), [&] {
    const auto mm = Cached<TileMatmul>(t, k, nout);
    auto& e = Engine();
    dnnl::stream stream(e);
    float* const u = workspace->typed_data();
    float* const v = u + 16 * c * f;
    float* const m = v + 16 * t * k;
    KernelTransform(w.typed_data(), c, f, flip, u);
    memory plain({{16, k, nout}, memory::data_type::f32, flip ? tag::acb : tag::abc}, e, u);
    memory blocked = mm->weights == plain.get_desc() ? plain : memory(mm->weights, e);
    if (blocked != plain) dnnl::reorder(plain, blocked).execute(stream, plain, blocked);
    const std::vector<float> zeros(k, 0.0f);
    InputTransform(x.typed_data(), s, k, zeros.data(), v);
    Multiply(*mm, v, blocked, m, stream);
    OutputTransform(m, s, nout, y->typed_data());
  });
}

ffi::Error FilterGradImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                          ffi::Result<ffi::Buffer<ffi::F32>> dw,
                          ffi::Result<ffi::Buffer<ffi::F32>> workspace) {
  const auto xd = x.dimensions(), gd = g.dimensions(), wd = dw->dimensions();
  if (!SameMap(xd, gd) || wd.size() != 4 || wd[0] != 3 || wd[1] != 3 || wd[2] != xd[3] ||
      wd[3] != gd[3])
    return ffi::Error::InvalidArgument(
        "avjax Winograd filter gradient: shapes must be x [N, H, W, C], g [N, H, W, F], "
        "dw [3, 3, C, F]");
  const Tiles s = TilesOf(xd);
  const int64_t c = wd[2], f = wd[3], t = s.count();
  return Checked("avjax Winograd filter gradient", workspace->element_count(),
                 WorkspaceSize(t, c, f, c, f), [&] {
    const auto mm = Cached<FilterGradMatmul>(t, c, f);
    dnnl::stream stream(Engine());
    float* const du = workspace->typed_data();
    float* const v = du + 16 * c * f;
    float* const gt = v + 16 * t * c;
    const std::vector<float> zeros(std::max(c, f), 0.0f);
    InputTransform(x.typed_data(), s, c, zeros.data(), v);
    GradTransform(g.typed_data(), s, f, zeros.data(), gt);
    Multiply(*mm, v, memory(mm->weights, Engine(), gt), du, stream);
    KernelGradTransform(du, c, f, dw->typed_data());
  });
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
