// The rtnetlink transport: see socket.h.
#include "socket.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

namespace ihr {

void Request::Init(uint16_t type, uint16_t flags, const void *hdr, size_t len) {
  buf_.assign(NLMSG_SPACE(len), 0);
  nlmsghdr *h = Header();
  h->nlmsg_len = NLMSG_LENGTH(len);
  h->nlmsg_type = type;
  h->nlmsg_flags = flags;
  memcpy(NLMSG_DATA(h), hdr, len);
}

void Request::Attr(uint16_t type, const void *data, size_t len) {
  size_t at = NLMSG_ALIGN(Header()->nlmsg_len);
  buf_.resize(at + RTA_SPACE(len), 0);
  rtattr *a = reinterpret_cast<rtattr *>(buf_.data() + at);
  a->rta_type = type;
  a->rta_len = RTA_LENGTH(len);
  memcpy(RTA_DATA(a), data, len);
  Header()->nlmsg_len = at + RTA_LENGTH(len);
}

Attrs::Attrs(const void *data, size_t len, int max) : tb_(max + 1, nullptr) {
  int left = (int)len;
  for (const rtattr *a = (const rtattr *)data; RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    int type = a->rta_type & NLA_TYPE_MASK;
    if (type <= max) tb_[type] = a;
  }
}

std::optional<uint32_t> Attrs::U32(int type) const {
  const rtattr *a = Get(type);
  if (!a) return std::nullopt;
  if (RTA_PAYLOAD(a) < sizeof(uint32_t)) throw BadMessage();
  uint32_t v;
  memcpy(&v, RTA_DATA(a), sizeof(v));
  return v;
}

std::string Attrs::Str(int type) const {
  const rtattr *a = Get(type);
  if (!a) return "";
  const char *s = (const char *)RTA_DATA(a);
  return std::string(s, strnlen(s, RTA_PAYLOAD(a)));
}

const unsigned char *Attrs::Exactly(int type, size_t len) const {
  const rtattr *a = Get(type);
  return a && RTA_PAYLOAD(a) == len ? (const unsigned char *)RTA_DATA(a) : nullptr;
}

Attrs Attrs::Nested(int type, int max) const {
  const rtattr *a = Get(type);
  return a ? Attrs(RTA_DATA(a), RTA_PAYLOAD(a), max) : Attrs(nullptr, 0, max);
}

namespace {

struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd() { if (fd >= 0) close(fd); }
  Fd(const Fd &) = delete;
};

// Opens the socket inside `netns`: it stays in that namespace after the thread switches back.
int OpenIn(const std::string &netns, std::string *op) {
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

}  // namespace

Rtnl::Rtnl(Napi::Env env, const std::string &netns) : seq_((uint32_t)time(nullptr)), buf_(8192) {
  std::string op = "netlink socket";
  fd_ = netns.empty() ? socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE) : OpenIn(netns, &op);
  if (fd_ < 0) ThrowErrno(env, op, errno);
  // Bind now, so that the port the kernel answers to is known before the first request.
  sockaddr_nl sa = {};
  sa.nl_family = AF_NETLINK;
  socklen_t len = sizeof(sa);
  if (bind(fd_, (sockaddr *)&sa, sizeof(sa)) < 0 || getsockname(fd_, (sockaddr *)&sa, &len) < 0) {
    int err = errno;
    close(fd_);
    ThrowErrno(env, "netlink bind", err);
  }
  port_ = sa.nl_pid;
}

Rtnl::~Rtnl() { close(fd_); }

int Rtnl::Transact(Request &req, uint16_t answer, const std::function<void(const nlmsghdr *)> &on) {
  nlmsghdr *h = req.Header();
  h->nlmsg_seq = ++seq_;
  h->nlmsg_pid = port_;
  sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = sendto(fd_, h, h->nlmsg_len, 0, (sockaddr *)&kernel, sizeof(kernel));
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return -errno;
  try {
    return Receive(h->nlmsg_seq, h->nlmsg_flags & NLM_F_DUMP, h->nlmsg_flags & NLM_F_ACK, answer, on);
  } catch (const BadMessage &) {
    return -EBADMSG;
  }
}

int Rtnl::Receive(uint32_t seq, bool dump, bool ack, uint16_t answer, const std::function<void(const nlmsghdr *)> &on) {
  for (;;) {
    // The size of the next datagram first, so that none is ever cut (MSG_TRUNC).
    ssize_t size = recv(fd_, nullptr, 0, MSG_PEEK | MSG_TRUNC);
    if (size < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if ((size_t)size > buf_.size()) buf_.resize(size);
    sockaddr_nl from = {};
    iovec iov = {buf_.data(), buf_.size()};
    msghdr mh = {};
    mh.msg_name = &from;
    mh.msg_namelen = sizeof(from);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t n = recvmsg(fd_, &mh, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (mh.msg_flags & MSG_TRUNC) return -EMSGSIZE;  // never parse a cut reply
    if (from.nl_pid != 0) continue;                  // not from the kernel
    int left = (int)n;
    const nlmsghdr *h = (const nlmsghdr *)buf_.data();
    for (; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != seq || h->nlmsg_pid != port_) continue;  // a late answer to an earlier request
      if (h->nlmsg_type == NLMSG_ERROR) {
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return -EBADMSG;
        return ((const nlmsgerr *)NLMSG_DATA(h))->error;  // 0: the acknowledgement
      }
      if (h->nlmsg_type == NLMSG_DONE) {
        // A dump that failed part way says so in its DONE message.
        int err = 0;
        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(err))) memcpy(&err, NLMSG_DATA(h), sizeof(err));
        return err < 0 ? err : 0;
      }
      if (h->nlmsg_type == answer) on(h);
      if (!dump && !ack) return 0;
    }
    if (left > 0) return -EBADMSG;  // a message whose length runs past its datagram
  }
}

}  // namespace ihr
