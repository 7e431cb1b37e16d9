// Checkpoint writing: safetensors files the project's own reader accepts, sharding
// with transformers' names and index, and the all-or-nothing output directory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/checkpoint_writer.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using gptq::DType;
using gptq::Error;
using gptq::ErrorKind;
using gptq::io::Checkpoint;
using gptq::io::CheckpointWriter;
using gptq::io::CheckpointWriterOptions;

namespace {

// `n` distinct bytes starting at `seed`, so a tensor read from the wrong place shows.
std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte((seed * 31 + i * 7) & 0xff);
  return v;
}

std::vector<std::byte> as_bytes(std::span<const std::byte> s) { return {s.begin(), s.end()}; }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

struct Spec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

Spec spec(std::string name, DType dtype, std::vector<int64_t> shape, unsigned seed) {
  uint64_t n = gptq::dtype_size(dtype);
  for (int64_t d : shape) n *= uint64_t(d);
  return {std::move(name), dtype, std::move(shape), pattern(n, seed)};
}

void expect_tensor(const Checkpoint& ckpt, const Spec& s) {
  const gptq::io::TensorView* t = ckpt.find(s.name);
  ASSERT_NE(t, nullptr) << s.name;
  EXPECT_EQ(t->dtype, s.dtype) << s.name;
  EXPECT_EQ(t->shape, s.shape) << s.name;
  EXPECT_EQ(as_bytes(t->data), s.bytes) << s.name;
}

// A checkpoint of 40-byte F32 tensors "t0".."t{n-1}" written with `max_shard_bytes`.
std::vector<Spec> forty_byte_tensors(int n) {
  std::vector<Spec> specs;
  for (int i = 0; i < n; ++i) {
    std::string name = "t";  // not "t" + to_string(i): GCC 12 warns falsely (-Wrestrict) on that
    name += std::to_string(i);
    specs.push_back(spec(name, DType::kF32, {10}, unsigned(i)));
  }
  return specs;
}

void write_all(CheckpointWriter& w, const std::vector<Spec>& specs) {
  for (const Spec& s : specs) w.add_tensor(s.name, s.dtype, s.shape, s.bytes);
}

std::vector<Spec> mixed_dtypes() {
  return {spec("layers.0.w", DType::kF32, {2, 3}, 1), spec("layers.0.h", DType::kF16, {5}, 2),
          spec("layers.0.b", DType::kBF16, {3, 2}, 3), spec("layers.0.i", DType::kI32, {7}, 4),
          spec("empty", DType::kF32, {0, 4}, 5),       spec("scalar", DType::kF32, {}, 6)};
}

}  // namespace

TEST(CheckpointWriter, RoundTripsEveryDtypeThroughTheReader) {
  gptq::test::TempDir tmp;
  const fs::path out = tmp.path() / "out";
  const auto specs = mixed_dtypes();
  CheckpointWriter w(out);
  write_all(w, specs);
  const auto summary = w.commit();

  EXPECT_EQ(listing(out), std::vector<std::string>{"model.safetensors"});
  ASSERT_EQ(summary.shards.size(), 1u);
  EXPECT_EQ(summary.shards[0], out / "model.safetensors");
  EXPECT_TRUE(summary.index.empty());
  EXPECT_EQ(summary.tensor_count, specs.size());

  const Checkpoint ckpt(out);
  EXPECT_EQ(ckpt.names().size(), specs.size());
  uint64_t total = 0;
  for (const Spec& s : specs) {
    expect_tensor(ckpt, s);
    total += s.bytes.size();
  }
  EXPECT_EQ(summary.tensor_bytes, total);
  EXPECT_EQ(ckpt.shards()[0]->metadata().at("format"), "pt");
}

TEST(SafetensorsWriter, HeaderIsPaddedToEightBytesAndSortedWithContiguousOffsets) {
  gptq::test::TempDir tmp;
  // Names of every length mod 8, so some header needs each amount of padding.
  for (int len = 1; len <= 8; ++len) {
    const fs::path path = tmp.path() / ("f" + std::to_string(len) + ".safetensors");
    const auto b = pattern(12, 9), a = pattern(6, 8);
    gptq::io::write_safetensors(path, {{"b" + std::string(len, 'x'), DType::kF32, {3}, b},
                                       {"a", DType::kF16, {3}, a}});
    const std::string file = read_file(path);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = header_len << 8 | uint8_t(file[i]);
    EXPECT_EQ(header_len % 8, 0u) << path;
    EXPECT_EQ(file.size(), 8 + header_len + 18) << path;
    const auto header = nlohmann::ordered_json::parse(file.substr(8, header_len));
    std::vector<std::string> keys;
    for (const auto& [k, v] : header.items()) keys.push_back(k);
    EXPECT_EQ(keys, (std::vector<std::string>{"__metadata__", "a", "b" + std::string(len, 'x')}));
    EXPECT_EQ(header["a"]["data_offsets"], nlohmann::json({0, 6}));
    EXPECT_EQ(header["b" + std::string(len, 'x')]["data_offsets"], nlohmann::json({6, 18}));
    EXPECT_EQ(file.substr(8 + header_len, 6), std::string(reinterpret_cast<const char*>(a.data()), 6));
  }
}

