// Oracle traces: parse, replay through AddressSpace, print, compare.
#include "vm/trace_replay.h"

#include <cerrno>
#include <fstream>
#include <istream>
#include <ostream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "rcuvm/status.h"

namespace rcuvm::oracle {
namespace {

uint64_t num(const std::string& s) {
  if (s == "null" || s == "-") return 0;
  return std::stoull(s, nullptr, 0);
}

struct Name {
  const char* name;
  uint64_t value;
};

constexpr Name kProt[] = {{"PROT_NONE", 0},          {"PROT_READ", 1},
                          {"PROT_WRITE", 2},         {"PROT_EXEC", 4},
                          {"PROT_SEM", 8},           {"PROT_GROWSDOWN", 0x01000000},
                          {"PROT_GROWSUP", 0x02000000}};
constexpr Name kMap[] = {
    {"MAP_SHARED", 0x01},       {"MAP_PRIVATE", 0x02},   {"MAP_SHARED_VALIDATE", 0x03},
    {"MAP_FIXED", 0x10},        {"MAP_ANONYMOUS", 0x20}, {"MAP_GROWSDOWN", 0x100},
    {"MAP_DENYWRITE", 0x800},   {"MAP_EXECUTABLE", 0x1000}, {"MAP_LOCKED", 0x2000},
    {"MAP_NORESERVE", 0x4000},  {"MAP_POPULATE", 0x8000}, {"MAP_NONBLOCK", 0x10000},
    {"MAP_STACK", 0x20000},     {"MAP_HUGETLB", 0x40000}, {"MAP_SYNC", 0x80000},
    {"MAP_FIXED_NOREPLACE", 0x100000}};
constexpr Name kMremap[] = {
    {"MREMAP_MAYMOVE", 1}, {"MREMAP_FIXED", 2}, {"MREMAP_DONTUNMAP", 4}};
constexpr Name kMadv[] = {
    {"MADV_NORMAL", 0},       {"MADV_RANDOM", 1},       {"MADV_SEQUENTIAL", 2},
    {"MADV_WILLNEED", 3},     {"MADV_DONTNEED", 4},     {"MADV_FREE", 8},
    {"MADV_REMOVE", 9},       {"MADV_DONTFORK", 10},    {"MADV_DOFORK", 11},
    {"MADV_MERGEABLE", 12},   {"MADV_UNMERGEABLE", 13}, {"MADV_HUGEPAGE", 14},
    {"MADV_NOHUGEPAGE", 15},  {"MADV_DONTDUMP", 16},    {"MADV_DODUMP", 17},
    {"MADV_WIPEONFORK", 18},  {"MADV_KEEPONFORK", 19},  {"MADV_COLD", 20},
    {"MADV_PAGEOUT", 21},     {"MADV_POPULATE_READ", 22}, {"MADV_POPULATE_WRITE", 23},
    {"MADV_DONTNEED_LOCKED", 24}, {"MADV_COLLAPSE", 25}};
constexpr Name kErrno[] = {{"EPERM", EPERM},   {"ENOENT", ENOENT},   {"EINTR", EINTR},
                           {"EBADF", EBADF},   {"EAGAIN", EAGAIN},   {"ENOMEM", ENOMEM},
                           {"EACCES", EACCES}, {"EFAULT", EFAULT},   {"EBUSY", EBUSY},
                           {"EEXIST", EEXIST}, {"ENODEV", ENODEV},   {"EINVAL", EINVAL},
                           {"ETXTBSY", ETXTBSY}, {"EOVERFLOW", EOVERFLOW},
                           {"EOPNOTSUPP", EOPNOTSUPP}};

// "A|B|0x10" -> bits; "0" -> 0.
template <size_t N>
uint64_t symbols(const std::string& s, const Name (&table)[N]) {
  uint64_t v = 0;
  for (const std::string& part : std::vector<std::string>(absl::StrSplit(s, '|'))) {
    bool found = false;
    for (const Name& n : table)
      if (part == n.name) v |= n.value, found = true;
    if (!found) v |= std::stoull(part, nullptr, 0);
  }
  return v;
}

std::string hex(uint64_t v) { return absl::StrFormat("0x%x", v); }

std::string err_ret(const absl::Status& s) {
  int e = errno_of(s);
  for (const Name& n : kErrno)
    if (static_cast<int>(n.value) == e) return std::string("err ") + n.name;
  return absl::StrFormat("err E%d", e);
}

}  // namespace

std::string Trace::mode() const {
  auto it = header.find("mode");
  return it == header.end() ? "" : it->second;
}

absl::StatusOr<Trace> parse_trace(std::istream& in) {
  Trace t;
  std::string line;
  int lineno = 0;
  std::vector<MLine>* target = nullptr;
  std::optional<Step> step;
  std::vector<MLine> procmaps;
  bool in_header = true;
  auto bad = [&](const char* why) {
    return errno_error(EINVAL, absl::StrFormat("line %d: %s", lineno, why));
  };
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> tok = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (tok.empty()) continue;
    const std::string& w = tok[0];
    if (w == "step") {
      if (step) return bad("step without end");
      if (tok.size() < 2) return bad("bad step line");
      step.emplace();
      step->n = std::stoi(tok[1]);
      target = &step->maps;
      in_header = false;
    } else if (w == "end") {
      if (step) t.steps.push_back(std::move(*step));
      step.reset();
      target = nullptr;
    } else if (w == "m") {
      if (!target) return bad("m line outside a block");
      if (tok.size() < 7) return bad("short m line");
      target->emplace_back(tok.begin() + 1, tok.end());
    } else if (step && w == "op") {
      step->op.assign(tok.begin() + 1, tok.end());
    } else if (step && w == "ret") {
      step->ret = line.substr(4);
    } else if (step && w == "maps") {
      target = &step->maps;
    } else if (step && w == "child") {
      step->child.emplace();
      target = &*step->child;
    } else if (in_header && w == "initial") {
      target = &t.initial;
    } else if (in_header && w == "procmaps") {
      target = &procmaps;  // informational, not replayed
    } else if (w == "done") {
      break;
    } else if (in_header) {
      std::string rest = line.size() > w.size() ? line.substr(w.size() + 1) : "";
      if (w == "file") t.files.push_back(rest);
      t.header.emplace(w, rest);
    } else {
      return bad("unexpected line");
    }
  }
  if (step) return bad("unterminated step");
  if (!t.header.count("oracle-trace")) return errno_error(EINVAL, "not an oracle trace");
  return t;
}

