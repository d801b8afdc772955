// treeops_decoder.h: turns arbitrary bytes into treeops operations and runs
// them on the range tree and on the reference model side by side.
//
// Shared by the libFuzzer target (fuzz/treeops_fuzz.cc) and by the unit test
// that replays fixed inputs in normal CI (tests/fuzz_corpus_test.cc).
//
// Decoding is total (every byte string means something; missing bytes read as
// zero) and biased towards the cases that break range trees: indices drawn
// from a small dense pool so ranges collide, page-aligned indices, indices at
// the top of the space, indices next to recently used ones (touching ranges),
// and lengths from one index to spans of many nodes.
#ifndef RCUVM_FUZZ_TREEOPS_DECODER_H_
#define RCUVM_FUZZ_TREEOPS_DECODER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../tests/treeops_model.h"
#include "../tools/treeops.h"

namespace rcuvm::treeops::fuzzing {

// Caps the work one input can ask for, so each run stays fast.
inline constexpr size_t kMaxOps = 4096;

class Decoder {
 public:
  explicit Decoder(std::span<const uint8_t> data) : data_(data) {}

  bool done() const { return pos_ >= data_.size(); }

  uint8_t byte() { return pos_ < data_.size() ? data_[pos_++] : 0; }

  // An index from one of eight classes chosen by the top three bits. Class 2
  // lands within 128 of a multiple of 2^32, where leaves and allocation nodes
  // switch between 32-bit offsets and full pivots (src/tree/node.h).
  uint64_t index() {
    const uint8_t s = byte();
    const uint64_t low = s & 31;
    uint64_t v = 0;
    switch (s >> 5) {
      case 0: case 1: v = low | uint64_t(byte()) << 5; break;               // dense 0..8191
      case 2: v = (uint64_t(low & 7) << 32) + byte() - 128; break;          // near k * 2^32: the
                                                                            // 32-bit offset limit
      case 3: v = (low << 8 | byte()) << 12; break;                         // page aligned
      case 4: v = UINT64_MAX - (low << 8 | byte()); break;                  // near the top
      case 5: v = recent_[0] + (low & 15) - 8; break;                       // touching, wraps
      case 6: for (int i = 0; i < 8; ++i) v = v << 8 | byte(); break;       // anything
      case 7: v = recent_[low % recent_.size()]; break;                     // reuse
    }
    remember(v);
    return v;
  }

  // A last index for a range starting at `first`: mostly short ranges so trees
  // grow deep, sometimes page-sized or long ones, rarely any index (EINVAL
  // when below first).
  uint64_t last_for(uint64_t first) {
    const uint8_t s = byte();
    uint64_t len = 0;
    if (s < 160) {
      len = s & 15;
    } else if (s < 208) {
      len = uint64_t(s & 63) << 4 | (byte() & 15);
    } else if (s < 240) {
      len = (uint64_t((s & 15) + 1) << 12) - 1;
    } else {
      return index();
    }
    uint64_t last = first + len;
    if (last < first) last = UINT64_MAX;  // saturate
    remember(last);
    return last;
  }

  uint64_t value() {
    const uint8_t s = byte();
    return s < 16 ? 0 : s;  // about one in sixteen is null
  }

  Op op() {
    Op op;
    const uint8_t k = byte() % 16;
    switch (k) {
      case 0: case 1: case 2: case 3:
        op.kind = OpKind::kStore;
        op.a = index();
        op.b = last_for(op.a);
        op.c = k == 3 ? 0 : value();
        break;
      case 4:
        op.kind = OpKind::kInsert;
        op.a = index();
        op.b = last_for(op.a);
        op.c = value();
        break;
      case 5: case 6: op.kind = OpKind::kErase; op.a = index(); break;
      case 7: op.kind = OpKind::kLoad; op.a = index(); break;
      case 8: op.kind = OpKind::kFind; op.a = index(); op.b = last_for(op.a); break;
      case 9: op.kind = OpKind::kFindRev; op.b = index(); op.a = last_for(op.b); break;
      case 10: case 11:
        op.kind = k == 10 ? OpKind::kGap : OpKind::kGapRev;
        op.a = index();
        op.b = last_for(op.a);
        op.c = size();
        break;
      case 12: op.kind = OpKind::kRange; op.a = index(); op.b = last_for(op.a); break;
      case 13: op.kind = OpKind::kCount; break;
      case 14: op.kind = OpKind::kDup; break;
      case 15: op.kind = OpKind::kValidate; break;
    }
    return op;
  }

 private:
  uint64_t size() {
    const uint8_t s = byte();
    if (s == 255) return index();  // anything, 0 and huge included
    return s < 128 ? s & 15 : uint64_t(s & 127) << 12;
  }
  void remember(uint64_t v) {
    for (size_t i = recent_.size() - 1; i > 0; --i) recent_[i] = recent_[i - 1];
    recent_[0] = v;
  }

  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  std::array<uint64_t, 8> recent_{};
};

// Decodes a whole input: the first byte picks the mode, then operations.
inline std::vector<Op> decode(std::span<const uint8_t> data) {
  Decoder d(data);
  std::vector<Op> ops;
  Op mode;
  mode.kind = OpKind::kMode;
  mode.alloc = d.byte() & 1;
  ops.push_back(mode);
  while (!d.done() && ops.size() < kMaxOps) ops.push_back(d.op());
  return ops;
}

inline bool is_write(OpKind k) {
  return k == OpKind::kStore || k == OpKind::kInsert || k == OpKind::kErase || k == OpKind::kDup;
}

// Runs `ops` on the tree and the model (or any two backends). Returns "" when
// every answer agrees and the first backend validates after every write;
// otherwise a report that ends with a treeops script reproducing the failure.
template <typename Subject = TreeBackend, typename Reference = testing::ModelBackend>
std::string run_differential(const std::vector<Op>& ops) {
  std::string tree_out, model_out;
  Executor<Subject> tree(&tree_out);
  Executor<Reference> model(&model_out);
  Op whole;
  whole.kind = OpKind::kRange;
  whole.b = UINT64_MAX;
  // The reproducer is written only on failure: operations 0..upto, then `tail`.
  auto report = [&ops, &whole](const std::string& what, size_t upto, const char* tail) {
    std::string s = what + "\n--- reproducer (rcuvm-treeops script) ---\n";
    for (size_t i = 0; i <= upto; ++i) s += format_op(i < ops.size() ? ops[i] : whole) + '\n';
    return s + tail;
  };
  for (size_t i = 0; i <= ops.size(); ++i) {
    // A final pass over everything catches entries no query happened to touch.
    const Op& op = i < ops.size() ? ops[i] : whole;
    tree_out.clear();
    model_out.clear();
    tree.run(op);
    model.run(op);
    if (tree_out != model_out) {
      return report("answers differ at operation " + std::to_string(i) + " (" + format_op(op) +
                        ")\ntree:  " + tree_out + "model: " + model_out,
                    i, "");
    }
    if (is_write(op.kind)) {
      if (std::string why = tree.backend().validate(); !why.empty()) {
        return report("validate failed after operation " + std::to_string(i) + ": " + why, i,
                      "validate\n");
      }
    }
  }
  return {};
}

inline std::string run_differential(std::span<const uint8_t> data) { return run_differential(decode(data)); }

}  // namespace rcuvm::treeops::fuzzing

#endif  // RCUVM_FUZZ_TREEOPS_DECODER_H_
