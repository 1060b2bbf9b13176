// Module entry, libbpf log capture, and small fd/bpffs helpers.
#include "common.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

namespace ihr {

static thread_local std::string *g_capture = nullptr;

static int LibbpfPrint(enum libbpf_print_level level, const char *fmt, va_list args) {
  if (level == LIBBPF_DEBUG || g_capture == nullptr) return 0;
  char line[4096];
  int n = vsnprintf(line, sizeof(line), fmt, args);
  if (n > 0) g_capture->append(line, std::min<size_t>(n, sizeof(line) - 1));
  // Keep memory bounded for very long verifier logs: only the tail matters.
  if (g_capture->size() > (1 << 20)) g_capture->erase(0, g_capture->size() - (1 << 19));
  return 0;
}

void InstallLibbpfPrint() { libbpf_set_print(LibbpfPrint); }

LogCapture::LogCapture() : prev_(g_capture) { g_capture = &buf_; }
LogCapture::~LogCapture() { g_capture = prev_; }
std::string LogCapture::Tail(size_t max_bytes) const {
  if (buf_.size() <= max_bytes) return buf_;
  return buf_.substr(buf_.size() - max_bytes);
}

uint64_t ToU64(const Napi::Value &v) {
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  return (uint64_t)v.As<Napi::Number>().Int64Value();
}

// objGet(path) -> fd of a pinned object
static Napi::Value ObjGet(const Napi::CallbackInfo &info) {
  std::string path = info[0].As<Napi::String>();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(info.Env(), "bpf_obj_get " + path, errno);
  return Napi::Number::New(info.Env(), fd);
}

// objPin(fd, path)
static Napi::Value ObjPin(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string path = info[1].As<Napi::String>();
  if (bpf_obj_pin(fd, path.c_str()) < 0) ThrowErrno(info.Env(), "bpf_obj_pin " + path, errno);
  return info.Env().Undefined();
}

static Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd >= 0) close(fd);
  return info.Env().Undefined();
}

// progInfo(fd) -> { id, name, tag, type, runTimeNs, runCount }
static Napi::Value ProgInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct bpf_prog_info pi = {};
  __u32 len = sizeof(pi);
  if (bpf_obj_get_info_by_fd(fd, &pi, &len) < 0) ThrowErrno(env, "bpf_obj_get_info_by_fd(prog)", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("name", std::string(pi.name, strnlen(pi.name, sizeof(pi.name))));
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  o.Set("tag", std::string(tag));
  o.Set("type", pi.type);
  o.Set("runTimeNs", Napi::BigInt::New(env, (uint64_t)pi.run_time_ns));
  o.Set("runCount", Napi::BigInt::New(env, (uint64_t)pi.run_cnt));
  return o;
}

static Napi::Value ProgFdById(const Napi::CallbackInfo &info) {
  __u32 id = info[0].As<Napi::Number>().Uint32Value();
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) ThrowErrno(info.Env(), "bpf_prog_get_fd_by_id " + std::to_string(id), errno);
  return Napi::Number::New(info.Env(), fd);
}

static Napi::Value LinkFdById(const Napi::CallbackInfo &info) {
  __u32 id = info[0].As<Napi::Number>().Uint32Value();
  int fd = bpf_link_get_fd_by_id(id);
  if (fd < 0) ThrowErrno(info.Env(), "bpf_link_get_fd_by_id " + std::to_string(id), errno);
  return Napi::Number::New(info.Env(), fd);
}

// enableStats() -> fd; the kernel counts run_time_ns / run_cnt while the fd is open.
static Napi::Value EnableStats(const Napi::CallbackInfo &info) {
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) ThrowErrno(info.Env(), "bpf_enable_stats", errno);
  return Napi::Number::New(info.Env(), fd);
}

// isBpffs(path) -> boolean
static Napi::Value IsBpffs(const Napi::CallbackInfo &info) {
  std::string path = info[0].As<Napi::String>();
  struct statfs st;
  if (statfs(path.c_str(), &st) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
    ThrowErrno(info.Env(), "statfs " + path, errno);
  }
  return Napi::Boolean::New(info.Env(), (unsigned long)st.f_type == BPF_FS_MAGIC);
}

// mountBpffs(path): mount a bpf filesystem at path (which must exist)
static Napi::Value MountBpffs(const Napi::CallbackInfo &info) {
  std::string path = info[0].As<Napi::String>();
  if (mount("bpf", path.c_str(), "bpf", 0, "mode=0700") < 0) ThrowErrno(info.Env(), "mount bpffs " + path, errno);
  return info.Env().Undefined();
}

static Napi::Value NumPossibleCpus(const Napi::CallbackInfo &info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) ThrowErrno(info.Env(), "libbpf_num_possible_cpus", -n);
  return Napi::Number::New(info.Env(), n);
}

static Napi::Value LibbpfVersion(const Napi::CallbackInfo &info) {
  return Napi::String::New(info.Env(), libbpf_version_string());
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  exports.Set("objGet", Napi::Function::New(env, ObjGet));
  exports.Set("objPin", Napi::Function::New(env, ObjPin));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("progInfo", Napi::Function::New(env, ProgInfo));
  exports.Set("progFdById", Napi::Function::New(env, ProgFdById));
  exports.Set("linkFdById", Napi::Function::New(env, LinkFdById));
  exports.Set("enableStats", Napi::Function::New(env, EnableStats));
  exports.Set("isBpffs", Napi::Function::New(env, IsBpffs));
  exports.Set("mountBpffs", Napi::Function::New(env, MountBpffs));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
  exports.Set("libbpfVersion", Napi::Function::New(env, LibbpfVersion));
  InitObject(env, exports);
  InitAttach(env, exports);
  InitReader(env, exports);
  return exports;
}

}  // namespace ihr

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return ihr::Init(env, exports); }
NODE_API_MODULE(int_host_reporter, InitModule)