absl::StatusOr<Trace> read_trace_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) return errno_error(ENOENT, "cannot open " + path);
  return parse_trace(f);
}

Replayer::Replayer(const Trace& trace) : trace_(trace) {
  AddressSpaceOptions o;
  auto h = [&](const char* k, uint64_t& field) {
    auto it = trace.header.find(k);
    if (it != trace.header.end()) field = num(it->second);
  };
  h("task_size", o.task_size);
  h("mmap_base", o.mmap_base);
  h("stack_guard_gap", o.stack_guard_gap);
  h("mmap_min_addr", o.mmap_min_addr);
  h("max_map_count", o.max_map_count);
  h("start_brk", o.start_brk);
  h("brk", o.brk);
  uint64_t overcommit = 0;
  h("overcommit_memory", overcommit);
  if (overcommit == 1) o.overcommit = OvercommitMode::kAlways;
  if (overcommit == 2) unsupported_ = "overcommit_memory 2 (strict accounting) is not modelled";
  o.total_ram_pages = kCaptureRamPages;
  space_ = std::make_unique<AddressSpace>(o);
  arena_ = trace.mode() == "arena";
  if (arena_) {
    h("arena_base", base_);
    h("arena_size", size_);
  }
  for (const std::string& f : trace.files) {
    std::vector<std::string> p = absl::StrSplit(f, ' ', absl::SkipEmpty());
    if (p.size() < 4) continue;
    File::Options fo;
    fo.writable = p[2] == "rdwr";
    fo.sync_capable = p[3] == "ext4";
    fo.shmem = p[3] == "tmpfs";
    files_[p[0]] = File::make(p[0], num(p[1]), fo);
  }
  for (const MLine& m : trace.initial) {
    VmaState v;
    v.start = num(m[0]);
    v.end = num(m[1]);
    v.flags = m.size() > 6 ? parse_vm_flags(m[6]) : 0;
    if (m[4] != "-") {
      auto& f = files_[m[4]];
      if (!f) f = File::make(m[4], 0, {});
      v.file = f;
      v.pgoff = num(m[3]) >> kPageShift;
    } else {
      v.pgoff = v.start >> kPageShift;
    }
    if (m[5] != "-" && m[5] != "[heap]") v.name = m[5];  // [heap] is derived
    if (m.size() > 7 && m[7] != "-" && m[7] != "0") v.anon_vma = std::make_shared<AnonVma>();
    (void)space_->install(v);
  }
}

