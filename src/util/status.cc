// Errno-carrying statuses: the canonical code for readers of absl, and the
// exact Linux errno as a payload for callers that emulate system calls.
#include "rcuvm/status.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rcuvm {
namespace {

constexpr char kErrnoPayload[] = "rcuvm.errno";

absl::StatusCode code_for(int err) {
  switch (err) {
    case EINVAL: return absl::StatusCode::kInvalidArgument;
    case ENOMEM: return absl::StatusCode::kResourceExhausted;
    case EEXIST: return absl::StatusCode::kAlreadyExists;
    case EACCES:
    case EPERM: return absl::StatusCode::kPermissionDenied;
    case EFAULT: return absl::StatusCode::kOutOfRange;
    case EBUSY:
    case EAGAIN: return absl::StatusCode::kUnavailable;
    case ENOENT: return absl::StatusCode::kNotFound;
    case EOPNOTSUPP: return absl::StatusCode::kUnimplemented;
    default: return absl::StatusCode::kUnknown;
  }
}

}  // namespace

absl::Status errno_error(int err, std::string_view message) {
  std::string text = strerrorname_np(err) ? strerrorname_np(err) : absl::StrCat("errno ", err);
  if (!message.empty()) text.append(": ").append(message.data(), message.size());
  absl::Status s(code_for(err), text);
  s.SetPayload(kErrnoPayload, absl::Cord(absl::StrCat(err)));
  return s;
}

int errno_of(const absl::Status& status) {
  if (status.ok()) return 0;
  auto payload = status.GetPayload(kErrnoPayload);
  int err = 0;
  if (payload && absl::SimpleAtoi(std::string(*payload), &err)) return err;
  return EIO;
}

}  // namespace rcuvm
