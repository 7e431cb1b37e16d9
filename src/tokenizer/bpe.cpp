#include "tokenizer/bpe.h"

#include <cstdio>
#include <queue>

#include "tokenizer/utf8.h"

namespace gptq::tok {

namespace {

// Ids beyond this are rejected as corrupt: the id-indexed table would otherwise
// let a hostile file ask for gigabytes.
constexpr int64_t kMaxId = int64_t{1} << 26;

std::string optional_string(const Json& model, const char* key, const std::string& where) {
  const auto it = model.find(key);
  if (it == model.end() || it->is_null()) return {};
  if (!it->is_string()) fail_format(where, std::string("field \"") + key + "\" must be a string or null");
  return it->get<std::string>();
}

}  // namespace

Bpe::Bpe(const Json& model, const std::string& where) {
  if (const auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
    if (!it->is_number()) fail_format(where, "\"dropout\" must be a number or null");
    if (it->get<double>() > 0.0) fail_unsupported(where, "BPE dropout is not supported (it makes encoding random)");
  }
  const Json& vocab = require(model, "vocab", where);
  if (!vocab.is_object()) fail_format(where, "\"vocab\" must be an object of token -> id");
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxId) {
      fail_format(where, "vocab id of \"" + token + "\" must be an integer in [0, " + std::to_string(kMaxId) +
                             "), found " + id.dump());
    }
    max_id = std::max(max_id, id.get<int64_t>());
  }
  tokens_.resize(static_cast<std::size_t>(max_id + 1));
  has_token_.resize(tokens_.size());
  vocab_.reserve(vocab.size());
  for (const auto& [token, id_json] : vocab.items()) {
    const auto id = static_cast<int32_t>(id_json.get<int64_t>());
    vocab_.emplace(token, id);
    if (!has_token_[id]) {
      tokens_[id] = token;
      has_token_[id] = true;
    }
  }

  continuing_subword_prefix_ = optional_string(model, "continuing_subword_prefix", where);
  end_of_word_suffix_ = optional_string(model, "end_of_word_suffix", where);
  byte_fallback_ = get_bool(model, "byte_fallback", false, where);
  fuse_unk_ = get_bool(model, "fuse_unk", false, where);
  ignore_merges_ = get_bool(model, "ignore_merges", false, where);
  if (const std::string unk = optional_string(model, "unk_token", where); !unk.empty()) {
    const auto id = token_to_id(unk);
    if (!id) fail_format(where, "unk_token \"" + unk + "\" is not in the vocab");
    unk_id_ = *id;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_ids_[b] = token_to_id(name).value_or(-1);
  }
  load_merges(require(model, "merges", where), where);
}

void Bpe::load_merges(const Json& merges, const std::string& where) {
  if (!merges.is_array()) fail_format(where, "\"merges\" must be an array");
  merges_.reserve(merges.size());
  int32_t rank = 0;
  for (const Json& merge : merges) {
    std::string a, b;
    if (merge.is_string()) {
      // Legacy form "a b": exactly one space separates the two tokens.
      const std::string line = merge.get<std::string>();
      const auto space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        fail_format(where, "merge #" + std::to_string(rank) + " \"" + line + "\" is not \"a b\"");
      }
      a = line.substr(0, space);
      b = line.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      a = merge[0].get<std::string>();
      b = merge[1].get<std::string>();
    } else {
      fail_format(where, "merge #" + std::to_string(rank) + " must be \"a b\" or [\"a\", \"b\"], found " +
                             merge.dump());
    }
    const std::size_t strip = continuing_subword_prefix_.size();
    const std::string merged = a + (b.size() >= strip ? b.substr(strip) : b);
    const auto ia = token_to_id(a), ib = token_to_id(b), im = token_to_id(merged);
    if (!ia || !ib || !im) {
      fail_format(where, "merge #" + std::to_string(rank) + " (\"" + a + "\", \"" + b +
                             "\") uses a token that is not in the vocab");
    }
    // A repeated pair keeps its last rank, as the library's map construction does.
    merges_.insert_or_assign(pair_key(*ia, *ib), MergeResult{rank, *im});
    ++rank;
  }
}

std::optional<int32_t> Bpe::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size() || !has_token_[id]) return nullptr;
  return &tokens_[id];
}

const Bpe::MergeResult* Bpe::find_merge(int32_t a, int32_t b) const {
  const auto it = merges_.find(pair_key(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

void Bpe::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const auto id = token_to_id(word)) {
      out.push_back(*id);
      return;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  bool pending_unk = false;  // an unk not yet emitted, so fuse_unk can extend it
  const auto flush_unk = [&] {
    if (pending_unk) ids.push_back(*unk_id_);
    pending_unk = false;
  };
  std::string symbol;
  for (std::size_t pos = 0; pos < word.size();) {
    const std::size_t len = utf8::decode(word, pos).len;
    symbol.clear();
    if (pos > 0) symbol += continuing_subword_prefix_;
    symbol.append(word.substr(pos, len));
    if (pos + len == word.size()) symbol += end_of_word_suffix_;
    pos += len;
    if (const auto id = token_to_id(symbol)) {
      flush_unk();
      ids.push_back(*id);
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes = true;
      for (const char c : symbol) all_bytes = all_bytes && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all_bytes) {
        // As in the library, a pending unk is not flushed here: it lands after
        // these bytes.
        for (const char c : symbol) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    // Without an unk token the library silently drops unknown characters.
    if (!unk_id_) continue;
    if (!fuse_unk_) flush_unk();
    pending_unk = true;
  }
  flush_unk();
  merge_all(ids);
  out.insert(out.end(), ids.begin(), ids.end());
}

void Bpe::merge_all(std::vector<int32_t>& ids) const {
  if (ids.size() < 2) return;
  struct Node {
    int32_t id;
    int32_t prev, next;  // -1 at the ends
    bool alive;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    // std::priority_queue pops the largest: invert so the lowest rank, then the
    // leftmost position, comes first.
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const auto n = static_cast<int32_t>(ids.size());
  std::vector<Node> nodes(ids.size());
  std::vector<Candidate> initial;
  for (int32_t i = 0; i < n; ++i) {
    nodes[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1, true};
    if (i + 1 < n) {
      if (const MergeResult* m = find_merge(ids[i], ids[i + 1])) initial.push_back({m->rank, i, m->new_id});
    }
  }
  std::priority_queue<Candidate> queue(std::less<Candidate>{}, std::move(initial));
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Node& left = nodes[top.pos];
    if (!left.alive || left.next < 0) continue;
    // Skip stale entries: the pair at this position changed since it was queued.
    const MergeResult* current = find_merge(left.id, nodes[left.next].id);
    if (current == nullptr || current->new_id != top.new_id) continue;
    Node& right = nodes[left.next];
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) nodes[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const MergeResult* m = find_merge(nodes[left.prev].id, left.id)) {
        queue.push({m->rank, left.prev, m->new_id});
      }
    }
    if (left.next >= 0) {
      if (const MergeResult* m = find_merge(left.id, nodes[left.next].id)) {
        queue.push({m->rank, top.pos, m->new_id});
      }
    }
  }
  ids.clear();
  for (const Node& node : nodes) {
    if (node.alive) ids.push_back(node.id);
  }
}

}  // namespace gptq::tok
