// The address-space half of rcuvm-demo: page faults from several threads
// without the mmap mutex while a writer changes the same address space, then
// fork, then (when ../shared/oracle is present) the kernel trace replay.
//
//   1. 1,000 private anonymous VMAs of 16 pages, each followed by a one-page
//      hole, with per-VMA locks (AddressSpaceOptions::fault_lock = kPerVma).
//   2. N threads fault random pages of them (half reads, half writes) with
//      AddressSpace::fault(), alone and then while a writer thread maps,
//      write-protects and unmaps VMAs in another part of the same address
//      space. Every fault must succeed: its VMA never changes.
//   3. The checks: validate(), no page-table entry outside a VMA or more
//      permissive than it, and frame reference counts exact.
//   4. fork() of the whole address space (O(n) tree dup, copy-on-write).
//   5. Replay of every trace in ../shared/oracle, compared step for step with
//      what the Linux kernel did (strict: VmFlags and page counts included).
#ifndef RCUVM_TOOLS_DEMO_ADDRESS_SPACE_H_
#define RCUVM_TOOLS_DEMO_ADDRESS_SPACE_H_

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "rcuvm/address_space.h"
#include "rcuvm/page_table.h"
#include "rcuvm/rcu.h"
#include "rcuvm/status.h"
#include "../src/vm/trace_replay.h"

namespace rcuvm::demo {

inline constexpr uint64_t kVmaCount = 1000;
inline constexpr uint64_t kVmaPages = 16;
inline constexpr uint64_t kRegion = uint64_t{1} << 32;        // faulting VMAs
inline constexpr uint64_t kWriterRegion = uint64_t{6} << 44;  // the writer's

inline uint64_t vma_start(uint64_t i) { return kRegion + i * (kVmaPages + 1) * kPageSize; }

struct FaultPhase {
  uint64_t faults = 0;
  uint64_t bad = 0;  // faults that failed or signalled
  double seconds = 0;
  uint64_t writer_calls = 0;
  uint64_t writer_errors = 0;
};

// splitmix64: a small, seedable generator for the demo's threads.
inline uint64_t next_random(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline FaultPhase run_fault_phase(AddressSpace& as, int threads, double seconds, bool writer,
                                  uint64_t seed) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> faults{0}, bad{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      uint64_t s = seed + uint64_t(t) * 7919, n = 0, b = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const uint64_t r = next_random(s);
        const uint64_t addr =
            vma_start(r % kVmaCount) + ((r >> 20) % kVmaPages) * kPageSize + (r >> 40) % kPageSize;
        auto res = as.fault(addr, (r >> 60) & 1 ? Access::kWrite : Access::kRead);
        b += !res.ok() || *res != FaultResult::kOk;
        ++n;
      }
      faults += n;
      bad += b;
    });
  }
  FaultPhase out;
  std::thread w;
  std::atomic<uint64_t> calls{0}, errors{0};
  if (writer) {
    w = std::thread([&] {
      uint64_t s = seed ^ 0x5eed, c = 0, e = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const uint64_t slot = next_random(s) % 256;
        const uint64_t a = kWriterRegion + slot * 8 * kPageSize;
        e += !as.mmap(a, 4 * kPageSize, kProtRead | kProtWrite,
                      kMapPrivate | kMapAnonymous | kMapFixed, nullptr, 0)
                  .ok();
        e += !as.mprotect(a, kPageSize, kProtRead).ok();
        e += !as.munmap(a, 4 * kPageSize).ok();
        c += 3;
      }
      calls = c;
      errors = e;
    });
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : pool) t.join();
  if (w.joinable()) w.join();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.faults = faults;
  out.bad = bad;
  out.writer_calls = calls;
  out.writer_errors = errors;
  return out;
}

// No entry outside a VMA or more permissive than it; every anonymous frame
// referenced exactly as often as entries map it (one address space, no
// fork child alive). Empty string when all holds.
inline std::string check_page_table(const AddressSpace& as) {
  std::vector<VmaInfo> maps = as.maps();
  std::map<FrameId, uint32_t> refs;
  std::string err;
  as.page_table().for_each(0, ~uint64_t{0}, [&](uint64_t a, Pte e) {
    const VmaInfo* v = nullptr;
    for (const VmaInfo& m : maps)
      if (m.start <= a && a < m.end) v = &m;
    if (!v && err.empty()) err = "an entry maps an address outside every VMA";
    if (v && (e & pte::kWrite) && !(v->flags & vmf::kWrite) && err.empty())
      err = "an entry is writable in a read-only VMA";
    if (e & pte::kAnon) ++refs[pte::frame(e)];
  });
  const FrameAllocator& frames = as.page_table().frames();
  for (auto [f, n] : refs)
    if (frames.refcount(f) != n && err.empty()) err = "a frame's reference count is wrong";
  if (frames.in_use() != refs.size() && err.empty()) err = "a frame is leaked";
  return err;
}

