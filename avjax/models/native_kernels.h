// What filter_grad.cc and conv_fwd.cc share: their FFI binding, and running
// their parts on XLA:CPU's intra-op thread pool.
#ifndef AVJAX_MODELS_NATIVE_KERNELS_H_
#define AVJAX_MODELS_NATIVE_KERNELS_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace avjax {

// Runs job(i) for every i < n. The calling thread and up to n - 1 tasks of
// XLA's pool claim jobs from one counter, and the caller then waits for the
// jobs others claimed. XLA runs the two towers' layers side by side: on a pool
// busy with the other tower's work the caller does every job itself (where
// threads of the kernel's own would contend with the pool's for the cores),
// and a pool task that starts after the jobs are gone returns at once, so the
// call never waits on a task that cannot start.
inline void parallel_for(xla::ffi::ThreadPool& pool, int64_t n,
                         const std::function<void(int64_t)>& job) {
  struct State {
    std::atomic<int64_t> next{0};
    std::mutex mu;
    std::condition_variable cv;
    int64_t done = 0;
  };
  auto state = std::make_shared<State>();
  const std::function<void(int64_t)>* run = &job;  // used only while jobs remain
  auto work = [state, run, n] {
    for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
      (*run)(i);
      std::lock_guard<std::mutex> lock(state->mu);
      if (++state->done == n) state->cv.notify_all();
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), n - 1);
  for (int64_t k = 0; k < helpers; ++k) pool.Schedule([work] { work(); });
  work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done == n; });
}

// Both kernels' FFI signature: two float32 operands, one float32 result, the
// number of parts (`threads`) and XLA's pool to run them on.
inline auto kernel_binding() {
  return xla::ffi::Ffi::Bind()
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
      .Ret<xla::ffi::Buffer<xla::ffi::F32>>()
      .Attr<int64_t>("threads")
      .Ctx<xla::ffi::ThreadPool>();
}

}  // namespace avjax

#endif  // AVJAX_MODELS_NATIVE_KERNELS_H_
