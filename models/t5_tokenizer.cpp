// T5 tokenization on libsentencepiece, step for step as transformers 4.x's slow T5Tokenizer
// (PreTrainedTokenizer.tokenize with its added-token trie and strip rules, legacy _tokenize,
// prepare_for_model's truncation, _add_eos_if_not_present, right padding). Plain SentencePiece
// EncodeAsIds + </s> gives the same ids for ordinary prompts; the differences are literal special
// tokens in the text and a prompt that already ends with </s>. tests/fixtures/t5 has the cases.
#include "models/t5_tokenizer.h"

#include <algorithm>
#include <map>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"

namespace t4g {
namespace {

constexpr size_t kWarnTextChars = 80;  // dropped text quoted in the truncation warning

// Decodes the UTF-8 code point at s[i] (its length in *len); invalid bytes count as one byte.
uint32_t code_point_at(const std::string& s, size_t i, size_t* len) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  if (i + n > s.size()) n = 1;
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  *len = n;
  return cp;
}

// Python's str.isspace(), which str.lstrip()/rstrip() use: the strip rules of added tokens.
bool is_python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

std::string lstrip(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t n = 0;
    if (!is_python_space(code_point_at(s, i, &n))) break;
    i += n;
  }
  return s.substr(i);
}

std::string rstrip(const std::string& s) {
  // Walk forward remembering where the trailing run of spaces starts (UTF-8 has no cheap reverse walk).
  size_t keep = 0;
  for (size_t i = 0; i < s.size();) {
    size_t n = 0;
    const bool space = is_python_space(code_point_at(s, i, &n));
    i += n;
    if (!space) keep = i;
  }
  return s.substr(0, keep);
}

// A special-token field of tokenizer_config.json / special_tokens_map.json: "</s>" or
// {"content": "</s>", ...}; "" when absent.
std::string token_name(const Json& config, const std::string& key, const std::string& file) {
  if (!config.contains(key) || config.at(key).is_null()) return "";
  const Json& v = config.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v.at("content").get<std::string>();
  ErrorContext ctx;
  ctx.file = file;
  ctx.key = key;
  ctx.expected = "a string or an object with \"content\"";
  ctx.got = v.dump();
  throw Error("bad special token", ctx);
}

bool flag(const Json& entry, const char* key) { return entry.contains(key) && entry.at(key).is_boolean() && entry.at(key).get<bool>(); }

}  // namespace

