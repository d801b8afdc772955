// Replays fixed inputs through the fuzz target's decoder and differential
// runner (fuzz/treeops_decoder.h), so the fuzzing logic runs in normal CI
// without clang or libFuzzer: the checked-in seed corpus (fuzz/corpus/),
// deterministic pseudo-random byte strings, and hand-made inputs aimed at the
// edges of the index space.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/treeops_decoder.h"
#include "tree_test_util.h"

namespace rcuvm::treeops::fuzzing {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

Bytes random_bytes(uint64_t seed, size_t n) {
  testing::Rng rng(seed);
  Bytes b(n);
  for (auto& x : b) x = uint8_t(rng.next());
  return b;
}

TEST(FuzzDecoder, EveryInputDecodes) {
  EXPECT_EQ(decode({}).size(), 1u);  // just the mode
  EXPECT_EQ(decode(Bytes{1})[0].kind, OpKind::kMode);
  EXPECT_TRUE(decode(Bytes{1})[0].alloc);
  EXPECT_FALSE(decode(Bytes{2})[0].alloc);
  // Bounded work however long the input.
  EXPECT_LE(decode(random_bytes(1, 1 << 20)).size(), kMaxOps + 1);
}

TEST(FuzzDecoder, DecodingIsDeterministic) {
  Bytes in = random_bytes(7, 4096);
  auto a = decode(in), b = decode(in);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(format_op(a[i]), format_op(b[i]));
}

// Every decoded operation must also be a line of the tool's language.
TEST(FuzzDecoder, OperationsRoundTripThroughTheLanguage) {
  for (const Op& op : decode(random_bytes(3, 8192))) {
    Op parsed;
    ASSERT_EQ(parse_line(format_op(op), parsed), Parsed::kOp) << format_op(op);
    EXPECT_EQ(format_op(parsed), format_op(op));
  }
}

TEST(FuzzCorpus, SeedCorpusFiles) {
  const fs::path dir = fs::path(RCUVM_TEST_DATA_DIR) / ".." / ".." / "fuzz" / "corpus";
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::ifstream in(e.path(), std::ios::binary);
    Bytes bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(run_differential(bytes), "") << e.path();
    ++n;
  }
  EXPECT_GE(n, 4u) << "no seed corpus in " << dir;
}

TEST(FuzzCorpus, PseudoRandomInputs) {
  const uint64_t inputs = testing::scaled(60);
  for (uint64_t seed = 1; seed <= inputs && !HasFailure(); ++seed) {
    const size_t len = 64 + (seed * 977) % 8192;
    EXPECT_EQ(run_differential(random_bytes(seed, len)), "") << "seed " << seed;
  }
}

// Inputs made of one operation kind repeated, so each reaches deep trees.
TEST(FuzzCorpus, SingleKindInputs) {
  for (uint8_t kind = 0; kind < 16 && !HasFailure(); ++kind) {
    Bytes in = random_bytes(100 + kind, 6000);
    in[0] = kind & 1;
    // Stores first to build a tree, then the chosen kind, every 16 bytes.
    for (size_t i = 1; i < in.size(); i += 16) in[i] = i < in.size() / 2 ? 0 : kind;
    EXPECT_EQ(run_differential(in), "") << "kind " << int(kind);
  }
}

// Near the top of the space: class 4 indices (UINT64_MAX - small), saturating
// lengths, and reuse of recent values.
TEST(FuzzCorpus, EdgeInputs) {
  Bytes in = {1};
  for (int i = 0; i < 400; ++i) {
    in.insert(in.end(), {uint8_t(i % 5), uint8_t(0x80 | (i & 31)), uint8_t(i), uint8_t(0xc0 | i), 200});
    in.insert(in.end(), {uint8_t(10 + i % 2), 0x80, uint8_t(i), 0x0f, 0xff, 0x80, 0, 0});
    in.insert(in.end(), {8, 0xe0, 0x3f, 9, 0x80, 1, 0x80, 12, 0, 0, 0xc0, 0xff});
  }
  EXPECT_EQ(run_differential(in), "");
}

// The runner must report a difference when there is one: a reference whose
// gap search is off by one is caught, with a reproducer script.
class OffByOneModel : public testing::ModelBackend {
 public:
  using ModelBackend::ModelBackend;
  Result gap(uint64_t min, uint64_t max, uint64_t size) const {
    Result r = ModelBackend::gap(min, max, size);
    if (r.err == 0) ++r.value;
    return r;
  }
};

TEST(FuzzRunner, ReportsADifference) {
  std::vector<Op> ops = decode(Bytes{0});
  Op store;
  store.kind = OpKind::kStore;
  store.a = 10;
  store.b = 20;
  store.c = 1;
  Op gap;
  gap.kind = OpKind::kGap;
  gap.a = 0;
  gap.b = 100;
  gap.c = 5;
  ops.push_back(store);
  ops.push_back(gap);
  std::string report = run_differential<testing::ModelBackend, OffByOneModel>(ops);
  EXPECT_NE(report.find("answers differ at operation 2"), std::string::npos) << report;
  EXPECT_NE(report.find("store 10 20 1\ngap 0 100 5\n"), std::string::npos) << report;
}

}  // namespace
}  // namespace rcuvm::treeops::fuzzing
