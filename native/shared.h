// What the three native modules (bpf/addon, netlink/, daemon/report/udp/) share: errors that
// name the operation and the errno, and the one parser of a hook direction. Header only: each
// module is its own .node and links nothing of the others.
#pragma once

#include <napi.h>
#include <string.h>

#include <string>

namespace ihr {

// Throws a JS Error: "<op>: <strerror> (<ERRNO>)", with .op, .errno (positive), .code and,
// when given, .log (e.g. the verifier log tail).
[[noreturn]] inline void ThrowErrno(Napi::Env env, const std::string &op, int err, const std::string &log = "") {
  if (err < 0) err = -err;
  const char *name = strerrorname_np(err);
  Napi::Error e = Napi::Error::New(env, op + ": " + strerror(err) + " (" + (name ? name : "E?") + ")");
  e.Set("op", Napi::String::New(env, op));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  if (!log.empty()) e.Set("log", Napi::String::New(env, log));
  throw e;
}

// The hook of an interface a program runs on.
enum class Direction { Ingress, Egress };

inline Direction ParseDirection(Napi::Env env, const Napi::Value &v) {
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "ingress") return Direction::Ingress;
  if (s == "egress") return Direction::Egress;
  throw Napi::TypeError::New(env, "direction must be 'ingress' or 'egress', not '" + s + "'");
}

inline const char *DirectionName(Direction d) { return d == Direction::Ingress ? "ingress" : "egress"; }

}  // namespace ihr