T5Tokenizer T5Tokenizer::load(const std::string& folder) {
  ErrorContext ctx;
  ctx.file = folder;
  T4G_CHECK_CTX(is_directory(folder), ctx, "tokenizer folder not found");
  const std::string model_path = path_join(folder, "spiece.model");
  ctx.file = model_path;
  T4G_CHECK_CTX(is_regular_file(model_path), ctx, "no spiece.model in the tokenizer folder");

  T5Tokenizer tok;
  tok.folder_ = folder;
  tok.sp_ = std::make_shared<SentencePieceModel>(model_path);

  // Config: tokenizer_config.json, with special_tokens_map.json for names it lacks.
  Json config = Json::object();
  const std::string config_path = path_join(folder, "tokenizer_config.json");
  if (is_regular_file(config_path)) config = read_json(config_path);
  Json special = Json::object();
  const std::string special_path = path_join(folder, "special_tokens_map.json");
  if (is_regular_file(special_path)) special = read_json(special_path);
  ErrorContext cfg_ctx;
  cfg_ctx.file = config_path;
  T4G_CHECK_CTX(config.is_object() && special.is_object(), cfg_ctx, "tokenizer config must be a JSON object");

  const bool legacy = json_get_or<bool>(config, "legacy", true, config_path);
  cfg_ctx.key = "legacy";
  T4G_CHECK_CTX(legacy, cfg_ctx,
                "legacy=false (no dummy-prefix SentencePiece after special tokens) is not supported; CogVideoX's "
                "tokenizer uses legacy=true");
  // model_max_length is 1e30 ("no limit") in some configs: keep it only when it is a sane length.
  if (config.contains("model_max_length") && config.at("model_max_length").is_number()) {
    const double m = config.at("model_max_length").get<double>();
    if (m >= 1 && m < 1e9) tok.model_max_length_ = static_cast<int64_t>(m);
  }

  const auto name_of = [&](const std::string& key, const std::string& fallback) {
    std::string name = token_name(config, key, config_path);
    if (name.empty()) name = token_name(special, key, special_path);
    return name.empty() ? fallback : name;
  };
  const std::string eos = name_of("eos_token", "</s>");
  const std::string pad = name_of("pad_token", "<pad>");
  const std::string unk = name_of("unk_token", "<unk>");

  const int64_t pieces = tok.sp_->piece_count();
  if (config.contains("added_tokens_decoder") && config.at("added_tokens_decoder").is_object()) {
    for (const auto& [key, entry] : config.at("added_tokens_decoder").items()) {
      ErrorContext e;
      e.file = config_path;
      e.key = "added_tokens_decoder." + key;
      T4G_CHECK_CTX(entry.is_object() && entry.contains("content") && entry.at("content").is_string(), e,
                    "an added token needs a string \"content\"");
      T5AddedToken t;
      try {
        t.id = std::stoll(key);
      } catch (const std::exception&) {
        throw Error("the key of an added token must be its integer id", e);
      }
      t.content = entry.at("content").get<std::string>();
      t.lstrip = flag(entry, "lstrip");
      t.rstrip = flag(entry, "rstrip");
      t.single_word = flag(entry, "single_word");
      tok.added_.push_back(t);
    }
  } else {
    // As transformers' T5Tokenizer.__init__ builds them: the special tokens at their piece ids,
    // <extra_id_i> at pieces - 1 + extra_ids - i, eating whitespace on both sides.
    const int64_t extra_ids = json_get_or<int64_t>(config, "extra_ids", 100, config_path);
    for (const std::string& name : {pad, eos, unk}) {
      T5AddedToken t;
      t.content = name;
      t.id = tok.sp_->piece_to_id(name);
      tok.added_.push_back(t);
    }
    for (int64_t i = 0; i < extra_ids; ++i) {
      T5AddedToken t;
      t.content = "<extra_id_" + std::to_string(i) + ">";
      t.id = pieces - 1 + extra_ids - i;
      t.lstrip = t.rstrip = true;
      tok.added_.push_back(t);
    }
  }
  std::sort(tok.added_.begin(), tok.added_.end(), [](const T5AddedToken& a, const T5AddedToken& b) { return a.id < b.id; });

  const auto id_of = [&](const std::string& name) -> int64_t {
    for (const auto& t : tok.added_) {
      if (t.content == name) return t.id;
    }
    return tok.sp_->piece_to_id(name);
  };
  tok.eos_id_ = id_of(eos);
  tok.pad_id_ = id_of(pad);
  tok.unk_id_ = id_of(unk);
  T4G_DEBUG("t5 tokenizer ", folder, ": ", pieces, " pieces, ", tok.added_.size(), " added tokens, eos ", tok.eos_id_,
            ", pad ", tok.pad_id_, ", model_max_length ", tok.model_max_length_);
  return tok;
}

int64_t T5Tokenizer::piece_count() const { return sp_->piece_count(); }

int64_t T5Tokenizer::size() const {
  int64_t n = piece_count();
  for (const auto& t : added_) n = std::max(n, t.id + 1);
  return n;
}

std::vector<std::pair<std::string, int64_t>> T5Tokenizer::split_added(const std::string& text) const {
  // Trie.split: at each position the longest added token that starts there, leftmost first.
  std::vector<std::pair<std::string, int64_t>> parts;
  size_t start = 0;
  size_t i = 0;
  while (i < text.size()) {
    int64_t best = -1;
    for (size_t k = 0; k < added_.size(); ++k) {
      const std::string& c = added_[k].content;
      if (!c.empty() && text.compare(i, c.size(), c) == 0 && (best < 0 || c.size() > added_[best].content.size())) {
        best = static_cast<int64_t>(k);
      }
    }
    if (best < 0) {
      ++i;
      continue;
    }
    if (i > start) parts.emplace_back(text.substr(start, i - start), -1);
    parts.emplace_back(added_[best].content, best);
    i += added_[best].content.size();
    start = i;
  }
  if (start < text.size() || parts.empty()) parts.emplace_back(text.substr(start), -1);

  // Strip and single-word rules, in order, on the live list (as PreTrainedTokenizer.tokenize).
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].second < 0) continue;
    const T5AddedToken& t = added_[parts[i].second];
    std::string* left = i > 0 ? &parts[i - 1].first : nullptr;
    std::string* right = i + 1 < parts.size() ? &parts[i + 1].first : nullptr;
    if (t.rstrip && right && !right->empty()) *right = lstrip(*right);
    if (t.lstrip && left && !left->empty()) *left = rstrip(*left);
    if (t.single_word && left && !left->empty() && left->back() != ' ') {
      *left += parts[i].first;
      parts[i] = {"", -1};
    } else if (t.single_word && right && !right->empty() && right->front() != ' ') {
      *right = parts[i].first + *right;
      parts[i] = {"", -1};
    }
  }
  // A text part that now spells an added token counts as that token (the reference compares strings).
  for (auto& p : parts) {
    if (p.second >= 0) continue;
    for (size_t k = 0; k < added_.size(); ++k) {
      if (added_[k].content == p.first) p.second = static_cast<int64_t>(k);
    }
  }
  return parts;
}

