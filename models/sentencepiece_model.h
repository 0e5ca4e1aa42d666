// A SentencePiece model (spiece.model) through libsentencepiece, isolated: the library is reached
// through libt4g_spm_shim.so (models/sentencepiece/shim.cpp), loaded with dlopen(RTLD_LOCAL |
// RTLD_DEEPBIND) on first use, because libsentencepiece exports a private protobuf copy that
// crashes any program that also loads the system libprotobuf (OpenCV does) when linked normally.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace t4g {

class SentencePieceModel {
 public:
  // Loads `path`; a missing file or one that is not a SentencePiece model is a t4g::Error naming
  // it. A shim that cannot be loaded is a t4g::Error naming the shim and the loader's reason.
  explicit SentencePieceModel(const std::string& path);
  ~SentencePieceModel();
  SentencePieceModel(const SentencePieceModel&) = delete;
  SentencePieceModel& operator=(const SentencePieceModel&) = delete;

  // The pieces of `text` (SentencePieceProcessor::Encode; unknown characters come back as their
  // own text, which piece_to_id maps to the unknown id).
  std::vector<std::string> encode(const std::string& text) const;
  // Text of ids (SentencePieceProcessor::Decode).
  std::string decode(const std::vector<int>& ids) const;
  int piece_count() const;
  int piece_to_id(const std::string& piece) const;
  bool is_control(int id) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* handle_ = nullptr;  // the shim's model
};

// Where the shim is looked for: $T4G_SPM_SHIM when set, else the path the build wrote it to.
std::string sentencepiece_shim_path();

}  // namespace t4g
