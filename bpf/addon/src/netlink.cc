// A minimal rtnetlink client: links (also inside another network namespace, to find a veth's
// peer), qdiscs and tc filters (to list what is attached to an interface, ours and others'),
// and the lookups that find a pod's host veth from its IP: the route's output interface, a
// neighbour's MAC, and the bridge port a MAC was learned on.
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <vector>

namespace ihr {

namespace {

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() { if (fd >= 0) close(fd); }
  Fd(const Fd &) = delete;
};

// Opens a NETLINK_ROUTE socket in the given network namespace (or the current one). The socket
// stays in that namespace after the thread switches back.
int OpenRtnl(const std::string &netns, std::string *op) {
  if (netns.empty()) return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  Fd self(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (self.fd < 0) { *op = "open /proc/thread-self/ns/net"; return -1; }
  Fd target(open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (target.fd < 0) { *op = "open netns " + netns; return -1; }
  if (setns(target.fd, CLONE_NEWNET) < 0) { *op = "setns " + netns; return -1; }
  int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  int saved = errno;
  if (setns(self.fd, CLONE_NEWNET) < 0) abort();  // cannot continue in the wrong namespace
  errno = saved;
  return s;
}

// Sends one request and calls `on` for every reply message until DONE (dump) or the single
// answer. Returns 0 or a negative errno from an NLMSG_ERROR.
int Transact(int s, nlmsghdr *req, const std::function<void(nlmsghdr *)> &on) {
  static uint32_t seq = 1;
  req->nlmsg_seq = ++seq;
  sockaddr_nl sa = {};
  sa.nl_family = AF_NETLINK;
  if (sendto(s, req, req->nlmsg_len, 0, (sockaddr *)&sa, sizeof(sa)) < 0) return -errno;
  bool dump = req->nlmsg_flags & NLM_F_DUMP;
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = recv(s, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    for (nlmsghdr *h = (nlmsghdr *)buf.data(); NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != req->nlmsg_seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) {
        nlmsgerr *e = (nlmsgerr *)NLMSG_DATA(h);
        return e->error;  // 0 = ack
      }
      on(h);
      if (!dump) return 0;
    }
  }
}

void ParseAttrs(rtattr *rta, int len, rtattr **tb, int max) {
  memset(tb, 0, sizeof(rtattr *) * (max + 1));
  for (; RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
    int type = rta->rta_type & ~NLA_F_NESTED;
    if (type <= max) tb[type] = rta;
  }
}

std::string AttrString(rtattr *a) {
  if (!a) return "";
  return std::string((const char *)RTA_DATA(a), strnlen((const char *)RTA_DATA(a), RTA_PAYLOAD(a)));
}

uint32_t AttrU32(rtattr *a) { return *(uint32_t *)RTA_DATA(a); }

uint32_t TcParent(Napi::Env env, const std::string &dir) {
  if (dir == "ingress") return TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS);
  if (dir == "egress") return TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS);
  throw Napi::TypeError::New(env, "direction must be 'ingress' or 'egress', not '" + dir + "'");
}

}  // namespace

static int RtnlSocket(Napi::Env env) {
  int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (s < 0) ThrowErrno(env, "netlink socket", errno);
  return s;
}

// Dumps qdiscs (RTM_GETQDISC) or filters (RTM_GETTFILTER, under `parent`) of an interface and
// calls `visit` with each answer and its attributes.
static int DumpTc(int fd, uint16_t type, int ifindex, uint32_t parent, const std::function<void(tcmsg *, rtattr **)> &visit) {
  struct {
    nlmsghdr h;
    tcmsg t;
  } req = {};
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(tcmsg));
  req.h.nlmsg_type = type;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.t.tcm_family = AF_UNSPEC;
  req.t.tcm_ifindex = ifindex;
  req.t.tcm_parent = parent;
  const uint16_t answer = type == RTM_GETQDISC ? RTM_NEWQDISC : RTM_NEWTFILTER;
  return Transact(fd, &req.h, [&](nlmsghdr *h) {
    if (h->nlmsg_type != answer) return;
    tcmsg *t = (tcmsg *)NLMSG_DATA(h);
    rtattr *tb[TCA_MAX + 1];
    ParseAttrs(TCA_RTA(t), TCA_PAYLOAD(h), tb, TCA_MAX);
    visit(t, tb);
  });
}

