// VMA flag mnemonics (as /proc/<pid>/smaps prints them), files, perms.
#include <string>
#include <string_view>

#include "rcuvm/vma.h"

namespace rcuvm {
namespace {

struct Mnemonic {
  VmFlags flag;
  const char* name;
};

// The kernel's order (fs/proc/task_mmu.c, show_smap_vma_flags).
constexpr Mnemonic kMnemonics[] = {
    {vmf::kRead, "rd"},        {vmf::kWrite, "wr"},       {vmf::kExec, "ex"},
    {vmf::kShared, "sh"},      {vmf::kMayRead, "mr"},     {vmf::kMayWrite, "mw"},
    {vmf::kMayExec, "me"},     {vmf::kMayShare, "ms"},    {vmf::kGrowsDown, "gd"},
    {vmf::kPfnMap, "pf"},      {vmf::kLocked, "lo"},      {vmf::kIo, "io"},
    {vmf::kSeqRead, "sr"},     {vmf::kRandRead, "rr"},    {vmf::kDontCopy, "dc"},
    {vmf::kDontExpand, "de"},  {vmf::kLockOnFault, "lf"}, {vmf::kAccount, "ac"},
    {vmf::kNoReserve, "nr"},   {vmf::kHugetlb, "ht"},     {vmf::kSync, "sf"},
    {vmf::kWipeOnFork, "wf"},  {vmf::kDontDump, "dd"},    {vmf::kMixedMap, "mm"},
    {vmf::kHugePage, "hg"},    {vmf::kNoHugePage, "nh"},
};

}  // namespace

std::string vm_flags_string(VmFlags flags) {
  std::string out;
  for (const Mnemonic& m : kMnemonics) {
    if (!(flags & m.flag)) continue;
    if (!out.empty()) out += ',';
    out += m.name;
  }
  return out.empty() ? "-" : out;
}

VmFlags parse_vm_flags(std::string_view text) {
  VmFlags f = 0;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view tok = text.substr(0, comma);
    for (const Mnemonic& m : kMnemonics)
      if (tok == m.name) f |= m.flag;
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return f;
}

std::shared_ptr<File> File::make(std::string name, uint64_t size, Options options) {
  auto f = std::make_shared<File>();
  f->name = std::move(name);
  f->size = size;
  f->options = options;
  return f;
}

void Vma::publish_view() {
  // (V6) release stores: a reader that sees one of them also sees the odd
  // sequence count that preceded it.
  view_.start.store(start, std::memory_order_release);
  view_.end.store(end, std::memory_order_release);
  view_.pgoff.store(pgoff, std::memory_order_release);
  view_.flags.store(flags, std::memory_order_release);
  view_.file_pages.store(file ? (file->size + kPageSize - 1) >> kPageShift : 0,
                         std::memory_order_release);
  view_.bits.store(static_cast<uint8_t>((file ? 1 : 0) | (anon_vma ? 2 : 0)),
                   std::memory_order_release);
}

VmaView Vma::load_view() const {
  VmaView v;
  v.start = view_.start.load(std::memory_order_acquire);  // (V6)
  v.end = view_.end.load(std::memory_order_acquire);
  v.pgoff = view_.pgoff.load(std::memory_order_acquire);
  v.flags = view_.flags.load(std::memory_order_acquire);
  v.file_pages = view_.file_pages.load(std::memory_order_acquire);
  const uint8_t bits = view_.bits.load(std::memory_order_acquire);
  v.has_file = bits & 1;
  v.has_anon_vma = bits & 2;
  return v;
}

bool Vma::try_get() {
  uint32_t n = refs.load(std::memory_order_relaxed);
  while (n != 0)  // (V5) never resurrect a VMA whose last reference went
    if (refs.compare_exchange_weak(n, n + 1, std::memory_order_acquire,
                                   std::memory_order_relaxed))
      return true;
  return false;
}

void Vma::put() {
  if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) rcu::retire(this);  // (V5)
}

void Vma::put(rcu::DeferredList& later) {
  if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) later.add(this);  // (V5)
}

std::string VmaInfo::perms() const {
  std::string p = "----";
  if (flags & vmf::kRead) p[0] = 'r';
  if (flags & vmf::kWrite) p[1] = 'w';
  if (flags & vmf::kExec) p[2] = 'x';
  p[3] = (flags & vmf::kMayShare) ? 's' : 'p';
  return p;
}

}  // namespace rcuvm
