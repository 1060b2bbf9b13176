// The rtnetlink transport of the netlink module: one request builder, one reply loop, and
// attribute access that checks every length before reading.
#pragma once

#include "shared.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ihr {

// One request: the netlink header, the family header, then attributes.
class Request {
public:
  template <class Hdr>
  Request(uint16_t type, uint16_t flags, const Hdr &hdr) { Init(type, flags, &hdr, sizeof(hdr)); }
  void Attr(uint16_t type, const void *data, size_t len);
  nlmsghdr *Header() { return reinterpret_cast<nlmsghdr *>(buf_.data()); }

private:
  void Init(uint16_t type, uint16_t flags, const void *hdr, size_t len);
  std::vector<char> buf_;
};

// A reply that does not hold what its type promises (a header or attribute cut short).
struct BadMessage {};

// The attributes of a message (or of a nested attribute), by type; a walk stops at an attribute
// whose length runs past the end. The accessors check the payload's length: a payload too short
// for the value throws BadMessage.
class Attrs {
public:
  Attrs(const void *data, size_t len, int max);
  bool Has(int type) const { return Get(type) != nullptr; }
  std::optional<uint32_t> U32(int type) const;
  // "" when absent; the payload up to its first NUL.
  std::string Str(int type) const;
  // The payload when it is exactly `len` bytes, nullptr otherwise (absent, or another size).
  const unsigned char *Exactly(int type, size_t len) const;
  Attrs Nested(int type, int max) const;

private:
  const rtattr *Get(int type) const { return type >= 0 && (size_t)type < tb_.size() ? tb_[type] : nullptr; }
  std::vector<const rtattr *> tb_;
};

// The family header of a reply and its attributes; BadMessage when the message is too short.
template <class T>
struct Reply {
  const T *hdr;
  Attrs attrs;
  Reply(const nlmsghdr *h, int max)
      : hdr(Check(h)),
        attrs((const char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(T)),
              h->nlmsg_len > NLMSG_SPACE(sizeof(T)) ? h->nlmsg_len - NLMSG_SPACE(sizeof(T)) : 0, max) {}

private:
  static const T *Check(const nlmsghdr *h) {
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(T))) throw BadMessage();
    return (const T *)NLMSG_DATA(h);
  }
};

// A NETLINK_ROUTE socket with its own sequence numbers: replies are matched by sequence and port.
class Rtnl {
public:
  // In the current network namespace, or in the one at the path `netns`. Throws a JS error.
  Rtnl(Napi::Env env, const std::string &netns = "");
  ~Rtnl();
  Rtnl(const Rtnl &) = delete;
  Rtnl &operator=(const Rtnl &) = delete;

  // Sends the request and calls `on` for each reply of type `answer`, until the dump's end (a
  // dump), the acknowledgement (NLM_F_ACK) or the one answer. Returns 0 or a negative errno: the
  // kernel's (NLMSG_ERROR, or an error at the end of a dump), the socket's, or -EBADMSG for a
  // malformed reply.
  int Transact(Request &req, uint16_t answer, const std::function<void(const nlmsghdr *)> &on);

private:
  int Receive(uint32_t seq, bool dump, bool ack, uint16_t answer, const std::function<void(const nlmsghdr *)> &on);
  int fd_ = -1;
  uint32_t port_ = 0;
  uint32_t seq_ = 0;
  std::vector<char> buf_;
};

}  // namespace ihr
