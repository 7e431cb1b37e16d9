// Where tests find their inputs. The repository ships the demo model, demo text and
// fixtures; ../shared (beside the checkout, present on developer machines and in CI)
// holds the Hugging Face reference outputs.
#pragma once

#include <filesystem>

namespace gptq::test {

inline std::filesystem::path source_dir() { return GPTQ_SOURCE_DIR; }
inline std::filesystem::path shared_dir() { return source_dir().parent_path() / "shared"; }
inline std::filesystem::path stories15m_dir() { return source_dir() / "models" / "stories15M"; }
inline std::filesystem::path stories15m_reference() {
  return shared_dir() / "models" / "stories15M" / "reference";
}
inline std::filesystem::path fixtures_dir() { return source_dir() / "tests" / "fixtures"; }
inline std::filesystem::path cli_binary() { return GPTQ_BINARY; }
// SmolLM2-135M-Instruct (Q4_1 GGUF), fetched by scripts/fetch_smollm2 (run by scripts/setup).
inline std::filesystem::path smollm2_gguf() {
  return source_dir() / ".cache" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf";
}
inline std::filesystem::path smollm2_reference() { return fixtures_dir() / "smollm2"; }

}  // namespace gptq::test
