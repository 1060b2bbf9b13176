#!/usr/bin/python3
"""Raw packet tool for the int-host-reporter test harness (run by test/helpers/traffic.ts,
usually through `ip netns exec <ns>`).

  sctp-send --family 4|6 --dst ADDR --sport P --dport P [--src ADDR] [--count N] [--interval-ms MS]
      Sends SCTP INIT chunks (valid CRC32c) from a raw socket. The kernel here has no SCTP
      module, so nobody answers: assert arrival with `capture` on the receiving side.

  capture [--ifname IF] [--count N] [--timeout-ms MS] [--filter JSON] [--decap-vxlan PORT]
      AF_PACKET capture on one interface (or all of the namespace). Prints {"event":"ready"}
      once bound, one JSON line per packet matching the filter, then {"event":"done"}.
      Filter keys (all optional, exact match): dir ("in"/"out"), family (4/6), proto, src, dst,
      sport, dport, icmpType, icmpId, sctpChunk, vni, ifname, and "inner" (a filter applied to the
      decapsulated VXLAN payload).

Output is JSON lines on stdout.
"""
import argparse
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def emit(obj) -> None:
    print(json.dumps(obj, separators=(",", ":")), flush=True)


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def sctp_init_packet(sport: int, dport: int, init_tag: int, tsn: int) -> bytes:
    # INIT chunk: type 1, flags 0, length 20, initiate tag, a_rwnd, out streams, in streams, initial TSN
    chunk = struct.pack("!BBHIIHHI", 1, 0, 20, init_tag, 65535, 10, 10, tsn)
    header = struct.pack("!HHII", sport, dport, 0, 0)
    pkt = header + chunk
    csum = crc32c(pkt)
    # The checksum field carries the CRC32c in little-endian byte order (as Linux writes it).
    return pkt[:8] + struct.pack("<I", csum) + pkt[12:]


def sctp_send(args) -> int:
    fam = socket.AF_INET if args.family == 4 else socket.AF_INET6
    s = socket.socket(fam, socket.SOCK_RAW, 132)
    if args.src:
        s.bind((args.src, 0) if fam == socket.AF_INET else (args.src, 0, 0, 0))
    dst = (args.dst, 0) if fam == socket.AF_INET else (args.dst, 0, 0, 0)
    sent = 0
    tags = []
    for i in range(args.count):
        tag = int.from_bytes(os.urandom(4), "big") or 1
        pkt = sctp_init_packet(args.sport, args.dport, tag, 1000 + i)
        s.sendto(pkt, dst)
        sent += 1
        tags.append(tag)
        if args.interval_ms and i + 1 < args.count:
            time.sleep(args.interval_ms / 1000.0)
    emit({"event": "result", "sent": sent, "family": args.family, "dst": args.dst,
                      "sport": args.sport, "dport": args.dport, "initTags": tags})
    return 0


