// AddressSpace: the public face; each call is one transaction (vm/mm.h).
#include "rcuvm/address_space.h"

#include <cerrno>

#include "absl/strings/str_format.h"
#include "rcuvm/fault_injection.h"
#include "rcuvm/status.h"
#include "vm/mm.h"
#include "vm/ops.h"
#include "vm/fork.h"

namespace rcuvm {
namespace {

VmaInfo info_of(const Vma& v) {
  VmaInfo i;
  static_cast<VmaState&>(i) = v;
  return i;
}

}  // namespace

AddressSpace::AddressSpace(AddressSpaceOptions options)
    : AddressSpace(options, std::make_shared<FrameAllocator>()) {}

AddressSpace::AddressSpace(AddressSpaceOptions options, std::shared_ptr<FrameAllocator> frames)
    : mm_(std::make_unique<vm::Mm>(options, std::move(frames))) {}

AddressSpace::~AddressSpace() {
  vm::MuLock lock(&mm_->mu);
  std::vector<Vma*> all = mm_->range(0, UINT64_MAX);
  mm_->tree.destroy();
  rcu::DeferredList gone;  // one grace-period callback for every VMA
  for (Vma* v : all) {
    if (v->ops) v->ops->close(*v);
    v->detached.store(true, std::memory_order_release);  // (V4)
    v->put(gone);  // the tree's reference; handles may hold more (V5)
  }
  gone.retire_all();
}

absl::StatusOr<uint64_t> AddressSpace::mmap(uint64_t addr, uint64_t len, int prot, int flags,
                                            std::shared_ptr<File> file, uint64_t offset) {
  return vm::run_txn<absl::StatusOr<uint64_t>>(*mm_, [&](vm::Txn& t) {
    return vm::do_mmap(t, addr, len, prot, flags, file, offset);
  });
}

absl::Status AddressSpace::munmap(uint64_t addr, uint64_t len) {
  return vm::run_txn<absl::Status>(*mm_, [&](vm::Txn& t) { return vm::do_munmap(t, addr, len); });
}

absl::Status AddressSpace::mprotect(uint64_t addr, uint64_t len, int prot) {
  return vm::run_txn<absl::Status>(*mm_,
                                   [&](vm::Txn& t) { return vm::do_mprotect(t, addr, len, prot); });
}

absl::StatusOr<uint64_t> AddressSpace::mremap(uint64_t old_addr, uint64_t old_len,
                                              uint64_t new_len, int flags, uint64_t new_addr) {
  return vm::run_txn<absl::StatusOr<uint64_t>>(*mm_, [&](vm::Txn& t) {
    return vm::do_mremap(t, old_addr, old_len, new_len, flags, new_addr);
  });
}

absl::Status AddressSpace::madvise(uint64_t addr, uint64_t len, int advice) {
  return vm::run_txn<absl::Status>(
      *mm_, [&](vm::Txn& t) { return vm::do_madvise(t, addr, len, advice); });
}

absl::StatusOr<uint64_t> AddressSpace::brk(uint64_t addr) {
  return vm::run_txn<absl::StatusOr<uint64_t>>(*mm_,
                                               [&](vm::Txn& t) { return vm::do_brk(t, addr); });
}

absl::Status AddressSpace::mlock(uint64_t addr, uint64_t len) {
  return vm::run_txn<absl::Status>(
      *mm_, [&](vm::Txn& t) { return vm::do_mlock(t, addr, len, /*lock=*/true); });
}

absl::Status AddressSpace::munlock(uint64_t addr, uint64_t len) {
  return vm::run_txn<absl::Status>(
      *mm_, [&](vm::Txn& t) { return vm::do_mlock(t, addr, len, /*lock=*/false); });
}

absl::StatusOr<FaultResult> AddressSpace::touch(uint64_t addr, bool write) {
  return vm::run_txn<absl::StatusOr<FaultResult>>(
      *mm_, [&](vm::Txn& t) { return vm::do_fault(t, addr, write); });
}

absl::Status AddressSpace::install(const VmaState& vma) {
  if (vma.start >= vma.end || (vma.start | vma.end) % kPageSize)
    return errno_error(EINVAL, "install: bad range");
  return vm::run_txn<absl::Status>(*mm_, [&](vm::Txn& t) -> absl::Status {
    if (mm_->find_intersection(vma.start, vma.end)) return errno_error(EEXIST, "install: overlap");
    Vma* v = t.alloc(vma);
    if (!v) return t.nomem();
    if (absl::Status s = t.store(v->start, v->end, v); !s.ok()) return s;
    ++mm_->map_count;
    mm_->total_vm += v->pages();
    if (v->flags & vmf::kLocked) mm_->locked_vm += v->pages();
    return absl::OkStatus();
  });
}

std::optional<VmaInfo> AddressSpace::find_vma(uint64_t addr) const {
  vm::MuLock lock(&mm_->mu);
  Vma* v = mm_->find(addr);
  if (!v) return std::nullopt;
  return info_of(*v);
}

std::optional<VmaInfo> AddressSpace::vma_lookup(uint64_t addr) const {
  vm::MuLock lock(&mm_->mu);
  Vma* v = mm_->lookup(addr);
  if (!v) return std::nullopt;
  return info_of(*v);
}

std::vector<VmaInfo> AddressSpace::maps() const {
  vm::MuLock lock(&mm_->mu);
  std::vector<VmaInfo> out;
  for (Vma* v : mm_->range(0, UINT64_MAX)) {
    out.push_back(info_of(*v));
    out.back().anon_pages = mm_->pt.anon_pages(v->start, v->end);
    // vma_is_initial_heap: /proc names the brk area's anonymous VMAs.
    if (!v->file && v->name.empty() && v->start < mm_->brk &&
        v->end > mm_->start_brk)
      out.back().name = "[heap]";
  }
  return out;
}

absl::Status AddressSpace::validate() const {
  vm::MuLock lock(&mm_->mu);
  if (absl::Status s = mm_->tree.validate(); !s.ok()) return s;
  uint64_t count = 0, pages = 0, locked = 0, last_end = 0;
  auto c = mm_->tree.cursor(0);
  while (auto e = c.next()) {
    const Vma* v = e->value;
    if (e->first != v->start || e->last + 1 != v->end)
      return errno_error(EIO, absl::StrFormat("tree range %#x-%#x != VMA %#x-%#x", e->first,
                                              e->last + 1, v->start, v->end));
    if (v->start >= v->end || (v->start | v->end) % kPageSize || v->start < last_end)
      return errno_error(EIO, absl::StrFormat("bad VMA %#x-%#x", v->start, v->end));
    last_end = v->end;
    ++count;
    pages += v->pages();
    if (v->flags & vmf::kLocked) locked += v->pages();
  }
  if (count != mm_->map_count)
    return errno_error(EIO, absl::StrFormat("map_count %d, tree holds %d", mm_->map_count, count));
  if (pages != mm_->total_vm)
    return errno_error(EIO, absl::StrFormat("total_vm %d, VMAs hold %d", mm_->total_vm, pages));
  if (locked != mm_->locked_vm)
    return errno_error(EIO, absl::StrFormat("locked_vm %d, VMAs hold %d", mm_->locked_vm, locked));
  // The page table: pages only inside VMAs, anonymous pages only in VMAs
  // with an anon_vma, every anonymous frame referenced.
  absl::Status pt_status;
  mm_->pt.for_each(0, UINT64_MAX, [&](uint64_t a, Pte p) {
    if (!pt_status.ok()) return;
    const Vma* v = mm_->lookup(a);
    if (!v) {
      pt_status = errno_error(EIO, absl::StrFormat("page %#x mapped outside any VMA", a));
    } else if ((p & pte::kWrite) && !(v->flags & vmf::kWrite)) {
      pt_status = errno_error(EIO, absl::StrFormat("page %#x writable in a read-only VMA", a));
    } else if ((p & pte::kAnon) && !v->anon_vma) {
      pt_status = errno_error(EIO, absl::StrFormat("anonymous page %#x in a VMA without anon_vma", a));
    } else if ((p & pte::kAnon) && mm_->pt.frames().refcount(pte::frame(p)) == 0) {
      pt_status = errno_error(EIO, absl::StrFormat("page %#x maps a free frame", a));
    }
  });
  return pt_status;
}

uint64_t AddressSpace::map_count() const {
  vm::MuLock lock(&mm_->mu);
  return mm_->map_count;
}

uint64_t AddressSpace::total_vm() const {
  vm::MuLock lock(&mm_->mu);
  return mm_->total_vm;
}

uint64_t AddressSpace::locked_vm() const {
  vm::MuLock lock(&mm_->mu);
  return mm_->locked_vm;
}

uint64_t AddressSpace::anon_pages(uint64_t start, uint64_t end) const {
  vm::MuLock lock(&mm_->mu);
  return mm_->pt.anon_pages(start, end);
}

const PageTable& AddressSpace::page_table() const { return mm_->pt; }

uint64_t AddressSpace::seq() const { return mm_->seq.load(std::memory_order_acquire); }

const AddressSpaceOptions& AddressSpace::options() const { return mm_->opt; }

absl::StatusOr<std::unique_ptr<AddressSpace>> AddressSpace::fork() const {
  auto child = std::make_unique<AddressSpace>(mm_->opt, mm_->pt.frames_ptr());
  vm::MuLock lock(&mm_->mu);
  vm::Mm& cm = *child->mm_;
  vm::MuLock child_lock(&cm.mu);
  // The parent's entries lose their write bit and its frames gain references:
  // a change lockless faults must not overlap (dup_mmap write-locks every VMA).
  mm_->write_begin();
  for (Vma* v : mm_->range(0, UINT64_MAX)) mm_->mark(v);
  absl::Status s = vm::dup_mm(*mm_, cm);
  mm_->write_end();
  if (!s.ok()) return s;
  return child;
}

}  // namespace rcuvm
