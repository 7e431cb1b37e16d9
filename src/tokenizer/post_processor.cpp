#include "tokenizer/post_processor.h"

#include <cstdint>
#include <map>
#include <optional>

namespace gptq::tok {

namespace {

class Template final : public PostProcessor {
 public:
  // Each item is either a run of special ids or the input sequence (nullopt).
  explicit Template(std::vector<std::optional<std::vector<int32_t>>> items) : items_(std::move(items)) {}
  std::vector<int32_t> process(std::vector<int32_t> ids) const override {
    std::vector<int32_t> out;
    out.reserve(ids.size() + 4);
    for (const auto& item : items_) {
      if (item) {
        out.insert(out.end(), item->begin(), item->end());
      } else {
        out.insert(out.end(), ids.begin(), ids.end());
      }
    }
    return out;
  }

 private:
  std::vector<std::optional<std::vector<int32_t>>> items_;
};

// ByteLevel only trims offsets; ids pass through unchanged.
class Identity final : public PostProcessor {
 public:
  std::vector<int32_t> process(std::vector<int32_t> ids) const override { return ids; }
};

class Sequence final : public PostProcessor {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  std::vector<int32_t> process(std::vector<int32_t> ids) const override {
    for (const auto& part : parts_) ids = part->process(std::move(ids));
    return ids;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

std::unique_ptr<PostProcessor> make_template(const Json& spec, const std::string& where) {
  // special_tokens: name -> {"ids": [...]}, referenced by the template items.
  std::map<std::string, std::vector<int32_t>> specials;
  const Json& table = require(spec, "special_tokens", where);
  if (!table.is_object()) fail_format(where, "\"special_tokens\" must be an object");
  for (const auto& [name, entry] : table.items()) {
    const Json& ids = require(entry, "ids", where);
    if (!ids.is_array()) fail_format(where, "special token \"" + name + "\": \"ids\" must be an array");
    std::vector<int32_t> list;
    for (const Json& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        fail_format(where, "special token \"" + name + "\": bad id " + id.dump());
      }
      list.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
    specials[name] = std::move(list);
  }
  const Json& single = require(spec, "single", where);
  if (!single.is_array()) fail_format(where, "\"single\" must be an array");
  std::vector<std::optional<std::vector<int32_t>>> items;
  for (const Json& item : single) {
    if (item.contains("SpecialToken")) {
      const std::string name = get_string(item["SpecialToken"], "id", where);
      const auto it = specials.find(name);
      if (it == specials.end()) fail_format(where, "template uses undefined special token \"" + name + "\"");
      items.emplace_back(it->second);
    } else if (item.contains("Sequence")) {
      if (get_string(item["Sequence"], "id", where) != "A") {
        fail_format(where, "the single template may only use sequence \"A\"");
      }
      items.emplace_back(std::nullopt);
    } else {
      fail_format(where, "template item must be SpecialToken or Sequence, found " + item.dump());
    }
  }
  return std::make_unique<Template>(std::move(items));
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const Json& spec, const std::string& where) {
  if (spec.is_null()) return nullptr;
  const std::string type = get_type(spec, where);
  const std::string here = where + " (" + type + ")";
  if (type == "TemplateProcessing") return make_template(spec, here);
  if (type == "ByteLevel") return std::make_unique<Identity>();
  if (type == "Sequence") {
    const Json& list = require(spec, "processors", here);
    if (!list.is_array()) fail_format(here, "\"processors\" must be an array");
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (const Json& item : list) {
      auto part = make_post_processor(item, where);
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  fail_unsupported(where, "unsupported post_processor type \"" + type +
                              "\" (supported: TemplateProcessing, ByteLevel, Sequence)");
}

}  // namespace gptq::tok