def _ip_str(family: int, raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def parse_l4(proto: int, data: bytes, info: dict, family: int, decap_port) -> None:
    if proto in (6, 17, 132) and len(data) >= 4:
        info["sport"], info["dport"] = struct.unpack("!HH", data[:4])
    if proto == 6 and len(data) >= 14:
        info["tcpFlags"] = data[13]
        info["payloadLen"] = max(0, len(data) - ((data[12] >> 4) * 4))
    elif proto == 17 and len(data) >= 8:
        info["payloadLen"] = len(data) - 8
        if decap_port and info["dport"] == decap_port and len(data) >= 16:
            flags, vni_word = struct.unpack("!B3xI", data[8:16])
            info["vni"] = vni_word >> 8
            info["vxlanFlags"] = flags
            inner = parse_ether(data[16:], decap_port)
            if inner is not None:
                info["inner"] = inner
    elif proto == 132 and len(data) >= 16:
        info["vtag"], = struct.unpack("!I", data[4:8])
        info["sctpChunk"] = data[12]
        want = struct.unpack("<I", data[8:12])[0]
        info["crcOk"] = crc32c(data[:8] + b"\0\0\0\0" + data[12:]) == want
    elif (proto == 1 and family == 4) or (proto == 58 and family == 6):
        if len(data) >= 4:
            info["icmpType"], info["icmpCode"] = data[0], data[1]
        echo = (0, 8) if family == 4 else (128, 129)
        if len(data) >= 8 and info.get("icmpType") in echo:
            info["icmpId"], info["icmpSeq"] = struct.unpack("!HH", data[4:8])


def parse_ip(ethertype: int, data: bytes, decap_port):
    info = {}
    if ethertype == 0x0800 and len(data) >= 20:
        ihl = (data[0] & 0x0F) * 4
        total = struct.unpack("!H", data[2:4])[0]
        info.update(family=4, proto=data[9], src=_ip_str(4, data[12:16]), dst=_ip_str(4, data[16:20]), ttl=data[8])
        frag = struct.unpack("!H", data[6:8])[0]
        if frag & 0x1FFF:
            info["fragment"] = True
            return info
        parse_l4(data[9], data[ihl:total], info, 4, decap_port)
        return info
    if ethertype == 0x86DD and len(data) >= 40:
        nh = data[6]
        plen = struct.unpack("!H", data[4:6])[0]
        info.update(family=6, src=_ip_str(6, data[8:24]), dst=_ip_str(6, data[24:40]), hopLimit=data[7])
        off = 40
        end = 40 + plen
        while nh in (0, 43, 60, 44) and off + 8 <= len(data):
            if nh == 44:
                info["fragment"] = True
                info["proto"] = data[off]
                return info
            nh, hlen = data[off], (data[off + 1] + 1) * 8
            off += hlen
        info["proto"] = nh
        parse_l4(nh, data[off:end], info, 6, decap_port)
        return info
    return None


def parse_ether(frame: bytes, decap_port):
    if len(frame) < 14:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    off = 14
    if ethertype == 0x8100 and len(frame) >= 18:
        ethertype = struct.unpack("!H", frame[16:18])[0]
        off = 18
    info = parse_ip(ethertype, frame[off:], decap_port)
    if info is None:
        return None
    info["srcMac"] = ":".join(f"{b:02x}" for b in frame[6:12])
    info["dstMac"] = ":".join(f"{b:02x}" for b in frame[0:6])
    return info


def _norm(v):
    if isinstance(v, str):
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            return v
    return v


def matches(pkt: dict, flt: dict) -> bool:
    for k, want in flt.items():
        if k == "inner":
            inner = pkt.get("inner")
            if inner is None or not matches(inner, want):
                return False
            continue
        if _norm(pkt.get(k)) != _norm(want):
            return False
    return True


def capture(args) -> int:
    flt = json.loads(args.filter) if args.filter else {}
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    if args.ifname:
        s.bind((args.ifname, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    emit({"event": "ready", "ifname": args.ifname})
    deadline = time.monotonic() + args.timeout_ms / 1000.0
    matched = 0
    seen = 0
    while args.count <= 0 or matched < args.count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], left)
        if not r:
            continue
        frame, addr = s.recvfrom(65535)
        ifname, _proto, pkttype, hatype = addr[0], addr[1], addr[2], addr[3]
        if hatype not in (1, 772):  # Ethernet, loopback
            continue
        seen += 1
        pkt = parse_ether(frame, args.decap_vxlan)
        if pkt is None:
            continue
        pkt["ifname"] = ifname
        pkt["dir"] = "out" if pkttype == PACKET_OUTGOING else "in"
        if "dir" not in flt and pkt["dir"] == "out":
            continue
        if not matches(pkt, flt):
            continue
        matched += 1
        emit({"event": "packet", **pkt})
    emit({"event": "done", "matched": matched, "seen": seen})
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sctp-send")
    p.add_argument("--family", type=int, choices=(4, 6), required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--src")
    p.add_argument("--sport", type=int, required=True)
    p.add_argument("--dport", type=int, required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--interval-ms", type=int, default=0)
    c = sub.add_parser("capture")
    c.add_argument("--ifname")
    c.add_argument("--count", type=int, default=0)
    c.add_argument("--timeout-ms", type=int, default=5000)
    c.add_argument("--filter")
    c.add_argument("--decap-vxlan", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "sctp-send":
        return sctp_send(args)
    return capture(args)


if __name__ == "__main__":
    sys.exit(main())
