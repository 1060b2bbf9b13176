#!/usr/bin/env node
// Writes bpf/generated/layout.ts from the BTF of the compiled datapath object: the layouts of the
// structs user space reads or writes, the enums (counters, event types, flags, bounds), and the
// names of the object's maps, programs and load-time constants. int_types.h stays the one
// definition; nothing in TypeScript copies a number from it by hand.
//   node bpf/gen-layout.mjs OBJECT.o OUT.ts
// Reads the ELF's .BTF section itself (no tool needed at build time); test/unit/btf-layout.test.ts
// checks the output against bpftool's reading of the same object.
import { readFileSync, writeFileSync, mkdirSync, existsSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';

/** The bytes of one ELF64 little-endian section, by name. */
function elfSection(file, buf, wanted) {
  if (buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) {
    throw new Error(`${file}: not a 64-bit little-endian ELF object`);
  }
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a);
  const shnum = buf.readUInt16LE(0x3c);
  const shstrndx = buf.readUInt16LE(0x3e);
  const header = (i) => {
    const h = shoff + i * shentsize;
    return { name: buf.readUInt32LE(h), offset: Number(buf.readBigUInt64LE(h + 0x18)), size: Number(buf.readBigUInt64LE(h + 0x20)) };
  };
  const names = header(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    const start = names.offset + h.name;
    const name = buf.toString('latin1', start, buf.indexOf(0, start));
    if (name === wanted) return buf.subarray(h.offset, h.offset + h.size);
  }
  throw new Error(`${file}: no ${wanted} section (compile with -g)`);
}

const KIND = { 1: 'INT', 2: 'PTR', 3: 'ARRAY', 4: 'STRUCT', 5: 'UNION', 6: 'ENUM', 7: 'FWD', 8: 'TYPEDEF', 9: 'VOLATILE',
  10: 'CONST', 11: 'RESTRICT', 12: 'FUNC', 13: 'FUNC_PROTO', 14: 'VAR', 15: 'DATASEC', 16: 'FLOAT', 17: 'DECL_TAG',
  18: 'TYPE_TAG', 19: 'ENUM64' };

/** The types of a .BTF section, indexed by type id (0 is void), as bpftool names their kinds. */
export function readBtf(file) {
  const btf = elfSection(file, readFileSync(file), '.BTF');
  if (btf.readUInt16LE(0) !== 0xeb9f) throw new Error(`${file}: .BTF has a bad magic number`);
  const hdrLen = btf.readUInt32LE(4);
  const typeOff = hdrLen + btf.readUInt32LE(8);
  const typeEnd = typeOff + btf.readUInt32LE(12);
  const strOff = hdrLen + btf.readUInt32LE(16);
  const str = (off) => btf.toString('latin1', strOff + off, btf.indexOf(0, strOff + off));
  const types = [{ kind: 'VOID' }];
  for (let p = typeOff; p < typeEnd; ) {
    const nameOff = btf.readUInt32LE(p);
    const info = btf.readUInt32LE(p + 4);
    const sizeOrType = btf.readUInt32LE(p + 8);
    const vlen = info & 0xffff;
    const kind = KIND[(info >>> 24) & 0x1f];
    if (!kind) throw new Error(`${file}: BTF kind ${(info >>> 24) & 0x1f} unknown to gen-layout.mjs`);
    const t = { id: types.length, kind, name: str(nameOff), sizeOrType, vlen };
    p += 12;
    if (kind === 'INT' || kind === 'VAR' || kind === 'DECL_TAG') {
      if (kind === 'VAR') t.linkage = btf.readUInt32LE(p);
      p += 4;
    } else if (kind === 'ARRAY') {
      t.elem = btf.readUInt32LE(p);
      t.nelems = btf.readUInt32LE(p + 8);
      p += 12;
    } else if (kind === 'STRUCT' || kind === 'UNION') {
      t.members = [];
      for (let i = 0; i < vlen; i++, p += 12) {
        const bits = btf.readUInt32LE(p + 8);
        // kind_flag set: the offset's low 24 bits, the bitfield size above
        const offset = (info >>> 31) ? bits & 0xffffff : bits;
        t.members.push({ name: str(btf.readUInt32LE(p)), type: btf.readUInt32LE(p + 4), bitsOffset: offset });
      }
    } else if (kind === 'ENUM') {
      t.values = [];
      for (let i = 0; i < vlen; i++, p += 8) t.values.push({ name: str(btf.readUInt32LE(p)), val: btf.readInt32LE(p + 4) });
    } else if (kind === 'ENUM64') {
      t.values = [];
      for (let i = 0; i < vlen; i++, p += 12) {
        t.values.push({ name: str(btf.readUInt32LE(p)), val: Number((BigInt(btf.readUInt32LE(p + 8)) << 32n) | BigInt(btf.readUInt32LE(p + 4))) });
      }
    } else if (kind === 'FUNC_PROTO') {
      p += 8 * vlen;
    } else if (kind === 'DATASEC') {
      t.vars = [];
      for (let i = 0; i < vlen; i++, p += 12) t.vars.push(btf.readUInt32LE(p));
    } else if (kind === 'FUNC') {
      t.linkage = vlen;
    }
    types.push(t);
  }
  return types;
}