// Runs the whole address-space demo; prints its report. Returns false when
// a check failed.
inline bool run_address_space_demo(int threads, double seconds, uint64_t seed,
                                   const std::string& shared_dir) {
  bool ok = true;
  std::printf("\nrcuvm-demo: an address space (Linux's mm): %" PRIu64
              " VMAs, %d thread%s faulting without the mmap mutex (per-VMA locks)\n",
              kVmaCount, threads, threads == 1 ? "" : "s");
  AddressSpaceOptions opt;
  opt.fault_lock = VmaLockMode::kPerVma;
  auto as = std::make_unique<AddressSpace>(opt);
  for (uint64_t i = 0; i < kVmaCount; ++i) {
    auto r = as->mmap(vma_start(i), kVmaPages * kPageSize, kProtRead | kProtWrite,
                      kMapPrivate | kMapAnonymous | kMapFixed, nullptr, 0);
    if (!r.ok()) {
      std::printf("  mmap failed: %s\n", r.status().ToString().c_str());
      return false;
    }
  }
  const FaultPhase alone = run_fault_phase(*as, threads, seconds, false, seed);
  const double alone_rate = alone.faults / alone.seconds / threads;
  std::printf("  faults    alone:       %.2f M faults/s per thread\n", alone_rate / 1e6);
  std::fflush(stdout);
  const FaultStats before = as->fault_stats();
  const FaultPhase busy = run_fault_phase(*as, threads, seconds, true, seed + 1);
  const FaultStats after = as->fault_stats();
  const double busy_rate = busy.faults / busy.seconds / threads;
  std::printf("  faults    with writer: %.2f M faults/s per thread: %.0f%% of the rate kept\n",
              busy_rate / 1e6, alone_rate > 0 ? 100.0 * busy_rate / alone_rate : 0.0);
  const unsigned cpus = std::thread::hardware_concurrency();
  if (cpus && unsigned(threads) + 1 > cpus)
    std::printf(
        "            (%d threads share %u CPUs in this phase: part of the drop is the writer's\n"
        "             CPU time; the counts below say how many faults had to wait for it)\n",
        threads + 1, cpus);
  const uint64_t spec = after.speculative - before.speculative;
  const uint64_t locked = after.locked - before.locked;
  std::printf("            %" PRIu64 " speculative, %" PRIu64
              " on the locked path (first write to a VMA prepares its anon_vma: %" PRIu64 ")\n",
              spec, locked, after.fb_anon_vma - before.fb_anon_vma);
  std::printf("  writer    %.1f k calls/s (mmap, mprotect, munmap) in the same address space, %" PRIu64
              " errors\n",
              busy.writer_calls / busy.seconds / 1e3, busy.writer_errors);
  const uint64_t bad = alone.bad + busy.bad;
  const absl::Status valid = as->validate();
  const std::string pt = check_page_table(*as);
  std::printf("  checks    validate(): %s; page table: %s; %" PRIu64 " faults failed\n",
              valid.ok() ? "ok" : valid.ToString().c_str(), pt.empty() ? "ok" : pt.c_str(), bad);
  ok &= valid.ok() && pt.empty() && bad == 0 && busy.writer_errors == 0;
  const uint64_t resident = as->anon_pages(0, ~uint64_t{0});
  std::printf("  memory    %" PRIu64 " resident anonymous pages, %" PRIu64 " page tables\n",
              resident, as->page_table().tables());

  const auto f0 = std::chrono::steady_clock::now();
  auto child = as->fork();
  const double fork_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - f0).count();
  if (!child.ok()) {
    std::printf("  fork      failed: %s\n", child.status().ToString().c_str());
    return false;
  }
  std::printf("  fork      %" PRIu64 " VMAs and %" PRIu64 " copy-on-write pages in %.0f us\n",
              (*child)->map_count(), (*child)->anon_pages(0, ~uint64_t{0}), fork_us);
  child->reset();
  as.reset();
  rcu::drain();

  namespace fs = std::filesystem;
  const fs::path dir = fs::path(shared_dir) / "oracle";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    std::printf("  oracle    %s not found: kernel trace replay skipped\n", dir.c_str());
    return ok;
  }
  int traces = 0, matched = 0;
  uint64_t steps = 0;
  const auto r0 = std::chrono::steady_clock::now();
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".trace") continue;
    auto trace = oracle::read_trace_file(e.path().string());
    ++traces;
    if (!trace.ok()) {
      std::printf("  oracle    %s: %s\n", e.path().filename().c_str(),
                  trace.status().ToString().c_str());
      continue;
    }
    const oracle::CheckResult r = oracle::check_trace(*trace, /*strict=*/true);
    steps += uint64_t(r.matched);
    if (r.first_difference.empty()) {
      ++matched;
    } else {
      std::printf("  oracle    %s: step %d differs\n", e.path().filename().c_str(),
                  r.matched + 1);
    }
  }
  const double replay_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - r0).count();
  std::printf("  oracle    %d of %d Linux 6.18 traces replayed step for step, strictly (%" PRIu64
              " steps in %.0f ms)\n",
              matched, traces, steps, replay_ms);
  ok &= matched == traces;
  return ok;
}

}  // namespace rcuvm::demo

#endif  // RCUVM_TOOLS_DEMO_ADDRESS_SPACE_H_