Replayer::~Replayer() = default;

uint64_t Replayer::addr_arg(const std::string& tok) const {
  if (tok == "null") return 0;
  return num(tok) + (arena_ ? base_ : 0);
}

std::string Replayer::addr_ret(uint64_t a) const { return hex(arena_ ? a - base_ : a); }

std::vector<MLine> Replayer::listing(const AddressSpace& as) const {
  std::vector<MLine> out;
  const uint64_t lo = arena_ ? base_ : 0, hi = arena_ ? base_ + size_ : UINT64_MAX;
  for (const VmaInfo& v : as.maps()) {
    if (v.start < lo || v.end > hi) continue;
    const uint64_t off = v.file ? v.pgoff << kPageShift : 0;
    out.push_back({hex(v.start - lo), hex(v.end - lo), v.perms(), hex(off),
                   v.file ? v.file->name : "-", v.name.empty() ? "-" : v.name,
                   v.flags_string(), std::to_string(v.anon_pages)});
  }
  return out;
}

Replayed Replayer::run(const Step& s) {
  Replayed r;
  const auto& op = s.op;
  const std::string name = op.empty() ? "" : op[0];
  auto arg = [&](size_t i) -> const std::string& {
    static const std::string none = "0";
    return i < op.size() ? op[i] : none;
  };
  auto status_ret = [&](const absl::Status& st) { r.ret = st.ok() ? "0" : err_ret(st); };
  auto addr_result = [&](const absl::StatusOr<uint64_t>& a) {
    r.ret = a.ok() ? addr_ret(*a) : err_ret(a.status());
  };
  if (!unsupported_.empty()) {
    r.ret = "unsupported " + unsupported_;
    return r;
  }
  if (name == "mmap") {
    std::shared_ptr<File> f;
    auto it = files_.find(arg(5));
    if (it != files_.end()) f = it->second;
    addr_result(space_->mmap(addr_arg(arg(1)), num(arg(2)), symbols(arg(3), kProt),
                             symbols(arg(4), kMap), f, num(arg(6))));
  } else if (name == "munmap") {
    status_ret(space_->munmap(addr_arg(arg(1)), num(arg(2))));
  } else if (name == "mprotect") {
    status_ret(space_->mprotect(addr_arg(arg(1)), num(arg(2)), symbols(arg(3), kProt)));
  } else if (name == "madvise") {
    status_ret(space_->madvise(addr_arg(arg(1)), num(arg(2)), symbols(arg(3), kMadv)));
  } else if (name == "mremap") {
    addr_result(space_->mremap(addr_arg(arg(1)), num(arg(2)), num(arg(3)),
                               symbols(arg(4), kMremap), addr_arg(arg(5))));
  } else if (name == "brk") {
    addr_result(space_->brk(addr_arg(arg(1))));
  } else if (name == "mlock") {
    status_ret(space_->mlock(addr_arg(arg(1)), num(arg(2))));
  } else if (name == "munlock") {
    status_ret(space_->munlock(addr_arg(arg(1)), num(arg(2))));
  } else if (name == "touch") {
    auto t = space_->touch(addr_arg(arg(1)), arg(2) == "w");
    if (!t.ok())
      r.ret = err_ret(t.status());
    else if (*t == FaultResult::kSigSegv)
      r.ret = "sig SIGSEGV";
    else if (*t == FaultResult::kSigBus)
      r.ret = "sig SIGBUS";
    else
      r.ret = "0";
  } else if (name == "fork") {
    auto child = space_->fork();
    if (child.ok()) {
      status_ret(absl::OkStatus());
      r.child = listing(**child);
    } else {
      r.ret = err_ret(child.status());
    }
  } else {
    r.ret = "unsupported " + name;
  }
  r.maps = listing(*space_);
  return r;
}

