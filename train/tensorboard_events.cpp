// TensorBoard event files (see tensorboard_events.h).
#include "train/tensorboard_events.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>

#include "common/error.h"
#include "common/fs.h"

namespace t4g {
namespace {

std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli polynomial
    table[i] = c;
  }
  return table;
}

// Protobuf wire format: varints, and fields as (number << 3 | wire type).
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_tag(std::string& out, int field, int wire_type) { put_varint(out, static_cast<uint64_t>(field) << 3 | wire_type); }
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_tag(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}
template <typename T>
void put_fixed(std::string& out, int field, int wire_type, T value) {
  put_tag(out, field, wire_type);
  char raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  out.append(raw, sizeof(T));
}

std::string event_header(double wall_time, int64_t step) {
  std::string e;
  put_fixed<double>(e, 1, 1, wall_time);  // wall_time: double
  put_tag(e, 2, 0);                       // step: int64
  put_varint(e, static_cast<uint64_t>(step));
  return e;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  static const std::array<uint32_t, 256> table = make_crc32c_table();
  uint32_t crc = 0xFFFFFFFFu;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  make_dirs(dir);
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  path_ = path_join(dir, "events.out.tfevents." + std::to_string(static_cast<int64_t>(now_seconds())) + "." + host +
                             "." + std::to_string(getpid()));
  file_ = std::fopen(path_.c_str(), "wb");
  ErrorContext ctx;
  ctx.file = path_;
  T4G_CHECK_CTX(file_ != nullptr, ctx, "cannot create the TensorBoard event file: ", std::strerror(errno));
  std::string e = event_header(now_seconds(), 0);
  put_bytes(e, 3, "brain.Event:2");  // file_version
  write_record(e);
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  std::string v;
  put_bytes(v, 1, tag);                                        // Summary.Value.tag
  put_fixed<float>(v, 2, 5, static_cast<float>(value));        // Summary.Value.simple_value (float)
  std::string summary;
  put_bytes(summary, 1, v);                                    // Summary.value (repeated)
  std::string e = event_header(now_seconds(), step);
  put_bytes(e, 5, summary);                                    // Event.summary
  write_record(e);
}

void TensorBoardWriter::flush() {
  if (file_ != nullptr) std::fflush(file_);
}

void TensorBoardWriter::write_record(const std::string& payload) {
  const uint64_t length = payload.size();
  char len_bytes[8];
  std::memcpy(len_bytes, &length, 8);
  const uint32_t len_crc = masked_crc32c(len_bytes, 8);
  const uint32_t data_crc = masked_crc32c(payload.data(), payload.size());
  std::fwrite(len_bytes, 1, 8, file_);
  std::fwrite(&len_crc, 4, 1, file_);
  std::fwrite(payload.data(), 1, payload.size(), file_);
  std::fwrite(&data_crc, 4, 1, file_);
}

}  // namespace t4g