// linkGet({ifindex} | {ifname}, netnsPath?) -> { ifindex, ifname, kind, peerIfindex, peerNetnsId, mac, master }
static Napi::Value LinkGet(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object spec = info[0].As<Napi::Object>();
  std::string netns = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  std::string what = spec.Has("ifname") ? "link " + spec.Get("ifname").As<Napi::String>().Utf8Value()
                                        : "link ifindex " + std::to_string(spec.Get("ifindex").As<Napi::Number>().Int32Value());
  if (!netns.empty()) what += " in netns " + netns;
  std::string op;
  Fd s(OpenRtnl(netns, &op));
  if (s.fd < 0) ThrowErrno(env, op.empty() ? "netlink socket" : op, errno);

  struct {
    nlmsghdr h;
    ifinfomsg i;
    char attrs[64];
  } req = {};
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg));
  req.h.nlmsg_type = RTM_GETLINK;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  req.i.ifi_family = AF_UNSPEC;
  if (spec.Has("ifname")) {
    std::string name = spec.Get("ifname").As<Napi::String>();
    if (name.empty() || name.size() >= IFNAMSIZ) throw Napi::TypeError::New(env, "invalid interface name '" + name + "'");
    rtattr *a = (rtattr *)((char *)&req + NLMSG_ALIGN(req.h.nlmsg_len));
    a->rta_type = IFLA_IFNAME;
    a->rta_len = RTA_LENGTH(name.size() + 1);
    memcpy(RTA_DATA(a), name.c_str(), name.size() + 1);
    req.h.nlmsg_len = NLMSG_ALIGN(req.h.nlmsg_len) + RTA_ALIGN(a->rta_len);
  } else {
    req.i.ifi_index = spec.Get("ifindex").As<Napi::Number>().Int32Value();
  }

  Napi::Object out = Napi::Object::New(env);
  bool found = false;
  int err = Transact(s.fd, &req.h, [&](nlmsghdr *h) {
    if (h->nlmsg_type != RTM_NEWLINK) return;
    ifinfomsg *ifi = (ifinfomsg *)NLMSG_DATA(h);
    rtattr *tb[IFLA_MAX + 1];
    ParseAttrs(IFLA_RTA(ifi), IFLA_PAYLOAD(h), tb, IFLA_MAX);
    found = true;
    out.Set("ifindex", ifi->ifi_index);
    out.Set("ifname", AttrString(tb[IFLA_IFNAME]));
    out.Set("up", (ifi->ifi_flags & IFF_UP) != 0);
    if (tb[IFLA_LINK]) out.Set("peerIfindex", AttrU32(tb[IFLA_LINK]));
    if (tb[IFLA_LINK_NETNSID]) out.Set("peerNetnsId", (int32_t)AttrU32(tb[IFLA_LINK_NETNSID]));
    if (tb[IFLA_MASTER]) out.Set("master", AttrU32(tb[IFLA_MASTER]));
    if (tb[IFLA_ADDRESS] && RTA_PAYLOAD(tb[IFLA_ADDRESS]) == 6) {
      const unsigned char *m = (const unsigned char *)RTA_DATA(tb[IFLA_ADDRESS]);
      char mac[18];
      snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
      out.Set("mac", std::string(mac));
    }
    std::string kind;
    if (tb[IFLA_LINKINFO]) {
      rtattr *li[IFLA_INFO_MAX + 1];
      ParseAttrs((rtattr *)RTA_DATA(tb[IFLA_LINKINFO]), RTA_PAYLOAD(tb[IFLA_LINKINFO]), li, IFLA_INFO_MAX);
      kind = AttrString(li[IFLA_INFO_KIND]);
    }
    out.Set("kind", kind);
  });
  if (err == -ENODEV || (err == 0 && !found)) ThrowErrno(env, what, ENODEV);
  if (err) ThrowErrno(env, what, -err);
  return out;
}

