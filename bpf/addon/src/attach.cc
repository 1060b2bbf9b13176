// Attaching programs to an interface: TCX links (kernel 6.6+) and classic clsact + cls_bpf, both
// through libbpf. The programs come as fds (often opened from their pins, with no bpf_object
// around them), so TCX links are made with bpf_link_create rather than bpf_program__attach_tcx.
#include "common.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <string.h>

#include <vector>

namespace ihr {

static enum bpf_attach_type TcxAttachType(Direction d) {
  return d == Direction::Ingress ? BPF_TCX_INGRESS : BPF_TCX_EGRESS;
}

static enum bpf_tc_attach_point TcAttachPoint(Direction d) {
  return d == Direction::Ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
}

static std::string Hook(Direction d, int ifindex) {
  return std::string(DirectionName(d)) + " ifindex " + std::to_string(ifindex);
}

// tcxAttach(progFd, ifindex, direction) -> link fd; the program runs before every other TCX
// program on the hook (BPF_F_BEFORE with no relative program).
static Napi::Value TcxAttach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int prog_fd = info[0].As<Napi::Number>().Int32Value();
  int ifindex = info[1].As<Napi::Number>().Int32Value();
  Direction dir = ParseDirection(env, info[2]);
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = BPF_F_BEFORE);
  LogCapture cap;
  int fd = bpf_link_create(prog_fd, ifindex, TcxAttachType(dir), &opts);
  if (fd < 0) ThrowErrno(env, "tcx attach " + Hook(dir, ifindex), errno, cap.Tail());
  return Napi::Number::New(env, fd);
}

// tcxQuery(ifindex, direction) -> { revision, progIds, linkIds } in run order
static Napi::Value TcxQuery(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  Direction dir = ParseDirection(env, info[1]);
  std::vector<__u32> prog_ids, link_ids;
  LIBBPF_OPTS(bpf_prog_query_opts, q);
  // First the count, then the ids; ENOSPC: programs were added in between, ask again.
  for (;;) {
    q.prog_ids = prog_ids.empty() ? nullptr : prog_ids.data();
    q.link_ids = link_ids.empty() ? nullptr : link_ids.data();
    q.count = prog_ids.size();
    int err = bpf_prog_query_opts(ifindex, TcxAttachType(dir), &q);
    if (err == -ENOSPC || (err == 0 && q.count > prog_ids.size())) {
      prog_ids.assign(q.count + 4, 0);
      link_ids.assign(q.count + 4, 0);
      continue;
    }
    if (err) ThrowErrno(env, "tcx query " + Hook(dir, ifindex), err);
    break;
  }
  Napi::Object o = Napi::Object::New(env);
  Napi::Array progs = Napi::Array::New(env), links = Napi::Array::New(env);
  for (uint32_t i = 0; i < q.count; i++) {
    progs.Set(i, prog_ids[i]);
    links.Set(i, link_ids[i]);
  }
  o.Set("revision", Napi::BigInt::New(env, (uint64_t)q.revision));
  o.Set("progIds", progs);
  o.Set("linkIds", links);
  return o;
}

// linkInfo(fd) -> { id, type, progId, ifindex?, direction? } (the last two for TCX links)
static Napi::Value LinkInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct bpf_link_info li = {};
  __u32 len = sizeof(li);
  if (bpf_link_get_info_by_fd(fd, &li, &len) < 0) ThrowErrno(env, "bpf_link_get_info_by_fd", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", li.id);
  o.Set("type", li.type);
  o.Set("progId", li.prog_id);
  if (li.type == BPF_LINK_TYPE_TCX) {
    o.Set("ifindex", li.tcx.ifindex);
    for (Direction d : {Direction::Ingress, Direction::Egress}) {
      if (li.tcx.attach_type == (__u32)TcxAttachType(d)) o.Set("direction", DirectionName(d));
    }
  }
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

// tcAttach(progFd, ifindex, direction, priority, handle) -> { progId, createdClsact }
// Creates clsact if the interface has none; replaces only a filter at our priority/handle.
static Napi::Value TcAttach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int prog_fd = info[0].As<Napi::Number>().Int32Value();
  int ifindex = info[1].As<Napi::Number>().Int32Value();
  Direction dir = ParseDirection(env, info[2]);
  uint32_t prio = info[3].As<Napi::Number>().Uint32Value();
  uint32_t handle = info[4].As<Napi::Number>().Uint32Value();
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = TcAttachPoint(dir));
  LogCapture cap;
  int err = bpf_tc_hook_create(&hook);
  bool created = err == 0;
  if (err && err != -EEXIST) ThrowErrno(env, "create clsact on ifindex " + std::to_string(ifindex), err, cap.Tail());
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE, .handle = handle, .priority = prio);
  err = bpf_tc_attach(&hook, &opts);
  if (err) ThrowErrno(env, "tc attach " + Hook(dir, ifindex), err, cap.Tail());
  Napi::Object o = Napi::Object::New(env);
  o.Set("progId", opts.prog_id);
  o.Set("createdClsact", created);
  return o;
}

// tcDetach(ifindex, direction, priority, handle) -> boolean (false if no such filter)
static Napi::Value TcDetach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  Direction dir = ParseDirection(env, info[1]);
  uint32_t prio = info[2].As<Napi::Number>().Uint32Value();
  uint32_t handle = info[3].As<Napi::Number>().Uint32Value();
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = TcAttachPoint(dir));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = prio);
  LogCapture cap;
  int err = bpf_tc_detach(&hook, &opts);
  if (err == -ENOENT || err == -EINVAL) return Napi::Boolean::New(env, false);
  if (err) ThrowErrno(env, "tc detach " + Hook(dir, ifindex), err, cap.Tail());
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
  exports.Set("linkInfo", Napi::Function::New(env, LinkInfo));
  exports.Set("linkDetach", Napi::Function::New(env, LinkDetach));
  exports.Set("linkUpdate", Napi::Function::New(env, LinkUpdate));
  exports.Set("tcAttach", Napi::Function::New(env, TcAttach));
  exports.Set("tcDetach", Napi::Function::New(env, TcDetach));
  exports.Set("clsactDestroy", Napi::Function::New(env, ClsactDestroy));
  return exports;
}

}  // namespace ihr
