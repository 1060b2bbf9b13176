// BpfObject: open an object file, set load-time constants and map sizes, load, list programs and
// maps, pin. Plus fd-based map operations.
#include "common.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <string.h>

namespace ihr {

class BpfObject : public Napi::ObjectWrap<BpfObject> {
public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "BpfObject", {
      InstanceMethod("setConstant", &BpfObject::SetConstant),
      InstanceMethod("setMaxEntries", &BpfObject::SetMaxEntries),
      InstanceMethod("setMapPinPath", &BpfObject::SetMapPinPath),
      InstanceMethod("load", &BpfObject::Load),
      InstanceMethod("programs", &BpfObject::Programs),
      InstanceMethod("maps", &BpfObject::Maps),
      InstanceMethod("pinProgram", &BpfObject::PinProgram),
      InstanceMethod("attachTracing", &BpfObject::AttachTracing),
      InstanceMethod("close", &BpfObject::Close),
    });
  }

  // new BpfObject(path)
  BpfObject(const Napi::CallbackInfo &info) : Napi::ObjectWrap<BpfObject>(info) {
    path_ = info[0].As<Napi::String>();
    LogCapture cap;
    obj_ = bpf_object__open_file(path_.c_str(), nullptr);
    int err = libbpf_get_error(obj_);
    if (err) {
      obj_ = nullptr;
      ThrowErrno(info.Env(), "bpf_object__open " + path_, err, cap.Tail());
    }
  }

  ~BpfObject() override {
    if (obj_) bpf_object__close(obj_);
  }

private:
  struct bpf_object *Obj(Napi::Env env) {
    if (!obj_) throw Napi::Error::New(env, "BpfObject: already closed");
    return obj_;
  }

  struct bpf_map *FindMap(Napi::Env env, const std::string &name) {
    struct bpf_map *m = bpf_object__find_map_by_name(Obj(env), name.c_str());
    if (!m) ThrowErrno(env, "no map named " + name + " in " + path_, ENOENT);
    return m;
  }

  // setConstant(name, value): a `const volatile` global in .rodata, before load.
  Napi::Value SetConstant(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::string name = info[0].As<Napi::String>();
    uint64_t value = ToU64(info[1]);
    if (loaded_) throw Napi::Error::New(env, "setConstant " + name + ": the object is already loaded");
    struct btf *btf = bpf_object__btf(Obj(env));
    if (!btf) ThrowErrno(env, "setConstant " + name + ": the object has no BTF", ENOENT);
    int sec_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
    if (sec_id < 0) ThrowErrno(env, "setConstant " + name + ": the object has no .rodata", ENOENT);
    const struct btf_type *sec = btf__type_by_id(btf, sec_id);
    const struct btf_var_secinfo *vs = btf_var_secinfos(sec);
    struct bpf_map *rodata = nullptr, *m;
    bpf_object__for_each_map(m, obj_) {
      const char *n = bpf_map__name(m);
      size_t l = strlen(n);
      if (l >= 7 && strcmp(n + l - 7, ".rodata") == 0) rodata = m;
    }
    if (!rodata) ThrowErrno(env, "setConstant " + name + ": no .rodata map", ENOENT);
    size_t size = 0;
    unsigned char *data = (unsigned char *)bpf_map__initial_value(rodata, &size);
    for (int i = 0; i < btf_vlen(sec); i++, vs++) {
      const struct btf_type *var = btf__type_by_id(btf, vs->type);
      if (name != btf__name_by_offset(btf, var->name_off)) continue;
      if (!data || vs->offset + vs->size > size) ThrowErrno(env, "setConstant " + name, EINVAL);
      if (vs->size != 1 && vs->size != 2 && vs->size != 4 && vs->size != 8)
        ThrowErrno(env, "setConstant " + name + ": not an integer", EINVAL);
      if (vs->size < 8 && value >> (vs->size * 8))
        ThrowErrno(env, "setConstant " + name + ": value does not fit in " + std::to_string(vs->size) + " bytes", ERANGE);
      memcpy(data + vs->offset, &value, vs->size);  // little-endian host, as the BPF target
      return env.Undefined();
    }
    ThrowErrno(env, "setConstant: no constant named " + name + " in " + path_, ENOENT);
  }

  Napi::Value SetMaxEntries(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::string name = info[0].As<Napi::String>();
    uint32_t n = info[1].As<Napi::Number>().Uint32Value();
    int err = bpf_map__set_max_entries(FindMap(env, name), n);
    if (err) ThrowErrno(env, "set max entries of " + name, err);
    return env.Undefined();
  }

  // setMapPinPath(name, path): reuse the map pinned there (if compatible) or pin it there on load.
  Napi::Value SetMapPinPath(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::string name = info[0].As<Napi::String>();
    std::string path = info[1].As<Napi::String>();
    int err = bpf_map__set_pin_path(FindMap(env, name), path.c_str());
    if (err) ThrowErrno(env, "set pin path of " + name, err);
    return env.Undefined();
  }

  Napi::Value Load(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    LogCapture cap;
    int err = bpf_object__load(Obj(env));
    if (err) ThrowErrno(env, "bpf_object__load " + path_, err, cap.Tail());
    loaded_ = true;
    return env.Undefined();
  }

  Napi::Value Programs(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Array arr = Napi::Array::New(env);
    struct bpf_program *p;
    uint32_t i = 0;
    bpf_object__for_each_program(p, Obj(env)) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", bpf_program__name(p));
      o.Set("section", bpf_program__section_name(p));
      o.Set("fd", loaded_ ? bpf_program__fd(p) : -1);
      arr.Set(i++, o);
    }
    return arr;
  }

  Napi::Value Maps(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Array arr = Napi::Array::New(env);
    struct bpf_map *m;
    uint32_t i = 0;
    bpf_object__for_each_map(m, Obj(env)) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", bpf_map__name(m));
      o.Set("fd", loaded_ ? bpf_map__fd(m) : -1);
      o.Set("type", (uint32_t)bpf_map__type(m));
      o.Set("keySize", bpf_map__key_size(m));
      o.Set("valueSize", bpf_map__value_size(m));
      o.Set("maxEntries", bpf_map__max_entries(m));
      o.Set("internal", bpf_map__is_internal(m));
      arr.Set(i++, o);
    }
    return arr;
  }

  Napi::Value PinProgram(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::string name = info[0].As<Napi::String>();
    std::string path = info[1].As<Napi::String>();
    struct bpf_program *p = bpf_object__find_program_by_name(Obj(env), name.c_str());
    if (!p) ThrowErrno(env, "no program named " + name + " in " + path_, ENOENT);
    LogCapture cap;
    int err = bpf_program__pin(p, path.c_str());
    if (err) ThrowErrno(env, "pin program " + name + " at " + path, err, cap.Tail());
    return env.Undefined();
  }

  // attachTracing(name, pinPath) -> link id: attaches a tracing program (e.g. tp_btf) and pins
  // its link so that it outlives this process.
  Napi::Value AttachTracing(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::string name = info[0].As<Napi::String>();
    std::string path = info[1].As<Napi::String>();
    struct bpf_program *p = bpf_object__find_program_by_name(Obj(env), name.c_str());
    if (!p) ThrowErrno(env, "no program named " + name + " in " + path_, ENOENT);
    LogCapture cap;
    struct bpf_link *link = bpf_program__attach(p);
    int err = libbpf_get_error(link);
    if (err) ThrowErrno(env, "attach " + name, err, cap.Tail());
    err = bpf_link__pin(link, path.c_str());
    if (err) {
      bpf_link__destroy(link);
      ThrowErrno(env, "pin link of " + name + " at " + path, err, cap.Tail());
    }
    struct bpf_link_info li = {};
    __u32 len = sizeof(li);
    bpf_obj_get_info_by_fd(bpf_link__fd(link), &li, &len);
    bpf_link__disconnect(link);  // the pin keeps it attached
    bpf_link__destroy(link);
    return Napi::Number::New(env, li.id);
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (obj_) bpf_object__close(obj_);
    obj_ = nullptr;
    return info.Env().Undefined();
  }

  std::string path_;
  struct bpf_object *obj_ = nullptr;
  bool loaded_ = false;
};

