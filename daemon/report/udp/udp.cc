// Connected, non-blocking UDP sockets and batched sends (sendmmsg) for the report sender: one
// system call hands the kernel up to a thousand reports, where one send per report caps a core
// at ~150k reports/s. Runs of reports of the same length also go as one UDP GSO message
// (UDP_SEGMENT): the stack is crossed once per run and the datagrams are cut at the device (or
// by the NIC), which is most of the kernel's cost per report.
#include "shared.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

namespace ihr {

// The kernel's limit on messages per sendmmsg (UIO_MAXIOV).
static constexpr uint32_t kMaxBatch = 1024;

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
// Segments per GSO message: the kernel's UDP_MAX_SEGMENTS was 64 before 6.x raised it.
static constexpr uint32_t kMaxSegments = 64;
// A GSO message must stay below 64 KiB with its headers.
static constexpr size_t kMaxGsoBytes = 60000;

union SegmentCmsg {
  char buf[CMSG_SPACE(sizeof(uint16_t))];
  struct cmsghdr align;
};

// Scratch for one call; addon calls run on a JS thread, one set per thread.
static thread_local struct mmsghdr t_msgs[kMaxBatch];
static thread_local struct iovec t_iov[kMaxBatch];
static thread_local SegmentCmsg t_cmsg[kMaxBatch];
static thread_local uint16_t t_segs[kMaxBatch];  // reports carried by each message

// udpOpen(address, port, sendBufferBytes) -> fd of a UDP socket connected to address:port.
// address is an IPv4 or IPv6 literal (a scope like fe80::1%eth0 is allowed); sendBufferBytes 0
// keeps the system default. Connecting makes ICMP errors come back as errors of later sends.
static Napi::Value UdpOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string address = info[0].As<Napi::String>();
  uint32_t port = info[1].As<Napi::Number>().Uint32Value();
  int sndbuf = info[2].As<Napi::Number>().Int32Value();
  std::string where = (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" + std::to_string(port);

  struct addrinfo hints = {};
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;  // never a DNS query here
  struct addrinfo *ai = nullptr;
  if (getaddrinfo(address.c_str(), std::to_string(port).c_str(), &hints, &ai) != 0 || ai == nullptr) {
    ThrowErrno(env, "udp open " + where + " (not an IP address)", EINVAL);
  }
  int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int err = errno;
    freeaddrinfo(ai);
    ThrowErrno(env, "udp socket " + where, err);
  }
  // With CAP_NET_ADMIN the size may exceed net.core.wmem_max; without it, it is capped there.
  if (sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0 &&
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) < 0) {
    int err = errno;
    freeaddrinfo(ai);
    close(fd);
    ThrowErrno(env, "udp setsockopt SO_SNDBUF " + where, err);
  }
  int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
  int err = errno;
  freeaddrinfo(ai);
  if (rc < 0) {
    close(fd);
    ThrowErrno(env, "udp connect " + where, err);
  }
  return Napi::Number::New(env, fd);
}

// udpSendBatch(fd, memory, lengths, slotSize, first, count, segmentMax) -> reports sent, or
// -errno when the first message failed. The queue is a ring of lengths.length slots of slotSize
// bytes in memory; it sends slots first, first+1, ... (wrapping), count of them (at most 1024).
// Consecutive reports of one length <= segmentMax go as one GSO message (0: never). Never
// blocks: -EAGAIN means the socket buffer is full and nothing was sent.
static Napi::Value UdpSendBatch(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> memory = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Uint32Array lengths = info[2].As<Napi::Uint32Array>();
  size_t slot_size = info[3].As<Napi::Number>().Uint32Value();
  size_t first = info[4].As<Napi::Number>().Uint32Value();
  uint32_t count = std::min(info[5].As<Napi::Number>().Uint32Value(), kMaxBatch);
  size_t segment_max = info[6].As<Napi::Number>().Uint32Value();
  size_t capacity = lengths.ElementLength();
  if (capacity == 0 || slot_size == 0 || first >= capacity || count > capacity || capacity * slot_size > memory.Length()) {
    ThrowErrno(env, "udp sendmmsg (ring does not fit its memory)", EINVAL);
  }
  uint8_t *base = memory.Data();
  uint32_t nmsg = 0;
  for (uint32_t i = 0; i < count; nmsg++) {
    size_t slot = (first + i) % capacity;
    size_t len = std::min<size_t>(lengths[slot], slot_size);  // never past the slot
    // The run of following reports with the same length, as far as one GSO message allows.
    uint32_t run = 1;
    if (len > 0 && len <= segment_max) {
      uint32_t limit = std::min<uint32_t>({count - i, kMaxSegments, (uint32_t)(kMaxGsoBytes / len)});
      while (run < limit && lengths[(slot + run) % capacity] == len) run++;
    }
    struct msghdr &h = t_msgs[nmsg].msg_hdr;
    h = {};
    h.msg_iov = &t_iov[i];
    h.msg_iovlen = run;
    for (uint32_t k = 0; k < run; k++) {
      t_iov[i + k].iov_base = base + ((slot + k) % capacity) * slot_size;
      t_iov[i + k].iov_len = len;
    }
    if (run > 1) {
      h.msg_control = t_cmsg[nmsg].buf;
      h.msg_controllen = sizeof(t_cmsg[nmsg].buf);
      struct cmsghdr *c = CMSG_FIRSTHDR(&h);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t gso = (uint16_t)len;
      memcpy(CMSG_DATA(c), &gso, sizeof(gso));
    }
    t_segs[nmsg] = (uint16_t)run;
    i += run;
  }
  int n;
  do {
    n = sendmmsg(fd, t_msgs, nmsg, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Napi::Number::New(env, -errno);
  uint32_t reports = 0;
  for (int m = 0; m < n; m++) reports += t_segs[m];
  return Napi::Number::New(env, reports);
}

static Napi::Value UdpClose(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd >= 0) close(fd);
  return info.Env().Undefined();
}

}  // namespace ihr

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("udpOpen", Napi::Function::New(env, ihr::UdpOpen));
  exports.Set("udpSendBatch", Napi::Function::New(env, ihr::UdpSendBatch));
  exports.Set("udpClose", Napi::Function::New(env, ihr::UdpClose));
  return exports;
}

NODE_API_MODULE(int_host_reporter_udp, InitModule)
