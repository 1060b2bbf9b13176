// Attaching programs to an interface: TCX links (kernel 6.6+) through the bpf() syscall, since
// libbpf 1.1 and the 6.1 UAPI headers predate TCX, and classic clsact + cls_bpf through libbpf.
#include "common.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/pkt_sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ihr {

// Kernel UAPI values newer than Debian 12's linux-libc-dev (6.1).
constexpr uint32_t kTcxIngress = 46;   // BPF_TCX_INGRESS
constexpr uint32_t kTcxEgress = 47;    // BPF_TCX_EGRESS
constexpr uint32_t kFBefore = 1u << 3; // BPF_F_BEFORE

// The BPF_LINK_CREATE and BPF_PROG_QUERY attributes as of 6.6, laid out by hand.
union TcxAttr {
  struct {
    uint32_t prog_fd;
    uint32_t target_ifindex;
    uint32_t attach_type;
    uint32_t flags;
    uint32_t relative_fd;
    uint32_t pad;
    uint64_t expected_revision;
  } link_create;
  struct {
    uint32_t target_ifindex;
    uint32_t attach_type;
    uint32_t query_flags;
    uint32_t attach_flags;
    uint64_t prog_ids;
    uint32_t count;
    uint32_t pad;
    uint64_t prog_attach_flags;
    uint64_t link_ids;
    uint64_t link_attach_flags;
    uint64_t revision;
  } query;
  unsigned char raw[128];
};

static uint32_t TcxType(Napi::Env env, const std::string &dir) {
  if (dir == "ingress") return kTcxIngress;
  if (dir == "egress") return kTcxEgress;
  throw Napi::TypeError::New(env, "direction must be 'ingress' or 'egress', not '" + dir + "'");
}

// tcxAttach(progFd, ifindex, direction) -> link fd; the program runs before every other TCX
// program on the hook (BPF_F_BEFORE with no relative program).
static Napi::Value TcxAttach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int prog_fd = info[0].As<Napi::Number>().Int32Value();
  uint32_t ifindex = info[1].As<Napi::Number>().Uint32Value();
  std::string dir = info[2].As<Napi::String>();
  TcxAttr a;
  memset(&a, 0, sizeof(a));
  a.link_create.prog_fd = prog_fd;
  a.link_create.target_ifindex = ifindex;
  a.link_create.attach_type = TcxType(env, dir);
  a.link_create.flags = kFBefore;
  int fd = syscall(__NR_bpf, BPF_LINK_CREATE, &a, sizeof(a));
  if (fd < 0) ThrowErrno(env, "tcx attach " + dir + " ifindex " + std::to_string(ifindex), errno);
  return Napi::Number::New(env, fd);
}

// tcxQuery(ifindex, direction) -> { revision, progIds, linkIds } in run order
static Napi::Value TcxQuery(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t ifindex = info[0].As<Napi::Number>().Uint32Value();
  std::string dir = info[1].As<Napi::String>();
  uint32_t prog_ids[64] = {}, link_ids[64] = {};
  TcxAttr a;
  memset(&a, 0, sizeof(a));
  a.query.target_ifindex = ifindex;
  a.query.attach_type = TcxType(env, dir);
  a.query.prog_ids = (uint64_t)(uintptr_t)prog_ids;
  a.query.link_ids = (uint64_t)(uintptr_t)link_ids;
  a.query.count = 64;
  if (syscall(__NR_bpf, BPF_PROG_QUERY, &a, sizeof(a)) < 0)
    ThrowErrno(env, "tcx query " + dir + " ifindex " + std::to_string(ifindex), errno);
  Napi::Object o = Napi::Object::New(env);
  Napi::Array progs = Napi::Array::New(env), links = Napi::Array::New(env);
  uint32_t n = a.query.count < 64 ? a.query.count : 64;
  for (uint32_t i = 0; i < n; i++) {
    progs.Set(i, prog_ids[i]);
    links.Set(i, link_ids[i]);
  }
  o.Set("revision", Napi::BigInt::New(env, a.query.revision));
  o.Set("progIds", progs);
  o.Set("linkIds", links);
  return o;
}