void print_step(std::ostream& out, int n, const Replayed& r) {
  out << "step " << n << "\nret " << r.ret << "\n";
  for (const MLine& m : r.maps) out << "m " << absl::StrJoin(m, " ") << "\n";
  if (r.child) {
    out << "child " << r.child->size() << "\n";
    for (const MLine& m : *r.child) out << "m " << absl::StrJoin(m, " ") << "\n";
  }
  out << "end\n";
}

namespace {

std::string key(const MLine& m, bool strict) {
  std::vector<std::string> k(m.begin(), m.begin() + std::min<size_t>(6, m.size()));
  if (strict) {
    std::set<std::string> flags;
    if (m.size() > 6 && m[6] != "-")
      for (absl::string_view f : absl::StrSplit(m[6], ',', absl::SkipEmpty())) flags.insert(std::string(f));
    k.push_back(absl::StrJoin(flags, ","));
  }
  return absl::StrJoin(k, " ");
}

std::string compare_lists(const char* what, const std::vector<MLine>& exp,
                          const std::vector<MLine>& got, bool strict) {
  std::string out;
  std::vector<std::string> ek, gk;
  for (const MLine& m : exp) ek.push_back(key(m, strict));
  for (const MLine& m : got) gk.push_back(key(m, strict));
  if (ek != gk) {
    std::set<std::string> es(ek.begin(), ek.end()), gs(gk.begin(), gk.end());
    out = std::string(what) + " differ:\n";
    for (const auto& e : ek)
      if (!gs.count(e)) out += "  - expected  " + e + "\n";
    for (const auto& g : gk)
      if (!es.count(g)) out += "  + replayed  " + g + "\n";
    return out;
  }
  if (strict) {
    for (size_t i = 0; i < exp.size(); ++i) {
      const std::string ea = exp[i].size() > 7 ? exp[i][7] : "-";
      const std::string ga = got[i].size() > 7 ? got[i][7] : "?";
      if (ea != "-" && ea != ga)
        out += absl::StrFormat("  anon pages of %s-%s: expected %s, replayed %s\n", exp[i][0],
                               exp[i][1], ea, ga);
    }
  }
  return out;
}

}  // namespace

std::string compare_step(const Step& expected, const Replayed& got, bool strict) {
  std::string out;
  if (expected.ret != got.ret)
    out += absl::StrFormat("  ret: expected '%s', replayed '%s'\n", expected.ret, got.ret);
  out += compare_lists("maps", expected.maps, got.maps, strict);
  if (strict && expected.child) {
    if (!got.child)
      out += "child maps missing from replay\n";
    else
      out += compare_lists("child maps", *expected.child, *got.child, strict);
  }
  return out;
}

CheckResult check_trace(const Trace& trace, bool strict, std::ostream* print) {
  CheckResult res;
  res.total = static_cast<int>(trace.steps.size());
  Replayer rp(trace);
  for (const Step& s : trace.steps) {
    Replayed r = rp.run(s);
    if (print) print_step(*print, s.n, r);
    if (!res.first_difference.empty()) continue;
    std::string diff = compare_step(s, r, strict);
    if (diff.empty()) {
      ++res.matched;
    } else {
      res.first_difference = absl::StrFormat("MISMATCH at step %d: op %s\n  trace ret: %s\n%s",
                                             s.n, absl::StrJoin(s.op, " "), s.ret, diff);
    }
  }
  return res;
}

}  // namespace rcuvm::oracle
