// Shared helpers of the addon: errors that name the operation and the errno, and the libbpf log
// capture that lets a failed load carry the tail of the verifier log.
#pragma once

#include <napi.h>
#include <string>

namespace ihr {

// Throws a JS Error: "<op>: <strerror> (<ERRNO>)", with .op, .errno (positive), .code and,
// when given, .log (e.g. the verifier log tail).
[[noreturn]] void ThrowErrno(Napi::Env env, const std::string &op, int err, const std::string &log = "");

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
Napi::Object InitNetlink(Napi::Env env, Napi::Object exports);
Napi::Object InitReader(Napi::Env env, Napi::Object exports);
Napi::Object InitUdp(Napi::Env env, Napi::Object exports);

}  // namespace ihr
