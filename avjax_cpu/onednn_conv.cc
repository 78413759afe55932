// A 2-D NHWC/HWIO float32 or bfloat16 convolution's forward, input gradient and
// filter gradient as oneDNN's primitives, the kernels PyTorch's CPU convolutions
// run, as XLA FFI custom calls (onednn.py builds and registers them). In
// bfloat16 every operand and result is bfloat16; the primitives accumulate in
// float32.
//
// Activations stay NHWC, which oneDNN's brgemm convolutions take as they are;
// the kernel (and its gradient) move between HWIO and the blocked layout the
// primitive chooses, as PyTorch's do each step. Primitives are built once per
// shape and kept: a compiled program calls the same few shapes every step.
// Scratch memory is allocated per call, so one primitive may run on several
// threads at once (XLA runs the two towers' layers side by side).
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;

enum Kind : int64_t { kForward = 0, kInputGrad = 1, kFilterGrad = 2 };

// Kind, N, H, W, C (input), OH, OW, F (output), kh, kw, stride h/w, pads lo/hi h, lo/hi w,
// data type (oneDNN's).
using Key = std::array<int64_t, 17>;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Conv {
  dnnl::primitive primitive;
  memory::desc src, dst;  // x and y, NHWC
  memory::desc kernel;    // the primitive's kernel (or kernel gradient) layout
  memory::desc scratch;
};

Conv Build(const Key& k) {
  const memory::dim n = k[1], h = k[2], w = k[3], c = k[4], oh = k[5], ow = k[6], f = k[7];
  const memory::dims strides{k[10], k[11]}, lo{k[12], k[14]}, hi{k[13], k[15]};
  const auto type = static_cast<memory::data_type>(k[16]);
  const memory::desc src({n, c, h, w}, type, tag::nhwc);
  const memory::desc dst({n, f, oh, ow}, type, tag::nhwc);
  const memory::desc any({f, c, k[8], k[9]}, type, tag::any);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto& e = Engine();
  const auto algo = dnnl::algorithm::convolution_direct;
  const dnnl::convolution_forward::primitive_desc fwd(
      e, dnnl::prop_kind::forward_training, algo, src, any, dst, strides, lo, hi, attr);
  switch (k[0]) {
    case kForward:
      return {dnnl::convolution_forward(fwd), src, dst, fwd.weights_desc(),
              fwd.scratchpad_desc()};
    case kInputGrad: {
      const dnnl::convolution_backward_data::primitive_desc pd(e, algo, src, any, dst, strides,
                                                               lo, hi, fwd, attr);
      return {dnnl::convolution_backward_data(pd), src, dst, pd.weights_desc(),
              pd.scratchpad_desc()};
    }
    default: {
      const dnnl::convolution_backward_weights::primitive_desc pd(e, algo, src, any, dst, strides,
                                                                  lo, hi, fwd, attr);
      return {dnnl::convolution_backward_weights(pd), src, dst, pd.diff_weights_desc(),
              pd.scratchpad_desc()};
    }
  }
}

std::shared_ptr<const Conv> Cached(const Key& key) {
  static std::mutex mu;
  static auto* cache = new std::map<Key, std::shared_ptr<const Conv>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& entry = (*cache)[key];
  if (!entry) entry = std::make_shared<const Conv>(Build(key));
  return entry;
}

memory Hwio(const Key& k, void* data) {
  return memory({{k[7], k[4], k[8], k[9]}, static_cast<memory::data_type>(k[16]), tag::hwio},
                Engine(), data);
}

// x [N, H, W, C], kernel [kh, kw, C, F], y [N, OH, OW, F]: one of them is the
// result, the others operands, as the key's kind (key[0]) says.
ffi::Error Run(const Key& key, void* x, void* kernel, void* y) {
  const auto kind = static_cast<Kind>(key[0]);
  try {
    const auto conv = Cached(key);
    auto& e = Engine();
    dnnl::stream stream(e);
    memory xm(conv->src, e, x), ym(conv->dst, e, y), hwio = Hwio(key, kernel);
    const bool reordered = conv->kernel != hwio.get_desc();
    memory blocked = reordered ? memory(conv->kernel, e) : hwio;
    std::unique_ptr<uint8_t[]> scratch_bytes(new uint8_t[conv->scratch.get_size()]);
    memory scratch(conv->scratch, e, scratch_bytes.get());
    if (kind != kFilterGrad && reordered)
      dnnl::reorder(hwio, blocked).execute(stream, hwio, blocked);
    switch (kind) {
      case kForward:
        conv->primitive.execute(stream, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, blocked},
                                         {DNNL_ARG_DST, ym}, {DNNL_ARG_SCRATCHPAD, scratch}});
        break;
      case kInputGrad:
        conv->primitive.execute(stream, {{DNNL_ARG_DIFF_DST, ym}, {DNNL_ARG_WEIGHTS, blocked},
                                         {DNNL_ARG_DIFF_SRC, xm}, {DNNL_ARG_SCRATCHPAD, scratch}});
        break;
      case kFilterGrad:
        conv->primitive.execute(stream, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, ym},
                                         {DNNL_ARG_DIFF_WEIGHTS, blocked},
                                         {DNNL_ARG_SCRATCHPAD, scratch}});
        if (reordered) dnnl::reorder(blocked, hwio).execute(stream, blocked, hwio);
        break;
    }
    stream.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("avjax oneDNN convolution: ") + err.what());
  }
  return ffi::Error::Success();
}

