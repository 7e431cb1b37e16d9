// Where tests find their inputs. The repository ships the demo model, demo text and
// fixtures; ../shared (beside the checkout, present on developer machines and in CI)
// holds the Hugging Face reference outputs.
#pragma once

#include <cstdlib>
#include <filesystem>

namespace gptq::test {

// GPTQ_TEST_SOURCE_DIR / GPTQ_TEST_BINARY / GPTQ_TEST_SHARED_DIR override the paths
// compiled in, for test binaries bundled to another machine (scripts/bundle-gpu).
inline std::filesystem::path env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != 0 ? std::filesystem::path(v) : std::filesystem::path(fallback);
}
inline std::filesystem::path source_dir() { return env_or("GPTQ_TEST_SOURCE_DIR", GPTQ_SOURCE_DIR); }
inline std::filesystem::path shared_dir() {
  return env_or("GPTQ_TEST_SHARED_DIR", (source_dir().parent_path() / "shared").c_str());
}
inline std::filesystem::path stories15m_dir() { return source_dir() / "models" / "stories15M"; }
inline std::filesystem::path stories15m_reference() {
  return shared_dir() / "models" / "stories15M" / "reference";
}
inline std::filesystem::path fixtures_dir() { return source_dir() / "tests" / "fixtures"; }
inline std::filesystem::path cli_binary() { return env_or("GPTQ_TEST_BINARY", GPTQ_BINARY); }
// SmolLM2-135M-Instruct (Q4_1 GGUF), fetched by scripts/fetch_smollm2 (run by scripts/setup).
inline std::filesystem::path smollm2_gguf() {
  return source_dir() / ".cache" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf";
}
inline std::filesystem::path smollm2_reference() { return fixtures_dir() / "smollm2"; }

}  // namespace gptq::test