static Napi::Value MapLookup(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> key = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Buffer<uint8_t> value = info[2].As<Napi::Buffer<uint8_t>>();
  if (bpf_map_lookup_elem(fd, key.Data(), value.Data()) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
    ThrowErrno(info.Env(), "bpf_map_lookup_elem", errno);
  }
  return Napi::Boolean::New(info.Env(), true);
}

static Napi::Value MapUpdate(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> key = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Buffer<uint8_t> value = info[2].As<Napi::Buffer<uint8_t>>();
  uint64_t flags = info.Length() > 3 ? ToU64(info[3]) : (uint64_t)BPF_ANY;
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), flags) < 0)
    ThrowErrno(info.Env(), "bpf_map_update_elem", errno);
  return info.Env().Undefined();
}

static Napi::Value MapDelete(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> key = info[1].As<Napi::Buffer<uint8_t>>();
  if (bpf_map_delete_elem(fd, key.Data()) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
    ThrowErrno(info.Env(), "bpf_map_delete_elem", errno);
  }
  return Napi::Boolean::New(info.Env(), true);
}

// mapNextKey(fd, key | null, next) -> boolean (false at the end)
static Napi::Value MapNextKey(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  const void *key = info[1].IsNull() ? nullptr : info[1].As<Napi::Buffer<uint8_t>>().Data();
  Napi::Buffer<uint8_t> next = info[2].As<Napi::Buffer<uint8_t>>();
  if (bpf_map_get_next_key(fd, key, next.Data()) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
    ThrowErrno(info.Env(), "bpf_map_get_next_key", errno);
  }
  return Napi::Boolean::New(info.Env(), true);
}

static Napi::Value MapInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct bpf_map_info mi = {};
  __u32 len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) < 0) ThrowErrno(env, "bpf_obj_get_info_by_fd(map)", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", mi.id);
  o.Set("name", std::string(mi.name, strnlen(mi.name, sizeof(mi.name))));
  o.Set("type", mi.type);
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  return o;
}

Napi::Object InitObject(Napi::Env env, Napi::Object exports) {
  exports.Set("BpfObject", BpfObject::Define(env));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapNextKey", Napi::Function::New(env, MapNextKey));
  exports.Set("mapInfo", Napi::Function::New(env, MapInfo));
  return exports;
}

}  // namespace ihr
