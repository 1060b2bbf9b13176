// Shared helpers of the addon: the libbpf log capture that lets a failed load carry the tail of
// the verifier log (errors and directions: native/shared.h).
#pragma once

#include "shared.h"

namespace ihr {

// libbpf messages are appended to a per-thread capture buffer while a LogCapture is alive.
class LogCapture {
public:
  LogCapture();
  ~LogCapture();
  std::string Tail(size_t max_bytes = 8192) const;

private:
  std::string *prev_;
  std::string buf_;
};

void InstallLibbpfPrint();

// Reads an integer property that may be a Number or a BigInt.
uint64_t ToU64(const Napi::Value &v);

Napi::Object InitObject(Napi::Env env, Napi::Object exports);
Napi::Object InitAttach(Napi::Env env, Napi::Object exports);
Napi::Object InitReader(Napi::Env env, Napi::Object exports);

}  // namespace ihr