/** sizeof the type with this id. */
function sizeOf(types, id) {
  const t = types[id];
  switch (t.kind) {
    case 'INT': case 'STRUCT': case 'UNION': case 'ENUM': case 'ENUM64': case 'FLOAT': case 'DATASEC': return t.sizeOrType;
    case 'PTR': return 8;
    case 'ARRAY': return t.nelems * sizeOf(types, t.elem);
    case 'TYPEDEF': case 'VOLATILE': case 'CONST': case 'RESTRICT': case 'TYPE_TAG': case 'VAR': return sizeOf(types, t.sizeOrType);
    default: throw new Error(`gen-layout: no size for BTF ${t.kind} ${t.name}`);
  }
}

const camel = (s) => s.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
const pascal = (s) => camel(s).replace(/^./, (c) => c.toUpperCase());

/** The shared types: named structs and enums of int_types.h (prefix int_), not the BTF anchor. */
const shared = (t) => t.name.startsWith('int_') && t.name !== 'int_btf_anchor';

export function generate(objectFile, types) {
  const out = [
    `// Generated by bpf/gen-layout.mjs from the BTF of ${objectFile.replace(/^.*\/build\//, 'build/')}: do not edit.`,
    '// Struct layouts (byte offsets, C member names in camelCase, and sizeof as `size`), member sizes,',
    '// enums with their C names, and the names of the object\'s maps, programs and load-time constants.',
    '',
  ];
  for (const t of types.filter((x) => x.kind === 'STRUCT' && shared(x))) {
    const n = pascal(t.name);
    out.push(`/** struct ${t.name}: byte offsets of its members, and its size. */`);
    out.push(`export const ${n} = {`, `  size: ${t.sizeOrType},`);
    for (const m of t.members) {
      if (m.bitsOffset % 8) throw new Error(`gen-layout: ${t.name}.${m.name} is a bitfield`);
      out.push(`  ${camel(m.name)}: ${m.bitsOffset / 8},`);
    }
    out.push('} as const;');
    out.push(`/** struct ${t.name}: sizeof each member. */`);
    out.push(`export const ${n}Sizes = {`);
    for (const m of t.members) out.push(`  ${camel(m.name)}: ${sizeOf(types, m.type)},`);
    out.push('} as const;', '');
  }
  for (const t of types.filter((x) => (x.kind === 'ENUM' || x.kind === 'ENUM64') && shared(x))) {
    out.push(`/** enum ${t.name} */`, `export const ${pascal(t.name)} = {`);
    for (const v of t.values) out.push(`  ${v.name}: ${v.val},`);
    out.push('} as const;', '');
  }
  const varsOf = (section) => {
    const ds = types.find((x) => x.kind === 'DATASEC' && x.name === section);
    return ds ? ds.vars.map((id) => types[id].name) : [];
  };
  const names = (title, exported, list) => {
    out.push(`/** ${title} */`, `export const ${exported} = {`);
    for (const n of list) out.push(`  ${n}: '${n}',`);
    out.push('} as const;', '');
  };
  names('Maps (bpf_object__find_map_by_name).', 'MapName', varsOf('.maps'));
  names('Programs (bpf_object__find_program_by_name).', 'ProgramName', types.filter((x) => x.kind === 'FUNC' && x.linkage === 1).map((x) => x.name));
  names('Load-time constants: `const volatile` globals in .rodata, set before load.', 'ConstName', varsOf('.rodata'));
  return out.join('\n');
}

/** Writes `out` only when its content changes, so that its readers' mtimes do not churn. */
export function writeLayout(objectFile, outFile) {
  const text = generate(objectFile, readBtf(objectFile));
  if (existsSync(outFile) && readFileSync(outFile, 'utf8') === text) return false;
  mkdirSync(dirname(outFile), { recursive: true });
  const tmp = `${outFile}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, outFile); // readers (tsx, tsc, esbuild in other processes) never see half a file
  return true;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const [objectFile, outFile] = process.argv.slice(2);
  if (!objectFile || !outFile) {
    console.error('usage: node bpf/gen-layout.mjs OBJECT.o OUT.ts');
    process.exit(2);
  }
  writeLayout(objectFile, outFile);
}