// qdiscs(ifindex) -> [{ kind, handle, parent }]
static Napi::Value Qdiscs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  Fd s(RtnlSocket(env));
  Napi::Array arr = Napi::Array::New(env);
  uint32_t i = 0;
  int err = DumpTc(s.fd, RTM_GETQDISC, ifindex, 0, [&](tcmsg *t, rtattr **tb) {
    if (t->tcm_ifindex != ifindex) return;
    Napi::Object o = Napi::Object::New(env);
    o.Set("kind", AttrString(tb[TCA_KIND]));
    o.Set("handle", t->tcm_handle);
    o.Set("parent", t->tcm_parent);
    arr.Set(i++, o);
  });
  if (err) ThrowErrno(env, "dump qdiscs of ifindex " + std::to_string(ifindex), -err);
  return arr;
}

// tcFilters(ifindex, direction) -> [{ priority, handle, protocol, kind, progId, name, directAction }]
// An interface without clsact has no filters: [].
static Napi::Value TcFilters(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  std::string dir = info[1].As<Napi::String>();
  Fd s(RtnlSocket(env));
  Napi::Array arr = Napi::Array::New(env);
  uint32_t i = 0;
  int err = DumpTc(s.fd, RTM_GETTFILTER, ifindex, TcParent(env, dir), [&](tcmsg *t, rtattr **tb) {
    if (t->tcm_handle == 0) return;  // the classifier instance itself, not a filter
    Napi::Object o = Napi::Object::New(env);
    std::string kind = AttrString(tb[TCA_KIND]);
    o.Set("priority", t->tcm_info >> 16);
    o.Set("protocol", ntohs(t->tcm_info & 0xffff));
    o.Set("handle", t->tcm_handle);
    o.Set("kind", kind);
    if (kind == "bpf" && tb[TCA_OPTIONS]) {
      rtattr *bt[TCA_BPF_MAX + 1];
      ParseAttrs((rtattr *)RTA_DATA(tb[TCA_OPTIONS]), RTA_PAYLOAD(tb[TCA_OPTIONS]), bt, TCA_BPF_MAX);
      if (bt[TCA_BPF_ID]) o.Set("progId", AttrU32(bt[TCA_BPF_ID]));
      o.Set("name", AttrString(bt[TCA_BPF_NAME]));
      o.Set("directAction", bt[TCA_BPF_FLAGS] && (AttrU32(bt[TCA_BPF_FLAGS]) & TCA_BPF_FLAG_ACT_DIRECT));
    }
    arr.Set(i++, o);
  });
  // EINVAL: no clsact qdisc on the interface, hence no filters.
  if (err == -EINVAL || err == -ENOENT) return Napi::Array::New(env);
  if (err) ThrowErrno(env, "dump tc filters of ifindex " + std::to_string(ifindex), -err);
  return arr;
}

