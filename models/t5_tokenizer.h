// The CogVideoX pipeline's prompt tokenization: transformers' slow (SentencePiece) T5Tokenizer with
// legacy=true, as the `tokenizer/` folder configures it, on libsentencepiece (models/sentencepiece_model).
// Added tokens (<pad>, </s>, <unk>, <extra_id_N>) are split out of the text first with their
// lstrip/rstrip rules, the rest goes through spiece.model, then truncation to max_length-1, </s> unless the
// ids already end with it, and right padding with <pad>: the ids CogVideoX's T5 was trained on.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/sentencepiece_model.h"

namespace t4g {

// One added token of tokenizer_config.json's added_tokens_decoder (transformers' AddedToken).
struct T5AddedToken {
  std::string content;       // "<extra_id_0>"
  int64_t id = 0;            // its id
  bool lstrip = false;       // eats whitespace on its left
  bool rstrip = false;       // eats whitespace on its right
  bool single_word = false;  // only matches as a whole word
};

// A tokenized batch, laid out as the pipeline passes it on.
struct TokenizedPrompts {
  torch::Tensor input_ids;       // int64 [B, max_length]: ids, </s>, then <pad>
  torch::Tensor attention_mask;  // int64 [B, max_length]: 1 on ids and </s>, 0 on padding
  std::vector<bool> truncated;   // per prompt: tokens were dropped to fit max_length
};

class T5Tokenizer {
 public:
  // Loads a transformers tokenizer folder: spiece.model plus tokenizer_config.json (legacy,
  // model_max_length, added_tokens_decoder, special token names) and special_tokens_map.json when
  // the config lacks the names. Without added_tokens_decoder the <extra_id_N> tokens are made as
  // transformers' T5Tokenizer makes them. A missing folder or spiece.model, a file that is not a
  // SentencePiece model, or legacy=false is one t4g::Error naming the file.
  static T5Tokenizer load(const std::string& folder);

  // Token ids of `text` without </s>, truncation or padding (tokenizer(text, add_special_tokens=False)).
  std::vector<int64_t> encode(const std::string& text) const;

  // The pipeline's call: tokenizer(prompts, padding="max_length", max_length, truncation=True,
  // add_special_tokens=True). A prompt longer than max_length-1 tokens is cut, with ONE warning
  // line naming the prompt and what was dropped (unless warn_truncation is false).
  TokenizedPrompts tokenize(const std::vector<std::string>& prompts, int64_t max_length = 226,
                            bool warn_truncation = true) const;

  // Text of ids (SentencePiece decode of the plain pieces; added tokens spelled out).
  std::string decode(const std::vector<int64_t>& ids) const;

  int64_t piece_count() const;                      // pieces in spiece.model
  int64_t size() const;                             // pieces plus added tokens beyond them (len(tokenizer))
  int64_t model_max_length() const { return model_max_length_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t unk_id() const { return unk_id_; }
  const std::string& folder() const { return folder_; }
  const std::vector<T5AddedToken>& added_tokens() const { return added_; }

 private:
  T5Tokenizer() = default;
  // Splits `text` at added tokens (leftmost, longest) and applies their strip rules; returns the
  // pieces of text and the index into added_ of each added token (-1 for text).
  std::vector<std::pair<std::string, int64_t>> split_added(const std::string& text) const;
  // spiece ids of plain text (no added tokens inside).
  void encode_plain(const std::string& text, std::vector<int64_t>* ids) const;

  std::string folder_;
  std::shared_ptr<SentencePieceModel> sp_;
  std::vector<T5AddedToken> added_;
  int64_t model_max_length_ = 226;
  int64_t pad_id_ = 0;
  int64_t eos_id_ = 1;
  int64_t unk_id_ = 2;
};

}  // namespace t4g