// linkDetach(linkFd): detach now, even if the link is pinned elsewhere.
static Napi::Value LinkDetach(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (bpf_link_detach(fd) < 0) ThrowErrno(info.Env(), "bpf_link_detach", errno);
  return info.Env().Undefined();
}

// linkUpdate(linkFd, progFd): swap the program of a link atomically.
static Napi::Value LinkUpdate(const Napi::CallbackInfo &info) {
  int link_fd = info[0].As<Napi::Number>().Int32Value();
  int prog_fd = info[1].As<Napi::Number>().Int32Value();
  if (bpf_link_update(link_fd, prog_fd, nullptr) < 0) ThrowErrno(info.Env(), "bpf_link_update", errno);
  return info.Env().Undefined();
}

static enum bpf_tc_attach_point TcPoint(Napi::Env env, const std::string &dir) {
  if (dir == "ingress") return BPF_TC_INGRESS;
  if (dir == "egress") return BPF_TC_EGRESS;
  throw Napi::TypeError::New(env, "direction must be 'ingress' or 'egress', not '" + dir + "'");
}

// tcAttach(progFd, ifindex, direction, priority, handle) -> { progId, createdClsact }
// Creates clsact if the interface has none; replaces only a filter at our priority/handle.
static Napi::Value TcAttach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int prog_fd = info[0].As<Napi::Number>().Int32Value();
  int ifindex = info[1].As<Napi::Number>().Int32Value();
  std::string dir = info[2].As<Napi::String>();
  uint32_t prio = info[3].As<Napi::Number>().Uint32Value();
  uint32_t handle = info[4].As<Napi::Number>().Uint32Value();
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = TcPoint(env, dir));
  LogCapture cap;
  int err = bpf_tc_hook_create(&hook);
  bool created = err == 0;
  if (err && err != -EEXIST) ThrowErrno(env, "create clsact on ifindex " + std::to_string(ifindex), err, cap.Tail());
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE, .handle = handle, .priority = prio);
  err = bpf_tc_attach(&hook, &opts);
  if (err) ThrowErrno(env, "tc attach " + dir + " ifindex " + std::to_string(ifindex), err, cap.Tail());
  Napi::Object o = Napi::Object::New(env);
  o.Set("progId", opts.prog_id);
  o.Set("createdClsact", created);
  return o;
}

// tcDetach(ifindex, direction, priority, handle) -> boolean (false if no such filter)
static Napi::Value TcDetach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  std::string dir = info[1].As<Napi::String>();
  uint32_t prio = info[2].As<Napi::Number>().Uint32Value();
  uint32_t handle = info[3].As<Napi::Number>().Uint32Value();
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = TcPoint(env, dir));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = prio);
  LogCapture cap;
  int err = bpf_tc_detach(&hook, &opts);
  if (err == -ENOENT || err == -EINVAL) return Napi::Boolean::New(env, false);
  if (err) ThrowErrno(env, "tc detach " + dir + " ifindex " + std::to_string(ifindex), err, cap.Tail());
  return Napi::Boolean::New(env, true);
}

// clsactDestroy(ifindex): delete the clsact qdisc (callers only do this for one they created).
static Napi::Value ClsactDestroy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = (enum bpf_tc_attach_point)(BPF_TC_INGRESS | BPF_TC_EGRESS));
  LogCapture cap;
  int err = bpf_tc_hook_destroy(&hook);
  if (err && err != -ENOENT) ThrowErrno(env, "delete clsact on ifindex " + std::to_string(ifindex), err, cap.Tail());
  return env.Undefined();
}

Napi::Object InitAttach(Napi::Env env, Napi::Object exports) {
  exports.Set("tcxAttach", Napi::Function::New(env, TcxAttach));
  exports.Set("tcxQuery", Napi::Function::New(env, TcxQuery));
  exports.Set("linkDetach", Napi::Function::New(env, LinkDetach));
  exports.Set("linkUpdate", Napi::Function::New(env, LinkUpdate));
  exports.Set("tcAttach", Napi::Function::New(env, TcAttach));
  exports.Set("tcDetach", Napi::Function::New(env, TcDetach));
  exports.Set("clsactDestroy", Napi::Function::New(env, ClsactDestroy));
  return exports;
}

}  // namespace ihr