namespace {

// An IPv4 or IPv6 literal: family and 4 or 16 address bytes; a TypeError otherwise.
struct IpAddr {
  int family;
  unsigned char bytes[16];
  size_t len;
};

IpAddr ParseIp(Napi::Env env, const Napi::Value &v) {
  if (!v.IsString()) throw Napi::TypeError::New(env, "address must be a string");
  std::string s = v.As<Napi::String>();
  IpAddr a = {};
  if (inet_pton(AF_INET, s.c_str(), a.bytes) == 1) {
    a.family = AF_INET;
    a.len = 4;
  } else if (inet_pton(AF_INET6, s.c_str(), a.bytes) == 1) {
    a.family = AF_INET6;
    a.len = 16;
  } else {
    throw Napi::TypeError::New(env, "invalid IP address '" + s + "'");
  }
  return a;
}

void AddAttr(nlmsghdr *h, size_t cap, int type, const void *data, size_t len) {
  size_t need = NLMSG_ALIGN(h->nlmsg_len) + RTA_SPACE(len);
  if (need > cap) abort();  // request buffers are sized for their attributes
  rtattr *a = (rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
  a->rta_type = type;
  a->rta_len = RTA_LENGTH(len);
  memcpy(RTA_DATA(a), data, len);
  h->nlmsg_len = need;
}

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

}  // namespace

// routeOutputIfindex(ip) -> the output interface (RTA_OIF) of the main routing decision for a
// packet to `ip` from this host (RTM_GETROUTE), or undefined when there is no route.
static Napi::Value RouteOutputIfindex(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  IpAddr ip = ParseIp(env, info[0]);
  Fd s(RtnlSocket(env));
  struct {
    nlmsghdr h;
    rtmsg r;
    char attrs[64];
  } req = {};
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
  req.h.nlmsg_type = RTM_GETROUTE;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  req.r.rtm_family = ip.family;
  req.r.rtm_dst_len = ip.len * 8;
  AddAttr(&req.h, sizeof(req), RTA_DST, ip.bytes, ip.len);
  int oif = -1;
  int err = Transact(s.fd, &req.h, [&](nlmsghdr *h) {
    if (h->nlmsg_type != RTM_NEWROUTE) return;
    rtmsg *r = (rtmsg *)NLMSG_DATA(h);
    rtattr *tb[RTA_MAX + 1];
    ParseAttrs(RTM_RTA(r), RTM_PAYLOAD(h), tb, RTA_MAX);
    if (tb[RTA_OIF]) oif = (int)AttrU32(tb[RTA_OIF]);
  });
  // No route (unreachable, prohibited, blackhole): not an error, just no interface.
  if (err == -ENETUNREACH || err == -EHOSTUNREACH || err == -EACCES || err == -EINVAL || err == -ESRCH) return env.Undefined();
  if (err) ThrowErrno(env, "route lookup " + info[0].As<Napi::String>().Utf8Value(), -err);
  if (oif <= 0) return env.Undefined();
  return Napi::Number::New(env, oif);
}

// Dumps the neighbour table of one family (AF_INET/AF_INET6: ARP/NDP, AF_BRIDGE: the bridges'
// forwarding databases) and calls `visit` with each entry and its attributes until it returns true.
static int DumpNeighbours(int fd, int family, const std::function<bool(ndmsg *, rtattr **)> &visit) {
  struct {
    nlmsghdr h;
    ndmsg n;
  } req = {};
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(ndmsg));
  req.h.nlmsg_type = RTM_GETNEIGH;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.n.ndm_family = family;
  bool done = false;
  return Transact(fd, &req.h, [&](nlmsghdr *h) {
    if (h->nlmsg_type != RTM_NEWNEIGH || done) return;
    ndmsg *n = (ndmsg *)NLMSG_DATA(h);
    if (n->ndm_family != family) return;
    rtattr *tb[NDA_MAX + 1];
    ParseAttrs((rtattr *)((char *)n + NLMSG_ALIGN(sizeof(ndmsg))), h->nlmsg_len - NLMSG_LENGTH(sizeof(ndmsg)), tb, NDA_MAX);
    done = visit(n, tb);
  });
}

// neighbourMac(ifindex, ip) -> the MAC of the neighbour entry of `ip` on the interface, or
// undefined when there is none or it is not resolved.
static Napi::Value NeighbourMac(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  IpAddr ip = ParseIp(env, info[1]);
  Fd s(RtnlSocket(env));
  std::string mac;
  int err = DumpNeighbours(s.fd, ip.family, [&](ndmsg *n, rtattr **tb) {
    if (n->ndm_ifindex != ifindex || (n->ndm_state & (NUD_INCOMPLETE | NUD_FAILED | NUD_NOARP))) return false;
    if (!tb[NDA_DST] || RTA_PAYLOAD(tb[NDA_DST]) != ip.len || memcmp(RTA_DATA(tb[NDA_DST]), ip.bytes, ip.len) != 0) return false;
    if (!tb[NDA_LLADDR] || RTA_PAYLOAD(tb[NDA_LLADDR]) != 6) return false;
    mac = MacText((const unsigned char *)RTA_DATA(tb[NDA_LLADDR]));
    return true;
  });
  if (err) ThrowErrno(env, "dump neighbours", -err);
  if (mac.empty()) return env.Undefined();
  return Napi::String::New(env, mac);
}

