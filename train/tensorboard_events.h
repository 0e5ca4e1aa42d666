// TensorBoard event files written directly: TFRecord framing (length, masked CRC-32C of the
// length, payload, masked CRC-32C of the payload) around hand-encoded `tensorflow.Event`
// protobufs (wall_time = 1, step = 2, file_version = 3, summary = 5 with Summary.Value
// {tag = 1, simple_value = 2}). Only scalars, which is all a trainer logs; no protobuf or
// TensorFlow dependency. TensorBoard reads files named events.out.tfevents.<time>.<host>.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace t4g {

// CRC-32C (Castagnoli), as TFRecord uses it, and TFRecord's masking of it.
uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);

class TensorBoardWriter {
 public:
  // Creates `dir` if needed and opens a new event file in it (first record: file_version).
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(const std::string& tag, double value, int64_t step);
  // Pushes buffered records to the OS (TensorBoard polls the file).
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& payload);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace t4g
