// Reads enum skb_drop_reason from the running kernel's BTF (/sys/kernel/btf/vmlinux), so drop
// reason values are mapped by name whatever the kernel version. A minimal BTF walker: it only
// needs each type's size to step over it, and decodes ENUM and ENUM64 members.
//
// BTF layout (include/uapi/linux/btf.h): header {magic u16 0xeB9F, version u8, flags u8,
// hdr_len u32, type_off u32, type_len u32, str_off u32, str_len u32}; the type and string
// sections follow the header at the given offsets. Each type is {name_off, info, size_or_type}
// (12 bytes) plus kind-specific data; kind = (info >> 24) & 0x1f, vlen = info & 0xffff.

import { readFileSync } from 'node:fs';
import type { KernelEnumValue } from './drop-reasons';

export const VMLINUX_BTF_PATH = '/sys/kernel/btf/vmlinux';

const BTF_MAGIC = 0xeb9f;
const KIND_ENUM = 6;
const KIND_ENUM64 = 19;

/** Bytes that follow the 12-byte common type header, by kind. */
function trailingBytes(kind: number, vlen: number): number {
  switch (kind) {
    case 1: return 4; // INT
    case 3: return 12; // ARRAY
    case 4: case 5: return 12 * vlen; // STRUCT, UNION
    case 6: return 8 * vlen; // ENUM
    case 13: return 8 * vlen; // FUNC_PROTO
    case 14: return 4; // VAR
    case 15: return 12 * vlen; // DATASEC
    case 17: return 4; // DECL_TAG
    case 19: return 12 * vlen; // ENUM64
    case 2: case 7: case 8: case 9: case 10: case 11: case 12: case 16: case 18: return 0;
    default: throw new Error(`BTF: unknown type kind ${kind}`);
  }
}

/**
 * Members of the enum named `enumName` in a BTF blob, or null when there is none. Signed ENUM
 * values are returned as stored; ENUM64 values above 2^53 lose precision (none are expected).
 */
export function readBtfEnum(btf: Buffer, enumName: string): KernelEnumValue[] | null {
  if (btf.length < 24) throw new Error('BTF: file too short for a header');
  const le = btf.readUInt16LE(0) === BTF_MAGIC;
  if (!le && btf.readUInt16BE(0) !== BTF_MAGIC) throw new Error('BTF: bad magic');
  const u32 = (off: number): number => (le ? btf.readUInt32LE(off) : btf.readUInt32BE(off));
  const i32 = (off: number): number => (le ? btf.readInt32LE(off) : btf.readInt32BE(off));
  const hdrLen = u32(4);
  const typeStart = hdrLen + u32(8);
  const typeEnd = typeStart + u32(12);
  const strStart = hdrLen + u32(16);
  const strEnd = strStart + u32(20);
  if (typeEnd > btf.length || strEnd > btf.length) throw new Error('BTF: sections beyond end of file');

  const str = (off: number): string => {
    const start = strStart + off;
    const nul = btf.indexOf(0, start);
    return btf.toString('latin1', start, nul < 0 || nul > strEnd ? strEnd : nul);
  };

  for (let p = typeStart; p + 12 <= typeEnd; ) {
    const info = u32(p + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const members = p + 12;
    const next = members + trailingBytes(kind, vlen);
    if ((kind === KIND_ENUM || kind === KIND_ENUM64) && str(u32(p)) === enumName) {
      const out: KernelEnumValue[] = [];
      const signed = (info & 0x80000000) !== 0; // kind_flag: signed enum
      for (let i = 0; i < vlen; i++) {
        if (kind === KIND_ENUM) {
          const m = members + 8 * i;
          out.push({ name: str(u32(m)), value: signed ? i32(m + 4) : u32(m + 4) });
        } else {
          const m = members + 12 * i;
          out.push({ name: str(u32(m)), value: u32(m + 8) * 2 ** 32 + u32(m + 4) });
        }
      }
      return out;
    }
    p = next;
  }
  return null;
}

/**
 * The running kernel's drop reasons, names without the SKB_DROP_REASON_ (or SKB_) prefix, e.g.
 * {name: 'NETFILTER_DROP', value: 12}. Null when the kernel's BTF has no enum skb_drop_reason.
 */
export function readKernelDropReasons(path = VMLINUX_BTF_PATH): KernelEnumValue[] | null {
  const members = readBtfEnum(readFileSync(path), 'skb_drop_reason');
  if (members === null) return null;
  return members.map(({ name, value }) => ({ name: stripPrefix(name), value }));
}

function stripPrefix(name: string): string {
  if (name.startsWith('SKB_DROP_REASON_')) return name.slice('SKB_DROP_REASON_'.length);
  if (name.startsWith('SKB_')) return name.slice('SKB_'.length); // SKB_NOT_DROPPED_YET, SKB_CONSUMED
  return name;
}