// neighbourProbe(ifindex, ip): asks the kernel to resolve `ip` on the interface (RTM_NEWNEIGH
// with NTF_USE: an ARP request or neighbour solicitation, as a packet to it would cause); the
// answer is in the neighbour table shortly after. Nothing is sent to the address itself.
static Napi::Value NeighbourProbe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  IpAddr ip = ParseIp(env, info[1]);
  Fd s(RtnlSocket(env));
  struct {
    nlmsghdr h;
    ndmsg n;
    char attrs[64];
  } req = {};
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(ndmsg));
  req.h.nlmsg_type = RTM_NEWNEIGH;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK;
  req.n.ndm_family = ip.family;
  req.n.ndm_ifindex = ifindex;
  req.n.ndm_flags = NTF_USE;
  req.n.ndm_state = NUD_NONE;
  AddAttr(&req.h, sizeof(req), NDA_DST, ip.bytes, ip.len);
  int err = Transact(s.fd, &req.h, [](nlmsghdr *) {});
  if (err) ThrowErrno(env, "neighbour probe of " + info[1].As<Napi::String>().Utf8Value() + " on ifindex " + std::to_string(ifindex), -err);
  return env.Undefined();
}

// bridgePortOf(bridgeIfindex, mac) -> the ifindex of the bridge port the MAC is in the bridge's
// forwarding database on (RTM_GETNEIGH dump of family AF_BRIDGE), or undefined when it is not
// (or only on the bridge itself).
static Napi::Value BridgePortOf(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int bridge = info[0].As<Napi::Number>().Int32Value();
  std::string text = info[1].As<Napi::String>();
  unsigned char want[6];
  if (!ParseMac(text, want)) throw Napi::TypeError::New(env, "invalid MAC address '" + text + "'");
  Fd s(RtnlSocket(env));
  int port = -1;
  int err = DumpNeighbours(s.fd, AF_BRIDGE, [&](ndmsg *n, rtattr **tb) {
    if (n->ndm_ifindex == bridge) return false;
    // Entries of the bridge's database carry NDA_MASTER; a port's own address lists do not.
    if (!tb[NDA_MASTER] || (int)AttrU32(tb[NDA_MASTER]) != bridge) return false;
    if (!tb[NDA_LLADDR] || RTA_PAYLOAD(tb[NDA_LLADDR]) != 6 || memcmp(RTA_DATA(tb[NDA_LLADDR]), want, 6) != 0) return false;
    port = n->ndm_ifindex;
    return true;
  });
  if (err) ThrowErrno(env, "dump bridge fdb of ifindex " + std::to_string(bridge), -err);
  if (port <= 0) return env.Undefined();
  return Napi::Number::New(env, port);
}

Napi::Object InitNetlink(Napi::Env env, Napi::Object exports) {
  exports.Set("linkGet", Napi::Function::New(env, LinkGet));
  exports.Set("qdiscs", Napi::Function::New(env, Qdiscs));
  exports.Set("tcFilters", Napi::Function::New(env, TcFilters));
  exports.Set("routeOutputIfindex", Napi::Function::New(env, RouteOutputIfindex));
  exports.Set("neighbourMac", Napi::Function::New(env, NeighbourMac));
  exports.Set("neighbourProbe", Napi::Function::New(env, NeighbourProbe));
  exports.Set("bridgePortOf", Napi::Function::New(env, BridgePortOf));
  return exports;
}

}  // namespace ihr
