// Loading libt4g_spm_shim.so once per process and calling its C functions. RTLD_DEEPBIND makes
// libsentencepiece resolve its protobuf symbols to its own copy; RTLD_LOCAL keeps them out of the
// global scope, where they would interpose on the system libprotobuf that OpenCV uses.
#include "models/sentencepiece_model.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "common/error.h"
#include "common/fs.h"

#ifndef T4G_SPM_SHIM_PATH
#error "T4G_SPM_SHIM_PATH must name libt4g_spm_shim.so (set by CMakeLists.txt)"
#endif

namespace t4g {
namespace {

using Emit = void (*)(void* context, const char* text, size_t length);

struct Shim {
  void* (*load)(const char*, char*, size_t) = nullptr;
  void (*free_model)(void*) = nullptr;
  int (*piece_size)(void*) = nullptr;
  int (*piece_to_id)(void*, const char*, size_t) = nullptr;
  int (*is_control)(void*, int) = nullptr;
  int (*encode)(void*, const char*, size_t, Emit, void*) = nullptr;
  int (*decode)(void*, const int*, size_t, Emit, void*) = nullptr;
};

template <typename F>
void bind(void* library, const char* name, F* out, const std::string& path) {
  *out = reinterpret_cast<F>(dlsym(library, name));
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(*out != nullptr, ctx, "SentencePiece shim lacks ", name);
}

const Shim& shim() {
  static std::once_flag once;
  static Shim loaded;
  static std::string failure;
  std::call_once(once, [] {
    const std::string path = sentencepiece_shim_path();
    void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (library == nullptr) {
      const char* reason = dlerror();
      failure = path + ": cannot load the SentencePiece shim (" + (reason ? reason : "unknown reason") +
                "; set T4G_SPM_SHIM to libt4g_spm_shim.so of this build)";
      return;
    }
    try {
      bind(library, "t4g_spm_load", &loaded.load, path);
      bind(library, "t4g_spm_free", &loaded.free_model, path);
      bind(library, "t4g_spm_piece_size", &loaded.piece_size, path);
      bind(library, "t4g_spm_piece_to_id", &loaded.piece_to_id, path);
      bind(library, "t4g_spm_is_control", &loaded.is_control, path);
      bind(library, "t4g_spm_encode", &loaded.encode, path);
      bind(library, "t4g_spm_decode", &loaded.decode, path);
    } catch (const Error& e) {
      failure = e.what();
    }
  });
  T4G_CHECK(failure.empty(), failure);
  return loaded;
}

void append(void* context, const char* text, size_t length) {
  static_cast<std::vector<std::string>*>(context)->emplace_back(text, length);
}

}  // namespace

std::string sentencepiece_shim_path() {
  const char* env = std::getenv("T4G_SPM_SHIM");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(T4G_SPM_SHIM_PATH);
}

SentencePieceModel::SentencePieceModel(const std::string& path) : path_(path) {
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(is_regular_file(path), ctx, "SentencePiece model not found");
  char error[512] = {0};
  handle_ = shim().load(path.c_str(), error, sizeof(error));
  T4G_CHECK_CTX(handle_ != nullptr, ctx, "not a SentencePiece model (", error, ")");
}

SentencePieceModel::~SentencePieceModel() {
  if (handle_ != nullptr) shim().free_model(handle_);
}

std::vector<std::string> SentencePieceModel::encode(const std::string& text) const {
  std::vector<std::string> pieces;
  const int rc = shim().encode(handle_, text.data(), text.size(), append, &pieces);
  ErrorContext ctx;
  ctx.file = path_;
  T4G_CHECK_CTX(rc == 0, ctx, "SentencePiece failed to encode a text (", pieces.empty() ? "" : pieces.back(), ")");
  return pieces;
}

std::string SentencePieceModel::decode(const std::vector<int>& ids) const {
  std::vector<std::string> out;
  const int rc = shim().decode(handle_, ids.data(), ids.size(), append, &out);
  ErrorContext ctx;
  ctx.file = path_;
  T4G_CHECK_CTX(rc == 0, ctx, "SentencePiece failed to decode ids (", out.empty() ? "" : out.back(), ")");
  return out.empty() ? std::string() : out.front();
}

int SentencePieceModel::piece_count() const { return shim().piece_size(handle_); }

int SentencePieceModel::piece_to_id(const std::string& piece) const {
  return shim().piece_to_id(handle_, piece.data(), piece.size());
}

bool SentencePieceModel::is_control(int id) const { return shim().is_control(handle_, id) != 0; }

}  // namespace t4g
