// The rtnetlink lookups of the project: links (also inside another network namespace, to find a
// veth's peer), qdiscs and tc filters (to list what is attached to an interface, ours and
// others'), and the lookups that find a pod's host veth from its IP: the route's output
// interface, a neighbour's MAC, and the bridge port a MAC was learned on.
#include "socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

namespace ihr {

namespace {

std::string MacText(const unsigned char *m) {
  char mac[18];
  snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return mac;
}

bool ParseMac(const std::string &s, unsigned char out[6]) {
  unsigned v[6];
  char tail;
  if (sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6) return false;
  for (int i = 0; i < 6; i++) {
    if (v[i] > 0xff) return false;
    out[i] = (unsigned char)v[i];
  }
  return true;
}

// An IPv4 or IPv6 literal: family and 4 or 16 address bytes; a TypeError otherwise.
struct IpAddr {
  int family;
  unsigned char bytes[16];
  size_t len;
  std::string text;
};

IpAddr ParseIp(Napi::Env env, const Napi::Value &v) {
  if (!v.IsString()) throw Napi::TypeError::New(env, "address must be a string");
  IpAddr a = {};
  a.text = v.As<Napi::String>();
  if (inet_pton(AF_INET, a.text.c_str(), a.bytes) == 1) {
    a.family = AF_INET;
    a.len = 4;
  } else if (inet_pton(AF_INET6, a.text.c_str(), a.bytes) == 1) {
    a.family = AF_INET6;
    a.len = 16;
  } else {
    throw Napi::TypeError::New(env, "invalid IP address '" + a.text + "'");
  }
  return a;
}

int Ifindex(Napi::Env env, const Napi::Value &v) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, "ifindex must be a number");
  int i = v.As<Napi::Number>().Int32Value();
  if (i <= 0) throw Napi::TypeError::New(env, "ifindex must be a positive integer, not " + std::to_string(i));
  return i;
}

uint32_t TcParent(Direction d) {
  return TC_H_MAKE(TC_H_CLSACT, d == Direction::Ingress ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
}

// Dumps qdiscs (RTM_GETQDISC) or filters (RTM_GETTFILTER, under `parent`) of an interface.
int DumpTc(Rtnl &s, uint16_t type, int ifindex, uint32_t parent, const std::function<void(const Reply<tcmsg> &)> &visit) {
  tcmsg t = {};
  t.tcm_family = AF_UNSPEC;
  t.tcm_ifindex = ifindex;
  t.tcm_parent = parent;
  Request req(type, NLM_F_REQUEST | NLM_F_DUMP, t);
  return s.Transact(req, type == RTM_GETQDISC ? RTM_NEWQDISC : RTM_NEWTFILTER,
                    [&](const nlmsghdr *h) { visit(Reply<tcmsg>(h, TCA_MAX)); });
}

// Dumps the neighbour table of one family (AF_INET/AF_INET6: ARP/NDP, AF_BRIDGE: the bridges'
// forwarding databases) and calls `visit` with each entry until it returns true.
int DumpNeighbours(Rtnl &s, int family, const std::function<bool(const Reply<ndmsg> &)> &visit) {
  ndmsg n = {};
  n.ndm_family = family;
  Request req(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, n);
  bool done = false;
  return s.Transact(req, RTM_NEWNEIGH, [&](const nlmsghdr *h) {
    if (done) return;
    Reply<ndmsg> r(h, NDA_MAX);
    if (r.hdr->ndm_family == family) done = visit(r);
  });
}

}  // namespace

