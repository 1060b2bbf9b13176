// The Internet checksum's arithmetic (RFC 1071), shared by the report encoder, the aging drop
// detector's synthesized headers and the collector's decoder.

/** Sum of the big-endian 16-bit words of b[start, end), an odd last byte padded with zero. */
export function sumWords(b: Buffer, start: number, end: number): number {
  let s = 0;
  let i = start;
  for (; i + 1 < end; i += 2) s += (b[i] << 8) | b[i + 1];
  if (i < end) s += b[i] << 8;
  return s;
}

/** A ones-complement sum folded to 16 bits (not inverted: 0xffff over a valid packet). */
export function foldSum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum to store: the folded sum, inverted. */
export function checksumOf(sum: number): number {
  return ~foldSum(sum) & 0xffff;
}
