/**
 * A small seeded pseudo-random generator, so that every chaos run and every
 * fuzz input can be reproduced from its seed. The state is four 32-bit words
 * mixed with additions, rotations and xors (a counter keeps the period long);
 * the seed string is folded into it with an FNV-style hash. Not for crypto.
 */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  readonly seed: string;

  constructor(seed: string) {
    this.seed = seed;
    let h = 0x811c9dc5;
    const words: number[] = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < seed.length; i++) {
        h ^= seed.charCodeAt(i);
        h = Math.imul(h, 0x01000193);
      }
      h ^= round + 1;
      h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
      words.push(h >>> 0);
    }
    [this.#a, this.#b, this.#c, this.#d] = words as [number, number, number, number];
    for (let i = 0; i < 16; i++) this.next();
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    const a = this.#a;
    const b = this.#b;
    const c = this.#c;
    const t = (((a + b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = b ^ (b >>> 9);
    this.#b = (c + (c << 3)) | 0;
    this.#c = ((c << 21) | (c >>> 11)) + t;
    return t >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** An integer in [min, max] (both inclusive). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[this.int(0, items.length - 1)] as T;
  }

  /** `n` random bytes. */
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.nextU32() & 0xff;
    return out;
  }

  /** A string of `n` characters drawn from `alphabet`. */
  string(n: number, alphabet: string): string {
    let out = "";
    for (let i = 0; i < n; i++) out += alphabet[this.int(0, alphabet.length - 1)];
    return out;
  }

  /** An independent generator derived from this one (for a sub-task). */
  fork(label: string): Rng {
    return new Rng(`${this.seed}/${label}/${this.nextU32()}`);
  }
}
