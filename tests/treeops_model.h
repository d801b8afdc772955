// treeops_model.h: the reference model as a treeops backend, so a script can
// be answered by the model with exactly the tool's formatting (see
// tools/treeops.h). Used by the golden-script test and the fuzz target.
#ifndef RCUVM_TESTS_TREEOPS_MODEL_H_
#define RCUVM_TESTS_TREEOPS_MODEL_H_

#include <optional>
#include <string>

#include "../tools/treeops.h"
#include "reference_model.h"

namespace rcuvm::testing {

class ModelBackend {
 public:
  using Entry = treeops::Entry;
  using Result = treeops::Result;

  explicit ModelBackend(bool /*track_gaps*/) {}

  int store(uint64_t f, uint64_t l, uint64_t v) { return model_.store(f, l, v); }
  int insert(uint64_t f, uint64_t l, uint64_t v) { return model_.insert(f, l, v); }
  Result erase(uint64_t i) { return {0, model_.erase(i)}; }
  uint64_t load(uint64_t i) const { return model_.load(i); }
  std::optional<Entry> find(uint64_t i, uint64_t max) const { return convert(model_.find(i, max)); }
  std::optional<Entry> find_rev(uint64_t i, uint64_t min) const {
    return convert(model_.find_rev(i, min));
  }
  Result gap(uint64_t min, uint64_t max, uint64_t size) const {
    auto r = model_.find_gap(min, max, size);
    return {r.err, r.start};
  }
  Result gap_rev(uint64_t min, uint64_t max, uint64_t size) const {
    auto r = model_.find_gap_rev(min, max, size);
    return {r.err, r.start};
  }
  template <typename Fn>
  void range(uint64_t f, uint64_t l, Fn&& fn) const {
    for (const auto& e : model_.entries(f, l)) fn(Entry{e.first, e.last, e.value});
  }
  uint64_t count() const { return model_.count(); }
  std::string validate() const { return {}; }
  // A copy of the model is the model: nothing can differ.
  int dup(std::string* /*why*/) { return 0; }

  ReferenceModel& model() { return model_; }

 private:
  static std::optional<Entry> convert(const std::optional<ReferenceModel::Entry>& e) {
    if (!e) return std::nullopt;
    return Entry{e->first, e->last, e->value};
  }
  ReferenceModel model_;
};

// Answers a whole script with the model; returns the text the tool must print.
inline std::string model_answers(std::string_view script, uint64_t* parse_errors = nullptr) {
  std::string all;
  uint64_t errors = treeops::run_script<ModelBackend>(script, [&all](std::string& out) {
    all += out;
    out.clear();
  });
  if (parse_errors) *parse_errors = errors;
  return all;
}

}  // namespace rcuvm::testing

#endif  // RCUVM_TESTS_TREEOPS_MODEL_H_