// linkGet({ifindex} | {ifname}, netnsPath?) -> { ifindex, ifname, kind, up, peerIfindex, peerNetnsId, mac, master }
static Napi::Value LinkGet(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "linkGet: expected { ifindex } or { ifname }");
  Napi::Object spec = info[0].As<Napi::Object>();
  std::string netns = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  ifinfomsg i = {};
  i.ifi_family = AF_UNSPEC;
  std::string name, what;
  if (spec.Has("ifname")) {
    name = spec.Get("ifname").As<Napi::String>();
    if (name.empty() || name.size() >= IFNAMSIZ) throw Napi::TypeError::New(env, "invalid interface name '" + name + "'");
    what = "link " + name;
  } else {
    Napi::Value v = spec.Get("ifindex");
    if (!v.IsNumber()) throw Napi::TypeError::New(env, "linkGet: expected { ifindex } or { ifname }");
    i.ifi_index = v.As<Napi::Number>().Int32Value();
    what = "link ifindex " + std::to_string(i.ifi_index);
  }
  if (!netns.empty()) what += " in netns " + netns;
  if (name.empty() && i.ifi_index <= 0) ThrowErrno(env, what, ENODEV);  // no interface has it
  Request req(RTM_GETLINK, NLM_F_REQUEST, i);
  if (!name.empty()) req.Attr(IFLA_IFNAME, name.c_str(), name.size() + 1);
  Rtnl s(env, netns);
  Napi::Object out = Napi::Object::New(env);
  bool found = false;
  int err = s.Transact(req, RTM_NEWLINK, [&](const nlmsghdr *h) {
    Reply<ifinfomsg> r(h, IFLA_MAX);
    found = true;
    out.Set("ifindex", r.hdr->ifi_index);
    out.Set("ifname", r.attrs.Str(IFLA_IFNAME));
    out.Set("up", (r.hdr->ifi_flags & IFF_UP) != 0);
    if (auto v = r.attrs.U32(IFLA_LINK)) out.Set("peerIfindex", *v);
    if (auto v = r.attrs.U32(IFLA_LINK_NETNSID)) out.Set("peerNetnsId", (int32_t)*v);
    if (auto v = r.attrs.U32(IFLA_MASTER)) out.Set("master", *v);
    if (const unsigned char *m = r.attrs.Exactly(IFLA_ADDRESS, 6)) out.Set("mac", MacText(m));
    out.Set("kind", r.attrs.Nested(IFLA_LINKINFO, IFLA_INFO_MAX).Str(IFLA_INFO_KIND));
  });
  if (err == -ENODEV || (err == 0 && !found)) ThrowErrno(env, what, ENODEV);
  if (err) ThrowErrno(env, what, err);
  return out;
}

// qdiscs(ifindex) -> [{ kind, handle, parent }]
static Napi::Value Qdiscs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = Ifindex(env, info[0]);
  Rtnl s(env);
  Napi::Array arr = Napi::Array::New(env);
  uint32_t n = 0;
  int err = DumpTc(s, RTM_GETQDISC, ifindex, 0, [&](const Reply<tcmsg> &r) {
    if (r.hdr->tcm_ifindex != ifindex) return;  // the kernel dumps every interface's
    Napi::Object o = Napi::Object::New(env);
    o.Set("kind", r.attrs.Str(TCA_KIND));
    o.Set("handle", r.hdr->tcm_handle);
    o.Set("parent", r.hdr->tcm_parent);
    arr.Set(n++, o);
  });
  if (err) ThrowErrno(env, "dump qdiscs of ifindex " + std::to_string(ifindex), err);
  return arr;
}

// tcFilters(ifindex, direction) -> [{ priority, handle, protocol, kind, progId, name, directAction }]
// An interface without clsact has no filters: [].
static Napi::Value TcFilters(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = Ifindex(env, info[0]);
  Direction dir = ParseDirection(env, info[1]);
  Rtnl s(env);
  Napi::Array arr = Napi::Array::New(env);
  uint32_t n = 0;
  int err = DumpTc(s, RTM_GETTFILTER, ifindex, TcParent(dir), [&](const Reply<tcmsg> &r) {
    if (r.hdr->tcm_handle == 0) return;  // the classifier instance itself, not a filter
    Napi::Object o = Napi::Object::New(env);
    std::string kind = r.attrs.Str(TCA_KIND);
    o.Set("priority", r.hdr->tcm_info >> 16);
    o.Set("protocol", ntohs(r.hdr->tcm_info & 0xffff));
    o.Set("handle", r.hdr->tcm_handle);
    o.Set("kind", kind);
    if (kind == "bpf" && r.attrs.Has(TCA_OPTIONS)) {
      Attrs bpf = r.attrs.Nested(TCA_OPTIONS, TCA_BPF_MAX);
      if (auto id = bpf.U32(TCA_BPF_ID)) o.Set("progId", *id);
      o.Set("name", bpf.Str(TCA_BPF_NAME));
      auto flags = bpf.U32(TCA_BPF_FLAGS);
      o.Set("directAction", flags && (*flags & TCA_BPF_FLAG_ACT_DIRECT));
    }
    arr.Set(n++, o);
  });
  // EINVAL: no clsact qdisc on the interface, hence no filters.
  if (err == -EINVAL || err == -ENOENT) return Napi::Array::New(env);
  if (err) ThrowErrno(env, "dump tc filters of " + std::string(DirectionName(dir)) + " ifindex " + std::to_string(ifindex), err);
  return arr;
}

// routeOutputIfindex(ip) -> the output interface (RTA_OIF) of the main routing decision for a
// packet to `ip` from this host (RTM_GETROUTE), or undefined when there is no route.
static Napi::Value RouteOutputIfindex(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  IpAddr ip = ParseIp(env, info[0]);
  rtmsg r = {};
  r.rtm_family = ip.family;
  r.rtm_dst_len = ip.len * 8;
  Request req(RTM_GETROUTE, NLM_F_REQUEST, r);
  req.Attr(RTA_DST, ip.bytes, ip.len);
  Rtnl s(env);
  int oif = -1;
  int err = s.Transact(req, RTM_NEWROUTE, [&](const nlmsghdr *h) {
    if (auto v = Reply<rtmsg>(h, RTA_MAX).attrs.U32(RTA_OIF)) oif = (int)*v;
  });
  // No route (unreachable, prohibited, blackhole): not an error, just no interface.
  if (err == -ENETUNREACH || err == -EHOSTUNREACH || err == -EACCES || err == -EINVAL || err == -ESRCH) return env.Undefined();
  if (err) ThrowErrno(env, "route lookup " + ip.text, err);
  if (oif <= 0) return env.Undefined();
  return Napi::Number::New(env, oif);
}