void T5Tokenizer::encode_plain(const std::string& text, std::vector<int64_t>* ids) const {
  for (const auto& piece : sp_->encode(text)) {
    // convert_tokens_to_ids: added tokens first, then the model's piece table (unknown -> <unk>).
    int64_t id = -1;
    for (const auto& t : added_) {
      if (t.content == piece) id = t.id;
    }
    ids->push_back(id >= 0 ? id : sp_->piece_to_id(piece));
  }
}

std::vector<int64_t> T5Tokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const auto& [part, added] : split_added(text)) {
    if (part.empty()) continue;
    if (added >= 0) {
      ids.push_back(added_[added].id);
    } else {
      encode_plain(part, &ids);
    }
  }
  return ids;
}

std::string T5Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  std::vector<int> run;
  const auto flush = [&] {
    if (run.empty()) return;
    out += sp_->decode(run);
    run.clear();
  };
  for (const int64_t id : ids) {
    const auto it = std::find_if(added_.begin(), added_.end(), [&](const T5AddedToken& t) { return t.id == id; });
    if (it != added_.end() && (id >= piece_count() || sp_->is_control(static_cast<int>(id)))) {
      flush();
      out += it->content;
    } else if (id >= 0 && id < piece_count()) {
      run.push_back(static_cast<int>(id));
    }
  }
  flush();
  return out;
}

TokenizedPrompts T5Tokenizer::tokenize(const std::vector<std::string>& prompts, int64_t max_length,
                                       bool warn_truncation) const {
  T4G_CHECK(max_length >= 1, "T5 tokenizer: max_length must be at least 1, got ", max_length);
  const int64_t batch = static_cast<int64_t>(prompts.size());
  TokenizedPrompts out;
  out.input_ids = torch::full({batch, max_length}, pad_id_, torch::kLong);
  out.attention_mask = torch::zeros({batch, max_length}, torch::kLong);
  auto ids_acc = out.input_ids.accessor<int64_t, 2>();
  auto mask_acc = out.attention_mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> ids = encode(prompts[b]);
    // prepare_for_model: room for the one special token, cut from the end (longest_first).
    const bool truncated = static_cast<int64_t>(ids.size()) + 1 > max_length;
    out.truncated.push_back(truncated);
    if (truncated && warn_truncation) {
      const std::vector<int64_t> dropped(ids.begin() + (max_length - 1), ids.end());
      std::string text = decode(dropped);
      if (text.size() > kWarnTextChars) text = text.substr(0, kWarnTextChars) + "...";
      T4G_WARN("T5 tokenizer: prompt ", b, " has ", ids.size(), " tokens, more than max_length ", max_length,
               " allows; dropped ", dropped.size(), " tokens: \"", text, "\"");
    }
    if (truncated) ids.resize(max_length - 1);
    // _add_eos_if_not_present: ids that already end with </s> get no second one.
    if (ids.empty() || ids.back() != eos_id_) ids.push_back(eos_id_);
    for (size_t i = 0; i < ids.size(); ++i) {
      ids_acc[b][static_cast<int64_t>(i)] = ids[i];
      mask_acc[b][static_cast<int64_t>(i)] = 1;
    }
  }
  return out;
}

}  // namespace t4g
