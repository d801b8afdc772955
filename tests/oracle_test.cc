// Replays every kernel oracle trace in ../shared/oracle through AddressSpace.
//
// Fully supported traces must match step for step in the strict comparison
// (VmFlags as a set, anonymous page counts, fork children). Traces that use
// calls this layer does not model yet must not regress below a recorded floor
// of leading matched steps; raise a floor whenever the layer gets further.
//
// Traces not in the table (new recordings) must match in full as well.
// Skipped when ../shared/oracle is absent.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "vm/trace_replay.h"

namespace rcuvm::oracle {
namespace {

namespace fs = std::filesystem;

const fs::path kOracleDir = fs::path(RCUVM_SHARED_DIR) / "oracle";

// Leading steps that must match strictly; -1: the whole trace.
const std::map<std::string, int> kFloors = {
    {"arena-pure-s1", -1},  {"arena-pure-s2", -1},  {"arena-pure-s3", -1},
    {"arena-pure-s4", -1},  {"arena-pure-s5", -1},  {"arena-pure-s6", -1},
    {"arena-pure-s7", -1},  {"arena-touch-s8", -1}, {"arena-touch-s9", -1},
    {"arena-touch-s10", -1}, {"arena-touch-s11", -1}, {"arena-touch-s12", -1},
    {"arena-touch-s13", -1}, {"arena-touch-s14", -1}, {"open-pure-s15", -1},
    {"open-pure-s16", -1},   {"open-pure-s17", -1},   {"open-touch-s18", -1},
    {"open-touch-s19", -1},  {"open-touch-s20", -1},
};

std::vector<std::string> trace_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(kOracleDir, ec))
    if (e.path().extension() == ".trace") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  if (names.empty()) names.push_back("none");  // a placeholder that skips
  return names;
}

class OracleTest : public ::testing::TestWithParam<std::string> {};

TEST_P(OracleTest, Replays) {
  const fs::path path = kOracleDir / (GetParam() + ".trace");
  if (!fs::exists(path)) GTEST_SKIP() << "no oracle traces at " << kOracleDir;
  auto trace = read_trace_file(path.string());
  ASSERT_TRUE(trace.ok()) << trace.status();
  CheckResult r = check_trace(*trace, /*strict=*/true);
  auto it = kFloors.find(GetParam());
  const int floor = it == kFloors.end() ? -1 : it->second;
  if (floor < 0) {
    EXPECT_EQ(r.matched, r.total) << r.first_difference;
  } else {
    EXPECT_GE(r.matched, floor) << "regressed below the recorded floor\n" << r.first_difference;
  }
}

INSTANTIATE_TEST_SUITE_P(Traces, OracleTest, ::testing::ValuesIn(trace_names()),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace rcuvm::oracle
