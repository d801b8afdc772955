// Tests of the rcuvm-treeops tool, run as a program:
//   - every golden script tests/data/*.ops against its .expected answers (the
//     reference model must give the same answers, so a golden file cannot
//     silently encode a tree bug);
//   - a generated 200,000-line script against the reference model (fewer
//     lines under sanitizers);
//   - the command line: --help, standard input, a missing file.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "treeops_model.h"
#include "tree_test_util.h"

namespace rcuvm::testing {
namespace {

namespace fs = std::filesystem;

const std::string kTool = RCUVM_TOOLS_DIR "/rcuvm-treeops";

struct ToolRun {
  int status = -1;  // exit status, or -1 when the program did not exit normally
  std::string out;
};

// Runs `command` through the shell and collects its standard output.
ToolRun run_command(const std::string& command) {
  ToolRun r;
  std::FILE* p = popen(command.c_str(), "r");
  if (!p) return r;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int raw = pclose(p);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

ToolRun run_tool(const std::string& args) { return run_command(quoted(kTool) + " " + args); }

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> v;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) v.push_back(line);
  return v;
}

// Describes the first differing answer line, or "" when the texts are equal.
std::string first_line_difference(const std::string& got, const std::string& want) {
  auto g = lines_of(got);
  auto w = lines_of(want);
  for (size_t i = 0; i < std::max(g.size(), w.size()); ++i) {
    std::string gl = i < g.size() ? g[i] : "<missing>";
    std::string wl = i < w.size() ? w[i] : "<missing>";
    if (gl != wl) {
      return "answer line " + std::to_string(i + 1) + ": got \"" + gl + "\", expected \"" + wl + "\"";
    }
  }
  return {};
}

void ExpectToolExists() {
  ASSERT_TRUE(fs::exists(kTool)) << kTool << " is missing: build the rcuvm-treeops target first";
}

// ------------------------------------------------------------- golden files

std::vector<std::string> golden_scripts() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(RCUVM_TEST_DATA_DIR, ec)) {
    if (e.path().extension() == ".ops") names.push_back(e.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class GoldenScript : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenScript, ToolAndModelGiveTheExpectedAnswers) {
  ExpectToolExists();
  const fs::path ops = fs::path(RCUVM_TEST_DATA_DIR) / (GetParam() + ".ops");
  const fs::path expected_path = fs::path(RCUVM_TEST_DATA_DIR) / (GetParam() + ".expected");
  ASSERT_TRUE(fs::exists(expected_path)) << expected_path << " is missing";
  const std::string script = read_file(ops);
  const std::string expected = read_file(expected_path);

  // The model first: a golden file must describe the maple semantics.
  uint64_t parse_errors = 0;
  EXPECT_EQ(first_line_difference(model_answers(script, &parse_errors), expected), "")
      << "the reference model disagrees with " << expected_path;

  ToolRun r = run_tool(quoted(ops.string()));
  EXPECT_EQ(r.status, parse_errors ? 1 : 0);
  EXPECT_EQ(first_line_difference(r.out, expected), "") << "rcuvm-treeops " << ops;
}

INSTANTIATE_TEST_SUITE_P(Data, GoldenScript, ::testing::ValuesIn(golden_scripts()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(GoldenScripts, ThereAreSome) { EXPECT_GE(golden_scripts().size(), 5u); }

// ------------------------------------------------------- generated script

// A random script over a small space (so operations collide) with every
// operation kind, gap searches included.
std::string generated_script(uint64_t lines, uint64_t seed) {
  Rng rng(seed);
  std::string s = "mode alloc\n";
  constexpr uint64_t kSpace = 1 << 16;
  auto idx = [&rng] {
    switch (rng.below(16)) {
      case 0: return rng.below(4);
      case 1: return UINT64_MAX - rng.below(4);
      case 2: return rng.next();
      default: return rng.below(kSpace);
    }
  };
  auto num = [](uint64_t v) { return std::to_string(v); };
  for (uint64_t i = 1; i < lines; ++i) {
    const uint64_t a = idx();
    const uint64_t step = rng.below(64);
    const uint64_t b = rng.one_in(8) ? idx() : (UINT64_MAX - a < step ? UINT64_MAX : a + step);
    const uint64_t len = rng.below(64) + 1;
    switch (rng.below(24)) {
      case 0: case 1: case 2: case 3: case 4:
        s += "store " + num(a) + " " + num(std::max(a, b)) + " " + num(rng.below(100)) + "\n";
        break;
      case 5: s += "store " + num(a) + " " + num(b) + " 0\n"; break;
      case 6: case 7: s += "insert " + num(a) + " " + num(b) + " " + num(rng.below(100)) + "\n"; break;
      case 8: case 9: s += "erase " + num(a) + "\n"; break;
      case 10: case 11: s += "load " + num(a) + "\n"; break;
      case 12: s += "find " + num(a) + " " + num(b) + "\n"; break;
      case 13: s += "find_rev " + num(b) + " " + num(a) + "\n"; break;
      case 14: s += "gap " + num(a) + " " + num(b) + " " + num(len) + "\n"; break;
      case 15: s += "gap_rev " + num(a) + " " + num(b) + " " + num(len) + "\n"; break;
      case 16: s += "gap 0 18446744073709551615 " + num(len) + "\n"; break;
      case 17: s += "range " + num(a) + " " + num(a + 200 < a ? UINT64_MAX : a + 200) + "\n"; break;
      case 18: s += "count\n"; break;
      case 19: s += (i % 1000 == 0 ? "validate\n" : "load " + num(a) + "\n"); break;
      case 20: s += (i % 20000 == 0 ? "dup\n" : "count\n"); break;
      case 21: s += "# a comment\n"; break;
      case 22: s += "\n"; break;
      default: s += "find " + num(a) + " 18446744073709551615\n"; break;
    }
  }
  return s;
}

TEST(TreeopsTool, GeneratedScriptMatchesTheModel) {
  ExpectToolExists();
  // 200,000 lines in a plain build; fewer under sanitizers, which slow the
  // tool down as much as the test.
  const uint64_t lines = std::max<uint64_t>(scaled(200000), 20000);
  const std::string script = generated_script(lines, 42);
  const fs::path path = fs::path(::testing::TempDir()) / "rcuvm_treeops_generated.ops";
  {
    std::ofstream out(path, std::ios::binary);
    out << script;
  }
  uint64_t parse_errors = 0;
  const std::string want = model_answers(script, &parse_errors);
  ASSERT_EQ(parse_errors, 0u);
  ToolRun r = run_tool(quoted(path.string()));
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(first_line_difference(r.out, want), "") << "script kept at " << path;
}

// ------------------------------------------------------------ command line

TEST(TreeopsTool, HelpDescribesTheLanguage) {
  ExpectToolExists();
  ToolRun r = run_tool("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("store F L V"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gap_rev MIN MAX SIZE"), std::string::npos) << r.out;
}

TEST(TreeopsTool, ReadsStandardInput) {
  ExpectToolExists();
  ToolRun r = run_command("printf 'store 1 5 7\\nfind 0 100\\nload 6\\n' | " + quoted(kTool));
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "ok\n1 5 7\n0\n");
}

TEST(TreeopsTool, ParseErrorsSetTheExitStatus) {
  ExpectToolExists();
  ToolRun r = run_command("printf 'store 1 5\\ncount\\n' | " + quoted(kTool));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "error parse: 1\n0\n");
}

TEST(TreeopsTool, MissingFileIsAnError) {
  ExpectToolExists();
  ToolRun r = run_tool("/nonexistent/rcuvm/script.ops 2>/dev/null");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace rcuvm::testing
