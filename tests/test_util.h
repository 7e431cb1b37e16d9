// Helpers shared by the test suites: reading files, and checking that an error is the
// one expected.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <string>

#include "core/error.h"
#include <optional>

namespace gptq::test {

// Tests that compare with ../shared's reference outputs skip, saying why, where that
// folder is absent (a checkout copied to another machine without it).
#define GPTQ_REQUIRE_SHARED(dir)                                                                   \
  do {                                                                                             \
    if (!std::filesystem::exists(dir)) GTEST_SKIP() << "skipped: reference folder " << (dir) << " is absent"; \
  } while (0)

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << p;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline nlohmann::json load_json(const std::filesystem::path& p) { return nlohmann::json::parse(read_file(p)); }

// Runs f and expects a gptq::Error whose message contains `fragment` (and, if given,
// of `kind`).
template <class F>
void expect_error(F&& f, const std::string& fragment, std::optional<ErrorKind> kind = std::nullopt) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing \"" << fragment << "\"";
  } catch (const Error& e) {
    if (kind) {
      EXPECT_EQ(e.kind(), *kind) << e.what();
    }
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

inline double logsumexp(std::span<const float> row) {
  const double mx = *std::max_element(row.begin(), row.end());
  double s = 0.0;
  for (float v : row) s += std::exp(double(v) - mx);
  return mx + std::log(s);
}

// A test-name suffix from a fixture folder name ("llama3-gqa" -> "llama3_gqa").
struct FolderParamName {
  template <class Info>
  std::string operator()(const Info& info) const {
    std::string n = info.param;
    std::replace(n.begin(), n.end(), '-', '_');
    return n;
  }
};

}  // namespace gptq::test