// neighbourMac(ifindex, ip) -> the MAC of the neighbour entry of `ip` on the interface, or
// undefined when there is none or it is not resolved.
static Napi::Value NeighbourMac(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = Ifindex(env, info[0]);
  IpAddr ip = ParseIp(env, info[1]);
  Rtnl s(env);
  std::string mac;
  int err = DumpNeighbours(s, ip.family, [&](const Reply<ndmsg> &r) {
    if (r.hdr->ndm_ifindex != ifindex || (r.hdr->ndm_state & (NUD_INCOMPLETE | NUD_FAILED | NUD_NOARP))) return false;
    const unsigned char *dst = r.attrs.Exactly(NDA_DST, ip.len);
    const unsigned char *lladdr = r.attrs.Exactly(NDA_LLADDR, 6);
    if (!dst || memcmp(dst, ip.bytes, ip.len) != 0 || !lladdr) return false;
    mac = MacText(lladdr);
    return true;
  });
  if (err) ThrowErrno(env, "dump neighbours", err);
  if (mac.empty()) return env.Undefined();
  return Napi::String::New(env, mac);
}

// neighbourProbe(ifindex, ip): asks the kernel to resolve `ip` on the interface (RTM_NEWNEIGH
// with NTF_USE: an ARP request or neighbour solicitation, as a packet to it would cause); the
// answer is in the neighbour table shortly after. Nothing is sent to the address itself.
static Napi::Value NeighbourProbe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = Ifindex(env, info[0]);
  IpAddr ip = ParseIp(env, info[1]);
  ndmsg n = {};
  n.ndm_family = ip.family;
  n.ndm_ifindex = ifindex;
  n.ndm_flags = NTF_USE;
  n.ndm_state = NUD_NONE;
  Request req(RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, n);
  req.Attr(NDA_DST, ip.bytes, ip.len);
  Rtnl s(env);
  int err = s.Transact(req, RTM_NEWNEIGH, [](const nlmsghdr *) {});
  if (err) ThrowErrno(env, "neighbour probe of " + ip.text + " on ifindex " + std::to_string(ifindex), err);
  return env.Undefined();
}

// bridgePortOf(bridgeIfindex, mac) -> the ifindex of the bridge port the MAC is in the bridge's
// forwarding database on (RTM_GETNEIGH dump of family AF_BRIDGE), or undefined when it is not
// (or only on the bridge itself).
static Napi::Value BridgePortOf(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int bridge = Ifindex(env, info[0]);
  std::string text = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  unsigned char want[6];
  if (!ParseMac(text, want)) throw Napi::TypeError::New(env, "invalid MAC address '" + text + "'");
  Rtnl s(env);
  int port = -1;
  int err = DumpNeighbours(s, AF_BRIDGE, [&](const Reply<ndmsg> &r) {
    if (r.hdr->ndm_ifindex == bridge) return false;
    // Entries of the bridge's database carry NDA_MASTER; a port's own address lists do not.
    auto master = r.attrs.U32(NDA_MASTER);
    const unsigned char *lladdr = r.attrs.Exactly(NDA_LLADDR, 6);
    if (!master || (int)*master != bridge || !lladdr || memcmp(lladdr, want, 6) != 0) return false;
    port = r.hdr->ndm_ifindex;
    return true;
  });
  if (err) ThrowErrno(env, "dump bridge fdb of ifindex " + std::to_string(bridge), err);
  if (port <= 0) return env.Undefined();
  return Napi::Number::New(env, port);
}

}  // namespace ihr

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("linkGet", Napi::Function::New(env, ihr::LinkGet));
  exports.Set("qdiscs", Napi::Function::New(env, ihr::Qdiscs));
  exports.Set("tcFilters", Napi::Function::New(env, ihr::TcFilters));
  exports.Set("routeOutputIfindex", Napi::Function::New(env, ihr::RouteOutputIfindex));
  exports.Set("neighbourMac", Napi::Function::New(env, ihr::NeighbourMac));
  exports.Set("neighbourProbe", Napi::Function::New(env, ihr::NeighbourProbe));
  exports.Set("bridgePortOf", Napi::Function::New(env, ihr::BridgePortOf));
  return exports;
}

NODE_API_MODULE(int_host_reporter_netlink, InitModule)