bool Consistent(ffi::Span<const int64_t> x, ffi::Span<const int64_t> kernel,
                ffi::Span<const int64_t> y) {
  return x.size() == 4 && kernel.size() == 4 && y.size() == 4 && x[0] == y[0] &&
         kernel[2] == x[3] && kernel[3] == y[3];
}

// oneDNN's type for float32 and bfloat16, undef for any other.
memory::data_type Type(ffi::DataType t) {
  return t == ffi::DataType::F32    ? memory::data_type::f32
         : t == ffi::DataType::BF16 ? memory::data_type::bf16
                                    : memory::data_type::undef;
}

// The three handlers' shared body: x, kernel and y in their roles (see Run),
// whichever of them is the call's result.
ffi::Error Call(Kind kind, ffi::AnyBuffer x, ffi::AnyBuffer kernel, ffi::AnyBuffer y, int64_t sh,
                int64_t sw, int64_t lo_h, int64_t hi_h, int64_t lo_w, int64_t hi_w) {
  const auto xd = x.dimensions(), kd = kernel.dimensions(), yd = y.dimensions();
  if (!Consistent(xd, kd, yd))
    return ffi::Error::InvalidArgument(
        "avjax oneDNN convolution: shapes must be x [N, H, W, C], kernel [kh, kw, C, F], "
        "y [N, OH, OW, F]");
  const auto type = Type(x.element_type());
  if (type == memory::data_type::undef || Type(kernel.element_type()) != type ||
      Type(y.element_type()) != type)
    return ffi::Error::InvalidArgument(
        "avjax oneDNN convolution: x, kernel and y must all be float32 or all bfloat16");
  const Key key{kind, xd[0], xd[1], xd[2], xd[3], yd[1], yd[2], yd[3], kd[0], kd[1],
                sh, sw, lo_h, hi_h, lo_w, hi_w, static_cast<int64_t>(type)};
  return Run(key, x.untyped_data(), kernel.untyped_data(), y.untyped_data());
}

ffi::Error ForwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y,
                       int64_t sh, int64_t sw, int64_t lo_h, int64_t hi_h, int64_t lo_w,
                       int64_t hi_w) {
  return Call(kForward, x, w, *y, sh, sw, lo_h, hi_h, lo_w, hi_w);
}

ffi::Error InputGradImpl(ffi::AnyBuffer g, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx,
                         int64_t sh, int64_t sw, int64_t lo_h, int64_t hi_h, int64_t lo_w,
                         int64_t hi_w) {
  return Call(kInputGrad, *dx, w, g, sh, sw, lo_h, hi_h, lo_w, hi_w);
}

ffi::Error FilterGradImpl(ffi::AnyBuffer x, ffi::AnyBuffer g, ffi::Result<ffi::AnyBuffer> dw,
                          int64_t sh, int64_t sw, int64_t lo_h, int64_t hi_h, int64_t lo_w,
                          int64_t hi_w) {
  return Call(kFilterGrad, x, *dw, g, sh, sw, lo_h, hi_h, lo_w, hi_w);
}

auto Binding() {
  return ffi::Ffi::Bind()
      .Arg<ffi::AnyBuffer>()
      .Arg<ffi::AnyBuffer>()
      .Ret<ffi::AnyBuffer>()
      .Attr<int64_t>("stride_h")
      .Attr<int64_t>("stride_w")
      .Attr<int64_t>("pad_lo_h")
      .Attr<int64_t>("pad_hi_h")
      .Attr<int64_t>("pad_lo_w")
      .Attr<int64_t>("pad_hi_w");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(AvjaxOnednnConvForward, ForwardImpl, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(AvjaxOnednnConvInputGrad, InputGradImpl, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(AvjaxOnednnConvFilterGrad, FilterGradImpl, Binding());

// Whether the CPU computes in bfloat16 natively (AVX512_BF16 or AMX), where
// oneDNN's bfloat16 convolutions run at about twice its float32 ones; without
// it they are emulated and slower.
extern "C" int AvjaxOnednnNativeBf16() {
  const auto want = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  return (static_cast<unsigned>(dnnl::get_effective_cpu_isa()) & want) == want;
}