TEST(CheckpointWriter, OutputDoesNotDependOnTheOrderTensorsAreAdded) {
  gptq::test::TempDir tmp;
  auto specs = mixed_dtypes();
  CheckpointWriter forward(tmp.path() / "forward");
  write_all(forward, specs);
  forward.commit();
  std::reverse(specs.begin(), specs.end());
  CheckpointWriter backward(tmp.path() / "backward");
  write_all(backward, specs);
  backward.commit();
  EXPECT_EQ(read_file(tmp.path() / "forward/model.safetensors"),
            read_file(tmp.path() / "backward/model.safetensors"));
}

TEST(CheckpointWriter, ShardsWithTransformersNamesAndAnIndexTheReaderAccepts) {
  gptq::test::TempDir tmp;
  const fs::path out = tmp.path() / "out";
  const auto specs = forty_byte_tensors(5);
  CheckpointWriter w(out, {.max_shard_bytes = 100});
  write_all(w, specs);
  const auto summary = w.commit();

  // 40 + 40 fit in 100, a third would not: shards of 2, 2 and 1 tensors.
  EXPECT_EQ(listing(out), (std::vector<std::string>{"model-00001-of-00003.safetensors",
                                                    "model-00002-of-00003.safetensors",
                                                    "model-00003-of-00003.safetensors",
                                                    "model.safetensors.index.json"}));
  EXPECT_EQ(summary.shards.size(), 3u);
  EXPECT_EQ(summary.index, out / "model.safetensors.index.json");

  const auto index = gptq::io::read_json_file(out / "model.safetensors.index.json");
  EXPECT_EQ(index["metadata"]["total_size"], 200);
  EXPECT_EQ(index["weight_map"]["t0"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["t1"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["t2"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["t3"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["t4"], "model-00003-of-00003.safetensors");

  const Checkpoint ckpt(out);
  EXPECT_EQ(ckpt.shards().size(), 3u);
  EXPECT_EQ(ckpt.names().size(), specs.size());
  for (const Spec& s : specs) expect_tensor(ckpt, s);
}

TEST(CheckpointWriter, TensorLargerThanTheShardLimitGetsAShardOfItsOwn) {
  gptq::test::TempDir tmp;
  const fs::path out = tmp.path() / "out";
  // Oversized first (no empty shard may come before it) and between small ones.
  const std::vector<Spec> specs = {spec("big1", DType::kF32, {100}, 1), spec("a", DType::kF32, {10}, 2),
                                   spec("big2", DType::kF32, {100}, 3), spec("c", DType::kF32, {10}, 4)};
  CheckpointWriter w(out, {.max_shard_bytes = 100});
  write_all(w, specs);
  const auto summary = w.commit();

  ASSERT_EQ(summary.shards.size(), specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const gptq::io::SafetensorsFile shard(summary.shards[i]);
    ASSERT_EQ(shard.tensors().size(), 1u) << summary.shards[i];
    EXPECT_EQ(shard.tensors().begin()->first, specs[i].name);
  }
  const Checkpoint ckpt(out);
  for (const Spec& s : specs) expect_tensor(ckpt, s);
}

TEST(CheckpointWriter, WithoutCommitLeavesNothingBehind) {
  gptq::test::TempDir tmp;
  {
    CheckpointWriter w(tmp.path() / "out", {.max_shard_bytes = 100});
    write_all(w, forty_byte_tensors(5));  // closes two shards on the way
    w.add_file("config.json", "{}");
    const auto during = listing(tmp.path());
    ASSERT_EQ(during.size(), 1u);
    EXPECT_TRUE(during[0].starts_with("out.tmp-")) << during[0];
  }
  EXPECT_TRUE(listing(tmp.path()).empty());
}

TEST(CheckpointWriter, AnExceptionPartWayLeavesNothingBehind) {
  gptq::test::TempDir tmp;
  try {
    CheckpointWriter w(tmp.path() / "out");
    write_all(w, forty_byte_tensors(2));
    throw std::runtime_error("quantisation failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_TRUE(listing(tmp.path()).empty());
}

TEST(CheckpointWriter, RefusesAnExistingOutputWithoutOverwriteAndLeavesItAlone) {
  gptq::test::TempDir tmp;
  const fs::path marker = tmp.write("out/keep.txt", "precious");
  try {
    CheckpointWriter w(tmp.path() / "out");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("--overwrite"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find((tmp.path() / "out").string()), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(marker), "precious");
  EXPECT_EQ(listing(tmp.path()), std::vector<std::string>{"out"});
}

TEST(CheckpointWriter, OverwriteReplacesTheOldDirectoryOnlyAtCommit) {
  gptq::test::TempDir tmp;
  const fs::path out = tmp.path() / "out";
  tmp.write("out/stale.txt", "old");
  const auto specs = forty_byte_tensors(1);
  CheckpointWriter w(out, {.overwrite = true});
  write_all(w, specs);
  EXPECT_TRUE(fs::exists(out / "stale.txt"));  // untouched until commit
  w.commit();

  EXPECT_EQ(listing(out), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(listing(tmp.path()), std::vector<std::string>{"out"});  // old copy deleted
  expect_tensor(Checkpoint(out), specs[0]);
}

TEST(CheckpointWriter, AddedAndCopiedFilesAppear) {
  gptq::test::TempDir tmp;
  const fs::path src = tmp.write("src/tokenizer.json", "{\"model\": {}}");
  const fs::path out = tmp.path() / "out";
  CheckpointWriter w(out);
  write_all(w, forty_byte_tensors(1));
  w.add_file("config.json", "{\"hidden_size\": 8}");
  w.copy_file(src, "tokenizer.json");
  const auto summary = w.commit();

  EXPECT_EQ(read_file(out / "config.json"), "{\"hidden_size\": 8}");
  EXPECT_EQ(read_file(out / "tokenizer.json"), "{\"model\": {}}");
  EXPECT_EQ(summary.files, (std::vector<fs::path>{out / "config.json", out / "tokenizer.json"}));
}

TEST(CheckpointWriter, RefusesFileNamesOutsideTheDirectoryOrClashingWithWeights) {
  gptq::test::TempDir tmp;
  CheckpointWriter w(tmp.path() / "out");
  for (const char* name : {"", "..", "../escape.json", "sub/x.json", "model.safetensors",
                           "model.safetensors.index.json", "model-00001-of-00002.safetensors"}) {
    try {
      w.add_file(name, "x");
      ADD_FAILURE() << "accepted \"" << name << "\"";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << name;
    }
  }
  w.add_file("config.json", "{}");
  EXPECT_THROW(w.add_file("config.json", "{}"), Error);
  EXPECT_FALSE(fs::exists(tmp.path() / "escape.json"));
}

TEST(CheckpointWriter, SizeMismatchNamesTheTensorAndKeepsTheWriterUsable) {
  gptq::test::TempDir tmp;
  const fs::path out = tmp.path() / "out";
  CheckpointWriter w(out);
  const auto bytes = pattern(12, 1);
  try {
    w.add_tensor("layers.3.mlp.up_proj.weight", DType::kF16, {2, 4}, bytes);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("layers.3.mlp.up_proj.weight"), std::string::npos) << e.what();
  }
  try {
    w.add_tensor("neg", DType::kF32, {-1, 3}, bytes);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("neg"), std::string::npos) << e.what();
  }
  w.add_tensor("ok", DType::kF32, {3}, bytes);
  EXPECT_THROW(w.add_tensor("ok", DType::kF32, {3}, bytes), Error);  // names are unique
  w.commit();
  EXPECT_EQ(Checkpoint(out).names(), std::vector<std::string>{"ok"});
}

TEST(SafetensorsWriter, RejectsMismatchedBytesAndRepeatedNames) {
  gptq::test::TempDir tmp;
  const fs::path path = tmp.path() / "x.safetensors";
  const auto bytes = pattern(8, 1);
  try {
    gptq::io::write_safetensors(path, {{"short_one", DType::kF32, {3}, bytes}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("short_one"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gptq::io::write_safetensors(path, {{"a", DType::kF32, {2}, bytes}, {"a", DType::kI32, {2}, bytes}}),
               Error);
  EXPECT_FALSE(fs::exists(path));
}

TEST(SafetensorsWriter, AnUnfinishedFileIsDeleted) {
  gptq::test::TempDir tmp;
  const fs::path path = tmp.path() / "x.safetensors";
  {
    gptq::io::SafetensorsWriter w(path, {{"a", DType::kF32, {4}}});
    w.append(pattern(8, 1));
    EXPECT_THROW(w.finish(), Error);        // 8 of 16 bytes
    EXPECT_THROW(w.append(pattern(12, 1)), Error);  // past the declared end
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(CheckpointWriter, CannotBeUsedAfterCommit) {
  gptq::test::TempDir tmp;
  CheckpointWriter w(tmp.path() / "out");
  w.commit();
  EXPECT_THROW(w.add_tensor("a", DType::kF32, {}, pattern(4, 1)), Error);
  EXPECT_THROW(w.commit(), Error);
  EXPECT_TRUE(Checkpoint(tmp.path() / "out").names().empty());  // empty but valid
}

// Every file of `dir`, name → contents.
std::map<std::string, std::string> contents(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files[e.path().filename().string()] = read_file(e.path());
  return files;
}

// The background writer changes when bytes reach the disk, not which: shards, index and
// files identical with no thread, with a queue smaller than one tensor (every add waits
// for the one before), and with the default queue.
TEST(CheckpointWriter, BackgroundWritingGivesTheSameFiles) {
  gptq::test::TempDir tmp;
  std::vector<Spec> specs = forty_byte_tensors(9);
  specs.push_back(spec("big", DType::kF16, {300}, 99));  // a shard of its own
  auto write = [&](const std::string& name, uint64_t background) {
    CheckpointWriter w(tmp.path() / name, {.max_shard_bytes = 100, .background_bytes = background});
    write_all(w, specs);
    w.add_file("config.json", "{}");
    w.commit();
    return contents(tmp.path() / name);
  };
  const auto inline_files = write("inline", 0);
  EXPECT_EQ(inline_files.size(), 8u);  // 6 shards, the index, config.json
  EXPECT_TRUE(write("one-at-a-time", 16) == inline_files);
  EXPECT_TRUE(write("default", CheckpointWriterOptions{}.background_bytes) == inline_files);
}

// Bytes handed over with their owner (a quantized module's tensors): the files are the
// copied tensors' files, and the writer lets go of every owner by commit. That it holds
// each until written (not just until add_tensor returns) is what the sanitizer build
// checks: the test drops its own references at once.
TEST(CheckpointWriter, SharedBytesGiveTheSameFilesAndAreReleased) {
  gptq::test::TempDir tmp;
  std::vector<Spec> specs = forty_byte_tensors(9);
  specs.push_back(spec("big", DType::kF16, {300}, 99));
  auto copied = [&](const std::string& name, uint64_t background) {
    CheckpointWriter w(tmp.path() / name, {.max_shard_bytes = 100, .background_bytes = background});
    write_all(w, specs);
    w.commit();
    return contents(tmp.path() / name);
  };
  auto shared = [&](const std::string& name, uint64_t background) {
    std::vector<std::weak_ptr<const void>> owners;
    CheckpointWriter w(tmp.path() / name, {.max_shard_bytes = 100, .background_bytes = background});
    for (const Spec& s : specs) {
      auto owner = std::make_shared<const std::vector<std::byte>>(s.bytes);
      w.add_tensor(s.name, s.dtype, s.shape, *owner, owner);
      owners.push_back(owner);
    }
    w.commit();
    for (const auto& o : owners) EXPECT_TRUE(o.expired()) << name;
    return contents(tmp.path() / name);
  };
  const auto reference = copied("copied", 0);
  EXPECT_TRUE(shared("inline", 0) == reference);
  EXPECT_TRUE(shared("background", CheckpointWriterOptions{}.background_bytes) == reference);
  EXPECT_TRUE(shared("one-at-a-time", 16) == reference);
}

// An I/O error in the tensor writes (the shard's data file made /dev/full: every write
// fails with ENOSPC) surfaces as kIo naming the tensor, inline at its add_tensor, in the
// background at the next call or at commit; later calls are refused; no output appears
// and the temporary directory goes with the writer.
TEST(CheckpointWriter, AWriteErrorNamesTheTensorAndLeavesNoOutput) {
  for (const uint64_t background : {uint64_t(0), CheckpointWriterOptions{}.background_bytes}) {
    SCOPED_TRACE("background_bytes " + std::to_string(background));
    gptq::test::TempDir tmp;
    const fs::path out = tmp.path() / "out";
    {
      CheckpointWriter w(out, {.background_bytes = background});
      const std::vector<std::string> temp = listing(tmp.path());
      ASSERT_EQ(temp.size(), 1u);
      fs::create_symlink("/dev/full", tmp.path() / temp[0] / ".gptq-shard.data");
      std::string error;
      try {
        w.add_tensor("big", DType::kF32, {1 << 18}, pattern(1 << 20, 1));  // past the stream's buffer
        w.add_tensor("small", DType::kF32, {1}, pattern(4, 2));
        w.commit();
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kIo) << e.what();
        error = e.what();
      }
      EXPECT_NE(error.find("tensor \"big\""), std::string::npos) << error;
      EXPECT_NE(error.find("No space left"), std::string::npos) << error;
      EXPECT_THROW(w.add_tensor("after", DType::kF32, {1}, pattern(4, 3)), Error);
      EXPECT_THROW(w.commit(), Error);
      EXPECT_FALSE(fs::exists(out));
    }
    EXPECT_TRUE(listing(tmp.path()).empty());
  }
}
