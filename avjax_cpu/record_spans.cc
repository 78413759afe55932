// TFRecord files read by byte span: the reader's record stream (spans.py).
//
// AvjaxRecordSpans(path) -> offsets, lengths: where each record's bytes lie,
// from the framing alone (a 12-byte read per record, its length's CRC checked).
// AvjaxReadRecord(path, offset, length) -> record: one record's bytes, read
// straight into the output string and checked against their CRC32C.
//
// Why not TFRecordDataset: the TensorFlow wheel checks CRC32C in software and
// copies every record through a buffer, where this checks it with the CPU's
// instruction and copies once (benchmarks/pipeline.py measures both). And a
// shuffle of spans holds offsets, not megabytes of records.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#elif defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>
#endif

#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/platform/env.h"

namespace avjax {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::RandomAccessFile;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::tstring;

constexpr uint32_t kCastagnoli = 0x82f63b78;  // CRC32C, reflected

uint32_t SoftwareByte(uint32_t crc, uint8_t byte) {
  crc ^= byte;
  for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (kCastagnoli & (0u - (crc & 1)));
  return crc;
}

// The CPU's CRC32C instruction where it has one; the bitwise loop elsewhere
// (correct everywhere, fast only with the instruction).
uint32_t Crc32c(const char* p, size_t n) {
  uint64_t crc = 0xffffffffu;
#if defined(__SSE4_2__) && defined(__x86_64__)
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    crc = _mm_crc32_u64(crc, v);
  }
  for (; n > 0; ++p, --n) crc = _mm_crc32_u8(static_cast<uint32_t>(crc), *p);
#elif defined(__ARM_FEATURE_CRC32)
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    crc = __crc32cd(static_cast<uint32_t>(crc), v);
  }
  for (; n > 0; ++p, --n) crc = __crc32cb(static_cast<uint32_t>(crc), *p);
#else
  for (; n > 0; ++p, --n) crc = SoftwareByte(static_cast<uint32_t>(crc), *p);
#endif
  return static_cast<uint32_t>(crc) ^ 0xffffffffu;
}

// TFRecord stores each CRC masked (rotated and offset).
uint32_t MaskedCrc(const char* p, size_t n) {
  uint32_t crc = Crc32c(p, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

uint32_t Fixed32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

uint64_t Fixed64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

absl::Status DataLoss(const std::string& path, int64_t index, uint64_t offset,
                      const std::string& what) {
  return absl::DataLossError(path + ": record " + (index >= 0 ? std::to_string(index) + " " : "") +
                             "at byte " + std::to_string(offset) + ": " + what);
}

// Reads exactly n bytes at offset into dst; a short read is the file ending early.
// Errors name the record by where it starts.
absl::Status ReadExactly(RandomAccessFile* file, const std::string& path, int64_t index,
                         uint64_t record_start, uint64_t at, size_t n, char* dst,
                         const char* what) {
  absl::string_view got;
  absl::Status s = file->Read(at, n, &got, dst);
  if (!s.ok() && !absl::IsOutOfRange(s)) return s;
  if (got.size() < n) {
    return DataLoss(path, index, record_start, std::string("truncated ") + what + " (" +
                                             std::to_string(n) + " bytes wanted, " +
                                             std::to_string(got.size()) + " there)");
  }
  if (got.data() != dst) std::memmove(dst, got.data(), n);
  return absl::OkStatus();
}

class RecordSpans : public OpKernel {
 public:
  explicit RecordSpans(OpKernelConstruction* c) : OpKernel(c) {}

  void Compute(OpKernelContext* ctx) override {
    const std::string path(ctx->input(0).scalar<tstring>()());
    uint64_t size;
    OP_REQUIRES_OK(ctx, ctx->env()->GetFileSize(path, &size));
    std::unique_ptr<RandomAccessFile> file;
    OP_REQUIRES_OK(ctx, ctx->env()->NewRandomAccessFile(path, &file));
    std::vector<int64_t> offsets, lengths;
    char header[12];
    for (uint64_t at = 0; at < size;) {
      const int64_t index = offsets.size();
      OP_REQUIRES_OK(ctx, ReadExactly(file.get(), path, index, at, at, 12, header, "header"));
      OP_REQUIRES(ctx, MaskedCrc(header, 8) == Fixed32(header + 8),
                  DataLoss(path, index, at, "corrupted length (CRC mismatch)"));
      const uint64_t length = Fixed64(header);
      OP_REQUIRES(ctx, length <= size && at + 16 + length <= size,
                  DataLoss(path, index, at, "truncated (" + std::to_string(length) +
                                                " bytes declared, " +
                                                std::to_string(size - at - 16) + " left)"));
      offsets.push_back(at + 12);
      lengths.push_back(length);
      at += 16 + length;
    }
    const int64_t n = offsets.size();
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({n}), &out));
    std::copy(offsets.begin(), offsets.end(), out->flat<int64_t>().data());
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({n}), &out));
    std::copy(lengths.begin(), lengths.end(), out->flat<int64_t>().data());
  }
};

class ReadRecord : public OpKernel {
 public:
  explicit ReadRecord(OpKernelConstruction* c) : OpKernel(c) {}

  void Compute(OpKernelContext* ctx) override {
    const std::string path(ctx->input(0).scalar<tstring>()());
    const int64_t offset = ctx->input(1).scalar<int64_t>()();
    const int64_t length = ctx->input(2).scalar<int64_t>()();
    OP_REQUIRES(ctx, offset >= 12 && length >= 0,
                absl::InvalidArgumentError(path + ": no record at byte " +
                                           std::to_string(offset) + " of length " +
                                           std::to_string(length)));
    std::unique_ptr<RandomAccessFile> file;
    OP_REQUIRES_OK(ctx, ctx->env()->NewRandomAccessFile(path, &file));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({}), &out));
    tstring& record = out->scalar<tstring>()();
    // The record and its 4-byte CRC in one read, then the CRC cut off.
    record.resize_uninitialized(length + 4);
    OP_REQUIRES_OK(ctx, ReadExactly(file.get(), path, -1, offset - 12, offset,
                                    length + 4, record.data(), "record"));
    OP_REQUIRES(ctx, MaskedCrc(record.data(), length) == Fixed32(record.data() + length),
                DataLoss(path, -1, offset - 12, "corrupted (CRC mismatch)"));
    record.resize(length);
  }
};

}  // namespace

REGISTER_OP("AvjaxRecordSpans")
    .Input("path: string")
    .Output("offsets: int64")
    .Output("lengths: int64")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(c->UnknownDim()));
      c->set_output(1, c->Vector(c->UnknownDim()));
      return absl::OkStatus();
    });
REGISTER_KERNEL_BUILDER(Name("AvjaxRecordSpans").Device(tensorflow::DEVICE_CPU), RecordSpans);

REGISTER_OP("AvjaxReadRecord")
    .Input("path: string")
    .Input("offset: int64")
    .Input("length: int64")
    .Output("record: string")
    .SetShapeFn(tensorflow::shape_inference::ScalarShape);
REGISTER_KERNEL_BUILDER(Name("AvjaxReadRecord").Device(tensorflow::DEVICE_CPU), ReadRecord);

}  // namespace avjax
