// libt4g_spm_shim.so: a C interface over libsentencepiece, loaded by models/sentencepiece_model.cpp
// with dlopen(RTLD_LOCAL | RTLD_DEEPBIND) instead of being linked. libsentencepiece exports its own
// private copy of protobuf-lite; linked into a program that also loads the system libprotobuf
// (OpenCV's dnn module does), one copy's symbols interpose on the other's and the program crashes
// before main. Loaded this way, sentencepiece binds to its own copy and exports nothing globally.
// Only C types cross the boundary; strings come back through callbacks that copy them.
#include <sentencepiece_processor.h>

#include <cstring>
#include <string>
#include <vector>

extern "C" {

typedef void (*t4g_spm_emit)(void* context, const char* text, size_t length);

// A loaded model, or null with the reason written to `error` (truncated to `error_size`).
__attribute__((visibility("default"))) void* t4g_spm_load(const char* path, char* error, size_t error_size) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  const auto status = sp->Load(path);
  if (!status.ok() || sp->GetPieceSize() <= 0) {
    const std::string message = status.ok() ? std::string("the model has no pieces") : status.ToString();
    if (error_size > 0) {
      std::strncpy(error, message.c_str(), error_size - 1);
      error[error_size - 1] = '\0';
    }
    delete sp;
    return nullptr;
  }
  return sp;
}

__attribute__((visibility("default"))) void t4g_spm_free(void* model) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(model);
}

__attribute__((visibility("default"))) int t4g_spm_piece_size(void* model) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(model)->GetPieceSize();
}

__attribute__((visibility("default"))) int t4g_spm_piece_to_id(void* model, const char* piece, size_t length) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(model)->PieceToId(std::string_view(piece, length));
}

__attribute__((visibility("default"))) int t4g_spm_is_control(void* model, int id) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(model)->IsControl(id) ? 1 : 0;
}

// Pieces of `text`, one emit call each; 0 on success, -1 on failure (the reason is emitted once).
__attribute__((visibility("default"))) int t4g_spm_encode(void* model, const char* text, size_t length,
                                                          t4g_spm_emit emit, void* context) {
  std::vector<std::string> pieces;
  const auto status =
      static_cast<sentencepiece::SentencePieceProcessor*>(model)->Encode(std::string_view(text, length), &pieces);
  if (!status.ok()) {
    const std::string message = status.ToString();
    emit(context, message.data(), message.size());
    return -1;
  }
  for (const auto& p : pieces) emit(context, p.data(), p.size());
  return 0;
}

// Text of `ids`, emitted once; 0 on success, -1 on failure (the reason is emitted instead).
__attribute__((visibility("default"))) int t4g_spm_decode(void* model, const int* ids, size_t count, t4g_spm_emit emit,
                                                          void* context) {
  std::string text;
  const auto status =
      static_cast<sentencepiece::SentencePieceProcessor*>(model)->Decode(std::vector<int>(ids, ids + count), &text);
  if (!status.ok()) text = status.ToString();
  emit(context, text.data(), text.size());
  return status.ok() ? 0 : -1;
}

}  // extern "C"
