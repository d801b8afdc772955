// rcuvm/status.h: errors as absl::Status values that carry a Linux errno.
//
// Every fallible call in rcuvm returns absl::Status or absl::StatusOr<T>. The
// status code is the closest canonical code, and the exact errno the Linux
// kernel returns for the same situation travels with it, so callers that
// emulate system calls can recover EINVAL, ENOMEM, EEXIST, EACCES, EFAULT...
//
//   absl::Status s = tree.insert(10, 20, &v);
//   if (rcuvm::errno_of(s) == EEXIST) { ... }
#ifndef RCUVM_STATUS_H_
#define RCUVM_STATUS_H_

#include <string_view>

#include "absl/status/status.h"

namespace rcuvm {

// Returns a non-OK status carrying `err` (a positive errno value).
absl::Status errno_error(int err, std::string_view message = {});

// Returns the errno carried by `status`: 0 for OK, the recorded errno for a
// status made by errno_error(), and EIO for any other error.
int errno_of(const absl::Status& status);

}  // namespace rcuvm

#endif  // RCUVM_STATUS_H_
