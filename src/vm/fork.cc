// fork: dup the tree, replace its entries in place, copy the page table.
#include "vm/fork.h"

#include <cerrno>
#include <vector>

#include "rcuvm/fault_injection.h"
#include "rcuvm/status.h"

namespace rcuvm::vm {
namespace {

// What dup_mm has built so far, torn down on failure.
struct ChildBuild {
  Mm& child;
  std::vector<Vma*> vmas;  // allocated and opened
  bool done = false;

  ~ChildBuild() {
    if (done) return;
    // undo_dup_mmap: close what was opened, empty the tree (it may still
    // hold the parent's VMAs), free the copies and the page table's pages.
    for (Vma* v : vmas)
      if (v->ops) v->ops->close(*v);
    child.tree.destroy();
    std::vector<std::pair<uint64_t, uint64_t>> mapped;
    for (Vma* v : vmas) {
      mapped.emplace_back(v->start, v->end);
      delete v;  // never visible outside this call
    }
    for (auto [start, end] : mapped) child.pt.zap(start, end, nullptr);
    for (auto [start, end] : mapped) child.pt.free_tables(start, end, 0, 0);
    child.map_count = child.total_vm = child.locked_vm = 0;
  }
};

absl::Status nomem() { return errno_error(ENOMEM, "fork: out of memory"); }

// copy_page_range for one VMA: the child maps the parent's pages; private
// anonymous ones lose their write bit in the child now and in the parent
// once nothing can fail (collected in `protect`).
absl::Status copy_pages(Mm& parent, Mm& child, const Vma* src,
                        std::vector<uint64_t>& protect) {
  std::vector<std::pair<uint64_t, Pte>> present;
  parent.pt.for_each(src->start, src->end, [&](uint64_t a, Pte p) { present.emplace_back(a, p); });
  const bool cow = !(src->flags & vmf::kShared);
  for (auto [a, p] : present) {
    Pte c = p;
    if (cow && (p & pte::kWrite)) {
      c &= ~pte::kWrite;
      if (p & pte::kAnon) protect.push_back(a);
    }
    if (absl::Status s = child.pt.set(a, c, nullptr); !s.ok()) return s;
    if (p & pte::kAnon) parent.pt.frames().get(pte::frame(p));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status dup_mm(Mm& parent, Mm& child) {
  ChildBuild build{child, {}};
  if (absl::Status s = parent.tree.dup_into(child.tree); !s.ok()) return s;

  // One pass: each entry gets the child's own VMA, in place.
  std::vector<std::pair<uint64_t, uint64_t>> dropped;
  std::vector<std::pair<Vma*, Vma*>> copied;  // parent, child
  auto c = child.tree.cursor(0);
  while (auto e = c.next()) {
    Vma* p = e->value;
    if (p->flags & vmf::kDontCopy) {
      dropped.emplace_back(e->first, e->last);
      continue;
    }
    // dup_mmap charges each accounted VMA it copies.
    if ((p->flags & vmf::kAccount) && !parent.enough_memory(p->pages())) return nomem();
    if (detail::allocation_should_fail()) return nomem();
    Vma* n = new Vma(static_cast<const VmaState&>(*p));
    n->owner = &child;
    n->flags &= ~vmf::kLockedMask;
    if (n->flags & vmf::kWipeOnFork) {
      n->anon_vma = nullptr;  // a clean slate: anon_vma on the first fault
    } else if (p->anon_vma) {
      if (detail::allocation_should_fail()) {
        delete n;
        return nomem();
      }
      n->anon_vma = std::make_shared<AnonVma>(AnonVma{p->anon_vma->id});
    }
    n->publish_view();
    build.vmas.push_back(n);
    if (n->ops) n->ops->open(*n);
    if (absl::Status s = c.replace(n); !s.ok()) return s;
    copied.emplace_back(p, n);
  }
  // VM_DONTCOPY ranges (seen in the pass above) leave the child's tree now;
  // their nodes are reserved first, so that those stores cannot fail.
  if (!dropped.empty()) {
    if (absl::Status s = child.tree.preallocate(dropped.size() * child.tree.store_worst_case_nodes());
        !s.ok())
      return s;
  }
  for (auto [first, last] : dropped)
    if (absl::Status s = child.tree.store(first, last, nullptr); !s.ok()) return s;

  std::vector<uint64_t> protect;
  for (auto [p, n] : copied) {
    if (n->flags & vmf::kWipeOnFork) continue;
    // Only VMAs with anonymous memory have pages worth copying; the child
    // faults file pages in again.
    if (!p->anon_vma && !(p->flags & (vmf::kPfnMap | vmf::kMixedMap))) continue;
    if (absl::Status s = copy_pages(parent, child, p, protect); !s.ok()) return nomem();
  }

  // Past this point nothing can fail.
  for (uint64_t a : protect) (void)parent.pt.set(a, parent.pt.get(a) & ~pte::kWrite, nullptr);
  for (auto [p, n] : copied) {
    ++child.map_count;
    child.total_vm += n->pages();
  }
  child.shm_created = parent.shm_created;
  child.start_brk = parent.start_brk;
  child.brk = parent.brk;
  build.done = true;
  return absl::OkStatus();
}

}  // namespace rcuvm::vm
