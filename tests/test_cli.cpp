// The command line as a user runs it: outputs, JSON, and one-line errors with a
// non-zero exit status.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "temp_dir.h"
#include "test_paths.h"
#include "test_util.h"

namespace gptq {
namespace {

struct Result {
  int status = -1;
  std::string out;  // stdout and stderr, as the command is given
};

Result run(const std::string& args, const std::string& stdin_pipe = "") {
  const std::string cmd = stdin_pipe + test::cli_binary().string() + " " + args;
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string model_dir() { return test::stories15m_dir().string(); }

TEST(Cli, InfoJson) {
  const auto r = run("info " + model_dir() + " --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "LlamaForCausalLM");
  EXPECT_EQ(j["layers"], 6);
  // 32000x288 embedding + 6 x (4 x 288² attention + 3 x 288x768 MLP + 2 x 288 norms) + 288
  EXPECT_EQ(j["parameters"], 32000 * 288 + 6 * (4 * 288 * 288 + 3 * 288 * 768 + 2 * 288) + 288);
  EXPECT_EQ(j["tensors"].size(), 1u + 6u * 9u + 1u);
}

TEST(Cli, TokenizeAndDecode) {
  auto r = run("tokenize " + model_dir() + " --text 'Once upon a time' --json");
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ids"], (std::vector<int>{1, 9038, 2501, 263, 931}));
  EXPECT_EQ(j["pieces"][1], "▁Once");
  r = run("tokenize " + model_dir() + " --decode '1 9038 2501 263 931'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, "<s> Once upon a time\n");
}

TEST(Cli, GreedyGenerateStreamsTheReferenceText) {
  // greedy.json's second prompt; the first 40 tokens of transformers' continuation.
  const auto r = run("generate " + model_dir() + " --prompt 'Once upon a time' --temperature 0 --max-new-tokens 12 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.rfind("Once upon a time, there was a little girl named Lily. She loved", 0), 0u) << r.out;
}

TEST(Cli, GeneratePromptFromStdinAndReportsSpeed) {
  const auto r = run("generate " + model_dir() + " --prompt - --max-new-tokens 5 --seed 3 2>&1",
                     "printf 'Tom had a red ball.' | ");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("Tom had a red ball."), std::string::npos);
  EXPECT_NE(r.out.find("tok/s"), std::string::npos);
}

// The thread policy and the OpenMP wait policy reach the run: passive unless the user
// chose (main re-executes itself with it set, core/omp_policy.h), auto threads unless fixed.
TEST(Cli, PassiveWaitAndFittedThreadsByDefault) {
  const std::string gen = "generate " + model_dir() + " --device cpu --prompt hi --max-new-tokens 1 2>&1";
  auto r = run(gen, "env -u OMP_WAIT_POLICY ");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("CPU threads auto, up to "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("OpenMP wait passive"), std::string::npos) << r.out;
  r = run(gen + " --threads 1", "OMP_WAIT_POLICY=active ");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("CPU threads 1, OpenMP wait active"), std::string::npos) << r.out;
}

TEST(Cli, PplJsonHasTheFields) {
  const auto r = run("ppl " + model_dir() + " --text " + (test::source_dir() / "data/stories15M-samples.txt").string() +
                     " --max-windows 3 --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"ppl", "mean_nll", "windows", "scored_tokens"}) EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["windows"], 3);
  EXPECT_EQ(j["scored_tokens"], 3 * 255);
  EXPECT_GT(j["ppl"].get<double>(), 1.0);
  EXPECT_LT(j["ppl"].get<double>(), 20.0);
}

// Errors: one line on stderr, no stack trace, non-zero status.
void expect_one_line_error(const std::string& args, const std::string& fragment) {
  const auto r = run(args + " 2>&1 >/dev/null");
  EXPECT_NE(r.status, 0) << args;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_EQ(r.out.rfind("gptq: ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find(fragment), std::string::npos) << r.out;
}

// A command-line mistake: exit status 2 (not CLI11's own 1xx codes), one line naming the
// problem and the command whose --help lists the options.
void expect_bad_argument(const std::string& args, const std::string& fragment) {
  const auto r = run(args + " 2>&1 >/dev/null");
  EXPECT_EQ(r.status, 2) << args << "\n" << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << args << "\n" << r.out;
  EXPECT_EQ(r.out.rfind("gptq: invalid argument: ", 0), 0u) << args << "\n" << r.out;
  EXPECT_NE(r.out.find(fragment), std::string::npos) << args << "\n" << r.out;
}

TEST(Cli, EveryParseFailureExitsWithStatusTwo) {
  // The parser fails before the model is opened, so a path that does not exist is enough.
  const std::string m = "/nonexistent/model";
  expect_bad_argument("", "A subcommand is required");
  expect_bad_argument("quantise " + m, "unknown command 'quantise'; the commands are info, tokenize");
  expect_bad_argument("--verbose info " + m, "not expected: --verbose");
  expect_bad_argument("--verbose", "unknown option '--verbose'");
  struct Case {
    std::string args, fragment;
  };
  const std::vector<Case> cases = {
      // info
      {"info", "model is required"},
      {"info " + m + " extra", "not expected: extra"},
      {"info " + m + " --nope", "not expected: --nope"},
      {"info " + m + " --json=maybe", "Could not convert: --json = maybe"},
      // tokenize
      {"tokenize --text hi", "model is required"},
      {"tokenize " + m + " extra --text hi", "not expected: extra"},
      {"tokenize " + m + " --nope", "not expected: --nope"},
      {"tokenize " + m + " --text", "--text: 1 required TEXT missing"},
      {"tokenize " + m + " --text a --decode 1", "--text excludes --decode"},
      // generate
      {"generate --prompt hi", "model is required"},
      {"generate " + m, "--prompt is required"},
      {"generate " + m + " extra --prompt hi", "not expected: extra"},
      {"generate " + m + " --prompt hi --nope", "not expected: --nope"},
      {"generate " + m + " --prompt hi --max-new-tokens many", "Could not convert: --max-new-tokens = many"},
      {"generate " + m + " --prompt hi --temperature warm", "Could not convert: --temperature = warm"},
      {"generate " + m + " --prompt hi --top-k 1.5", "Could not convert: --top-k = 1.5"},
      // ppl
      {"ppl --text x", "model is required"},
      {"ppl " + m + " --text a --texts b", "--text excludes --texts"},
      {"ppl " + m + " --texts b --limit some", "Could not convert: --limit = some"},
      {"ppl " + m + " extra --text x", "not expected: extra"},
      {"ppl " + m + " --text x --nope", "not expected: --nope"},
      {"ppl " + m + " --text x --ctx 1.5", "Could not convert: --ctx = 1.5"},
      {"ppl " + m + " --text x --max-windows all", "Could not convert: --max-windows = all"},
      {"ppl " + m + " --text x --threads 0", "--threads: expected auto or a whole number >= 1"},
      {"generate " + m + " --prompt hi --threads many", "--threads: expected auto or a whole number >= 1"},
      {"quantize " + m + " --out o --calib c --threads -2", "--threads: expected auto or a whole number >= 1"},
      {"quantize " + m + " --out o --calib c --devices cpu,,cpu", "--devices cpu,,cpu: an empty device name"},
      // quantize
      {"quantize --out o", "model is required"},
      {"quantize " + m, "--out is required"},
      {"quantize " + m + " extra --out o", "not expected: extra"},
      {"quantize " + m + " --out o --nope", "not expected: --nope"},
      {"quantize " + m + " --out o --bits 5", "--bits: 5 not in {2,3,4,8}"},
      {"quantize " + m + " --out o --bits four", "--bits"},
      {"quantize " + m + " --out o --group-size x", "Could not convert: --group-size = x"},
      {"quantize " + m + " --out o --n-samples 1.5", "Could not convert: --n-samples = 1.5"},
      {"quantize " + m + " --out o --damp high", "Could not convert: --damp = high"},
      {"quantize " + m + " --out o --method awq", "--method: awq not in {gptq,rtn}"},
      {"quantize " + m + " --out o --format gptq_v3", "--format: gptq_v3 not in"},
      {"quantize " + m + " --out o --calib-mode lines", "--calib-mode: lines not in {windows,docs}"},
      {"quantize " + m + " --out o --sym --asym", "--sym excludes --asym"},
      {"quantize " + m + " --out o --calib", "--calib: 1 required TEXT missing"},
      // eval, kld
      {"eval --tasks t", "model is required"},
      {"eval " + m, "--tasks is required"},
      {"eval " + m + " --tasks t --nope", "not expected: --nope"},
      {"eval " + m + " --tasks t --limit x", "Could not convert: --limit = x"},
      {"kld --text t", "models is required"},
      {"kld " + m + " b c --text t", "models: At Most 2 required but received 3"},
      {"kld " + m + " b --text t --ctx x", "Could not convert: --ctx = x"},
      {"kld " + m + " b --text t --nope", "not expected: --nope"},
      {"kld " + m + " --save-base-logits x --base-logits y", "--save-base-logits excludes --base-logits"},
      // convert
      {"convert --out o", "model is required"},
      {"convert " + m + ".gguf", "--out is required"},
      {"convert " + m + ".gguf extra --out o", "not expected: extra"},
      {"convert " + m + ".gguf --out o --nope", "not expected: --nope"},
      {"convert " + m + ".gguf --out o --dtype f8", "--dtype"},
  };
  for (const auto& c : cases) expect_bad_argument(c.args, c.fragment);
}

TEST(Cli, LoadTimeQuantizationFlags) {
  // Declared once for every command that loads a model.
  for (const char* cmd : {"generate", "ppl", "eval", "kld", "compare", "info", "convert"}) {
    const auto r = run(std::string(cmd) + " --help");
    for (const char* flag : {"--load-in-4bit", "--double-quant", "--blocksize", "--load-in-8bit", "--llm-int8-threshold"}) {
      EXPECT_NE(r.out.find(flag), std::string::npos) << cmd << " lacks " << flag;
    }
  }
  const std::string m = model_dir();
  expect_bad_argument("ppl " + m + " --text x --load-in-4bit=int4", "--load-in-4bit: int4 not in {nf4,fp4}");
  expect_bad_argument("ppl " + m + " --text x --load-in-4bit --load-in-8bit", "--load-in-4bit excludes --load-in-8bit");
  expect_bad_argument("info " + m + " --double-quant", "--double-quant needs --load-in-4bit");
  expect_bad_argument("info " + m + " --load-in-8bit --blocksize 128", "--blocksize needs --load-in-4bit");
  expect_bad_argument("info " + m + " --load-in-4bit --blocksize 96", "expected a power of two from 64 to 4096");
  // convert writes a bnb checkpoint with them; the unquantized tensors keep their dtype.
  expect_bad_argument("convert " + m + " --out /tmp/never --load-in-4bit --dtype f32",
                      "--dtype cannot be combined with --load-in-*");
  expect_bad_argument("convert " + m + " --out /tmp/never", "(or a dense checkpoint with --load-in-4bit");

  // info predicts what the load will keep; ppl reports what it kept, the same bytes.
  auto r = run("info " + m + " --load-in-4bit --double-quant --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto info = nlohmann::json::parse(r.out)["load_quantization"];
  EXPECT_EQ(info["method"], "bnb nf4 b64 double-quant");
  // 6 layers x (4 x 288² + 3 x 288 x 768) fp16 weights, in 2 bytes each.
  const int64_t weights = 6 * (4 * 288 * 288 + 3 * 288 * 768);
  EXPECT_EQ(info["weights"], weights);
  EXPECT_EQ(info["dense_bytes"], 2 * weights);
  r = run("ppl " + m + " --text " + (test::source_dir() / "data" / "emma.txt").string() +
          " --max-windows 1 --load-in-4bit --double-quant --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto ppl = nlohmann::json::parse(r.out);
  EXPECT_EQ(ppl["load_quantization"]["quantized_bytes"], info["quantized_bytes"]);
  // Codes (½ byte per weight) + 1 byte per block of 64 + 4 per group of 256 blocks.
  EXPECT_LT(ppl["load_quantization"]["quantized_bytes"].get<double>(), 0.52 * weights);
  r = run("generate " + m + " --prompt 'Once upon a time' --max-new-tokens 8 --temperature 0 --load-in-8bit 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("load-time quantization: bnb int8 threshold 6, 42 linears"), std::string::npos) << r.out;
}

TEST(Cli, HelpAndVersionExitWithStatusZero) {
  for (const char* args : {"--help", "--version", "info --help", "tokenize --help", "generate --help", "ppl --help",
                           "convert --help", "eval --help", "kld --help", "quantize --help"}) {
    const auto r = run(std::string(args) + " 2>&1");
    EXPECT_EQ(r.status, 0) << args << "\n" << r.out;
    EXPECT_FALSE(r.out.empty()) << args;
  }
}

TEST(Cli, QuantizeRtnWritesAStandardCheckpoint) {
  const std::string out = (std::filesystem::temp_directory_path() / "gptq-cli-rtn").string();
  const auto r = run("quantize " + model_dir() + " --out " + out +
                     " --method rtn --bits 3 --group-size 32 --asym --format gptq_v2 --overwrite --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["shards"], 1);
  // 3 bits + (fp16 scale + 3-bit zero) / 32 + 32-bit g_idx / N per weight: a little over 3.6.
  EXPECT_GT(j["bpw_quantized"].get<double>(), 3.5);
  EXPECT_LT(j["bpw_quantized"].get<double>(), 3.8);
  for (const char* f : {"config.json", "quantize_config.json", "model.safetensors", "tokenizer.json",
                        "generation_config.json", "quant_log.json"}) {
    EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(out) / f)) << f;
  }
  const auto info = nlohmann::json::parse(run("info " + out + " --json").out);
  EXPECT_EQ(info["quantization_config"]["bits"], 3);
  EXPECT_EQ(info["quantization_config"]["sym"], false);
  EXPECT_EQ(info["quantization_config"]["checkpoint_format"], "gptq_v2");
  EXPECT_EQ(info["parameters"], 15191712);
  std::filesystem::remove_all(out);
}

// --devices runs one rank per listed device (here two CPU ranks, sharing its cores): the
// same checkpoint layout as one device, and --json says how many ranks ran.
// (tests/test_quantize_parallel.cpp compares the codes.)
TEST(Cli, QuantizeOnSeveralDevices) {
  test::TempDir d;
  const std::string common = "quantize " + model_dir() + " --calib " + (test::source_dir() / "data" / "web-bible.txt").string() +
                             " --n-samples 4 --seq-len 64 --batch-size 1 --json";
  const auto one = run(common + " --device cpu --out " + (d.path() / "one").string() + " 2>/dev/null");
  const auto two = run(common + " --devices cpu,cpu --out " + (d.path() / "two").string() + " 2>/dev/null");
  ASSERT_EQ(one.status, 0) << one.out;
  ASSERT_EQ(two.status, 0) << two.out;
  EXPECT_EQ(nlohmann::json::parse(one.out)["ranks"], 1);
  const auto j = nlohmann::json::parse(two.out);
  EXPECT_EQ(j["ranks"], 2);
  EXPECT_EQ(j["modules"], nlohmann::json::parse(one.out)["modules"]);
  EXPECT_EQ(j["tensor_bytes"], nlohmann::json::parse(one.out)["tensor_bytes"]);
  const auto r = run(common + " --devices cpu,cpu,cpu,cpu,cpu --out " + (d.path() / "five").string() + " 2>&1");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("makes 4 forward chunks (4 samples), fewer than the 5 devices"), std::string::npos) << r.out;
}

// The lines quantize prints on stderr that start with "gptq: warning: ".
std::vector<std::string> warnings(const std::string& stderr_text) {
  std::vector<std::string> w;
  std::istringstream in(stderr_text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("gptq: warning: ", 0) == 0) w.push_back(line);
  }
  return w;
}

// --asym without --format writes gptq_v2, the format GPTQModel, transformers and gptq.cpp
// all take for asymmetric weights; symmetric stays v1. Both files carry the same config.
TEST(Cli, AsymmetricCheckpointsDefaultToV2) {
  test::TempDir d;
  for (const auto& [flags, format] : {std::pair<std::string, std::string>{"--asym", "gptq_v2"}, {"", "gptq"}}) {
    const std::string out = (d.path() / ("out" + format)).string();
    const auto r = run("quantize " + model_dir() + " --out " + out + " --method rtn --bits 4 --group-size 32 " + flags +
                       " 2>&1 >/dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    const auto qc = test::load_json(std::filesystem::path(out) / "config.json")["quantization_config"];
    EXPECT_EQ(qc, test::load_json(std::filesystem::path(out) / "quantize_config.json"));
    EXPECT_EQ(qc["checkpoint_format"], format);  // read by vLLM and optimum
    EXPECT_EQ(qc["format"], format);             // read by GPTQModel
    EXPECT_EQ(qc["sym"], flags.empty());
    EXPECT_EQ(qc["meta"]["quantizer"], "gptq.cpp:" GPTQ_VERSION);
    const auto info = nlohmann::json::parse(run("info " + out + " --json").out);
    EXPECT_EQ(info["loaders"]["GPTQModel"]["loads"], true) << info["loaders"].dump();
    EXPECT_EQ(info["loaders"]["transformers"]["loads"], true) << info["loaders"].dump();
    EXPECT_EQ(info["loaders"]["vLLM"]["loads"], flags.empty()) << info["loaders"].dump();  // Marlin: sym only
    EXPECT_EQ(warnings(r.out).size(), flags.empty() ? 0u : 1u) << r.out;
  }
  // Chosen explicitly, asymmetric v1 is written, with GPTQModel's refusal said up front.
  const auto r = run("quantize " + model_dir() + " --out " + (d.path() / "v1").string() +
                     " --method rtn --bits 4 --group-size 32 --asym --format gptq 2>&1 >/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("gptq: warning: GPTQModel refuses asymmetric (sym=false) checkpoints in format gptq (v1)"),
            std::string::npos) << r.out;
}

TEST(Cli, QuantizedLmHeadWarnsThatTransformersCannotLoadIt) {
  test::TempDir d;
  const auto r = run("quantize " + model_dir() + " --out " + (d.path() / "head").string() +
                     " --method rtn --bits 4 --group-size 32 --lm-head 2>&1 >/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto w = warnings(r.out);
  ASSERT_EQ(w.size(), 1u) << r.out;
  EXPECT_EQ(w[0], "gptq: warning: transformers cannot load a quantized lm_head (lm_head: true): it silently keeps a "
                  "randomly initialised head (measured perplexity ~5e5); GPTQModel and gptq.cpp load it");
  const auto info = run("info " + (d.path() / "head").string());
  EXPECT_NE(info.out.find("  transformers  no: cannot load a quantized lm_head"), std::string::npos) << info.out;
}

// GPTQModel's own layout (tests/fixtures/gptqmodel) on the matching 2-bit asym v1 tensors.
TEST(Cli, InfoReadsGptqModelMeta) {
  test::TempDir d;
  const auto src = test::fixtures_dir() / "gptq" / "mistral-2bit";
  std::filesystem::copy_file(src / "model.safetensors", d.path() / "model.safetensors");
  const auto gm = test::load_json(test::fixtures_dir() / "gptqmodel" / "quantize_config.json");
  auto config = test::load_json(src / "config.json");
  config["quantization_config"] = gm;
  d.write("config.json", config.dump(2));
  d.write("quantize_config.json", gm.dump(2));
  const auto r = run("info " + d.path().string() + " --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["quantization_config"]["act_group_aware"], true);
  EXPECT_EQ(j["quantization_config"]["damp_percent"], 0.025);
  EXPECT_EQ(j["quantization_config"]["damp_auto_increment"], 0.0025);
  EXPECT_EQ(j["quantization_config"]["meta"]["quantizer"], nlohmann::json::array({"gptqmodel:7.6.0"}));
  EXPECT_EQ(j["loaders"]["GPTQModel"]["loads"], true);  // its own asymmetric v1 passes its guard
  const auto text = run("info " + d.path().string());
  EXPECT_NE(text.out.find("by gptqmodel:7.6.0"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("made with act_group_aware on"), std::string::npos) << text.out;
}

TEST(Cli, ErrorsAreOneLine) {
  expect_one_line_error("quantize " + model_dir() + " --out /tmp/never --calib x --group-size 0",
                        "group size 0 must be -1 or positive");
  expect_one_line_error("quantize " + model_dir() + " --out /tmp/never --group-size 32", "--calib");
  expect_one_line_error("quantize " + model_dir() + " --out /tmp/never --group-size 32 --calib /nonexistent.txt", "/nonexistent.txt");
  expect_one_line_error("ppl " + model_dir() + " --text /nonexistent.txt", "/nonexistent.txt: cannot open");
  expect_one_line_error("generate " + model_dir() + " --prompt hi --top-p 0", "top-p");
  expect_one_line_error("tokenize " + model_dir() + " --decode '1 x'", "not a list of integers");
}

// The issue-6 case: 200 kB of random bytes as --calib used to give a "successful" checkpoint.
TEST(Cli, QuantizeRefusesCalibrationThatIsNotText) {
  test::TempDir d;
  std::string bytes(200000, '\0');
  uint32_t x = 12345;
  for (char& c : bytes) c = static_cast<char>((x = x * 1664525u + 1013904223u) >> 24);
  const auto bin = d.write("random.bin", bytes);
  const auto parquet = d.write("data.parquet", "PAR1" + bytes.substr(0, 100) + "PAR1");
  const std::string q = "quantize " + model_dir() + " --out " + (d.path() / "out").string() + " --group-size 32 --calib ";
  expect_one_line_error(q + bin.string(), "random.bin' (its first 64 KiB) is not text");
  expect_one_line_error(q + parquet.string(), "data.parquet' is a Parquet file");
  EXPECT_FALSE(std::filesystem::exists(d.path() / "out"));
}

TEST(Cli, ModelPathThatIsNotAModelSaysSo) {
  const std::string nope = "/nonexistent/model";
  for (const std::string& cmd : {"info " + nope, "tokenize " + nope + " --text hi", "generate " + nope + " --prompt hi",
                                "ppl " + nope + " --text x", "quantize " + nope + " --out /tmp/never --method rtn",
                                "quantize " + nope + " --out /tmp/never --calib x", "eval " + nope + " --tasks t",
                                "kld " + nope + " " + model_dir() + " --text t", "kld " + model_dir() + " " + nope + " --text t"}) {
    expect_one_line_error(cmd, "model directory '/nonexistent/model' does not exist");
  }
  for (const std::string& cmd : {"info " + nope + ".gguf", "generate " + nope + ".gguf --prompt hi",
                                 "convert " + nope + ".gguf --out /tmp/never"}) {
    expect_one_line_error(cmd, "model file '/nonexistent/model.gguf' does not exist");
  }
  const std::string file = (test::source_dir() / "README.md").string();
  expect_one_line_error("info " + file, file + "' is not a directory; a model is a Hugging Face checkpoint directory");
  const std::string tests = (test::source_dir() / "tests").string();
  expect_one_line_error("generate " + tests + " --prompt hi", tests + "' is not a model directory: it has no config.json");
  // A directory with config.json but no tokenizer: info works, the commands that encode text say what is missing.
  test::TempDir d;
  std::filesystem::copy_file(test::stories15m_dir() / "config.json", d.path() / "config.json");
  const std::string dir = d.path().string();
  for (const std::string& cmd : {"tokenize " + dir + " --text hi", "generate " + dir + " --prompt hi", "ppl " + dir + " --text x"}) {
    expect_one_line_error(cmd, dir + "' has no tokenizer.json");
  }
}

TEST(Cli, EvalJsonAndPerTextPpl) {
  const std::string task = (test::source_dir() / "data" / "mc" / "bsdgames-quiz.jsonl").string();
  auto r = run("eval " + model_dir() + " --tasks " + task + " --limit 8 --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["tasks"].size(), 1u);
  EXPECT_EQ(j["tasks"][0]["items"], 8);
  EXPECT_EQ(j["tasks"][0]["requests"], 32);
  const double acc = j["tasks"][0]["acc"]["value"];
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
  const std::string docs = (test::fixtures_dir() / "eval" / "stories-docs.jsonl.gz").string();
  r = run("ppl " + model_dir() + " --texts " + docs + " --limit 5 --max-length 64 --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["scored_texts"], 5);
  EXPECT_EQ(j["per_text_ppl"].size(), 5u);
}

TEST(Cli, EvalAndKldErrorsAreOneLine) {
  const auto dir = std::filesystem::temp_directory_path() / "gptq-cli-eval";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "nochoices.jsonl") << "{\"query\": \"q\", \"choices\": [], \"gold\": 0}\n";
  expect_one_line_error("eval " + model_dir() + " --tasks " + (dir / "nochoices.jsonl").string(), "0 choice(s)");
  std::ofstream(dir / "bad.txt", std::ios::binary) << "ok \xff\xfe text";
  expect_one_line_error("kld " + model_dir() + " " + model_dir() + " --text " + (dir / "bad.txt").string(),
                        "not valid UTF-8");
  expect_one_line_error("kld " + model_dir() + " --text " + (dir / "bad.txt").string(), "--save-base-logits");
  std::ofstream(dir / "not.kld") << "hello";
  expect_one_line_error("kld " + model_dir() + " --base-logits " + (dir / "not.kld").string(), "GPTQKLD1");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gptq
