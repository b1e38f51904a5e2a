import { mkdtempSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeTensor, encodeSafetensors, parseSafetensors, SafetensorsError, SafetensorsFile, WeightSource } from '../src/index.js';
import { writeTinyCheckpoint } from './helpers.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'attnkit-st-'));

function sample(): Uint8Array {
  return encodeSafetensors({
    a: { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
    b: { dtype: 'F16', shape: [4], data: Uint16Array.from([0x3c00, 0x4000, 0xc000, 0]) },
    c: { dtype: 'BF16', shape: [2], data: Uint16Array.from([0x3f80, 0xc040]) },
    d: { dtype: 'I32', shape: [3], data: Int32Array.from([7, -1, 42]) },
  }, { format: 'pt' });
}

/** A header (as JSON text) followed by `dataBytes` zero bytes. */
function withHeader(header: unknown, dataBytes: number): Uint8Array {
  const hb = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + hb.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  return out;
}

function leftOf(bytes: Uint8Array): SafetensorsError {
  const r = parseSafetensors('x.safetensors', bytes);
  if (E.isRight(r)) throw new Error('expected a SafetensorsError');
  return r.left;
}

describe('safetensors parsing', () => {
  it('round-trips f32, f16, bf16 and i32 tensors with metadata', () => {
    const bytes = sample();
    const h = parseSafetensors('s.safetensors', bytes);
    if (E.isLeft(h)) throw h.left;
    expect(h.right.metadata).toEqual({ format: 'pt' });
    expect([...h.right.entries.keys()]).toEqual(['a', 'b', 'c', 'd']);
    const get = (n: string) => {
      const t = decodeTensor(h.right, bytes, n);
      if (E.isLeft(t)) throw t.left;
      return t.right;
    };
    expect(Array.from(get('a').data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(get('a').shape).toEqual([2, 3]);
    expect(get('b').dtype).toBe('f16');
    expect(get('c').dtype).toBe('bf16');
    expect(Array.from(get('d').data)).toEqual([7, -1, 42]);
  });

  it('names the problem, file, tensor and byte range for each kind of bad header', () => {
    expect(leftOf(new Uint8Array(5)).problem).toBe('truncated');
    const long = new Uint8Array(16);
    new DataView(long.buffer).setBigUint64(0, 1000n, true);
    expect(leftOf(long).problem).toBe('header-length');
    const notJson = new Uint8Array(12);
    notJson.set(new TextEncoder().encode('{{{{'), 8);
    new DataView(notJson.buffer).setBigUint64(0, 4n, true);
    expect(leftOf(notJson).problem).toBe('header-json');

    const past = leftOf(withHeader({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8));
    expect(past.problem).toBe('out-of-range');
    expect(past.tensor).toBe('w');
    expect(past.message).toMatch(/x\.safetensors tensor 'w' bytes \[\d+, \d+\).*runs past the data section/);

    const dt = leftOf(withHeader({ w: { dtype: 'F12', shape: [1], data_offsets: [0, 4] } }, 4));
    expect(dt.problem).toBe('unknown-dtype');
    expect(dt.message).toContain('F12');
    expect(leftOf(withHeader({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8)).problem).toBe('size-mismatch');
    expect(leftOf(withHeader({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, v: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12)).problem).toBe('overlap');
    expect(leftOf(withHeader({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8)).problem).toBe('gap');
    expect(leftOf(withHeader({ w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 8)).problem).toBe('gap');
    expect(leftOf(withHeader({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4)).problem).toBe('bad-entry');
    expect(leftOf(withHeader({ w: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, 8)).problem).toBe('out-of-range');
    expect(leftOf(withHeader({ __metadata__: { a: 1 } }, 0)).problem).toBe('bad-entry');
  });

  it('refuses to load a dtype it parses but cannot hold (F64) with a typed error', () => {
    const bytes = encodeSafetensors({ w: { dtype: 'F64', shape: [1], data: Float64Array.from([1]) } });
    const h = parseSafetensors('f64.safetensors', bytes);
    if (E.isLeft(h)) throw h.left;
    const t = decodeTensor(h.right, bytes, 'w');
    expect(E.isLeft(t) && t.left.problem).toBe('unsupported-dtype');
  });

  it('property: any truncation of a valid file is a SafetensorsError, never a throw or a partial success', () => {
    const bytes = sample();
    fc.assert(fc.property(fc.integer({ min: 0, max: bytes.length - 1 }), (n) => {
      const r = parseSafetensors('t.safetensors', bytes.subarray(0, n));
      return E.isLeft(r) && r.left instanceof SafetensorsError;
    }), { numRuns: 300 });
  });

  it('property: random byte corruption yields either a consistent header or a SafetensorsError', () => {
    const bytes = sample();
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(bytes.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (edits) => {
      const b = bytes.slice();
      for (const [i, v] of edits) b[i] = v;
      const r = parseSafetensors('c.safetensors', b);
      if (E.isLeft(r)) return r.left instanceof SafetensorsError;
      // Accepted: every entry must lie inside the file and be sized by its shape.
      for (const e of r.right.entries.values()) {
        if (e.begin < r.right.dataStart || e.end > b.length || e.end < e.begin) return false;
      }
      return true;
    }), { numRuns: 500 });
  });

  it('property: arbitrary headers never escape as anything but SafetensorsError', () => {
    const entry = fc.record({
      dtype: fc.oneof(fc.constantFrom('F32', 'F16', 'BF16', 'I8', 'F64'), fc.string()),
      shape: fc.array(fc.integer({ min: -2, max: 6 }), { maxLength: 3 }),
      data_offsets: fc.array(fc.integer({ min: -4, max: 80 }), { minLength: 0, maxLength: 3 }),
    });
    fc.assert(fc.property(fc.dictionary(fc.string({ maxLength: 4 }), entry, { maxKeys: 4 }), fc.nat(64), (header, dataBytes) => {
      const r = parseSafetensors('h.safetensors', withHeader(header, dataBytes));
      if (E.isLeft(r)) return r.left instanceof SafetensorsError;
      let covered = 0;
      for (const e of r.right.entries.values()) covered += e.end - e.begin;
      return covered === dataBytes;
    }), { numRuns: 500 });
  });
});

describe('safetensors files on disk', () => {
  it('reads tensor by tensor from a file handle', async () => {
    const dir = tmp();
    const path = join(dir, 'm.safetensors');
    writeFileSync(path, sample());
    const f = await SafetensorsFile.open(path)();
    if (E.isLeft(f)) throw f.left;
    const a = await f.right.read('a');
    expect(E.isRight(a) && Array.from(a.right.data)).toEqual([1, 2, 3, 4, 5, 6]);
    const none = await f.right.read('zzz');
    expect(E.isLeft(none) && none.left.problem).toBe('missing-tensor');
    await f.right.close();
  });

  it('a missing file and a file truncated after its header are typed errors naming the file', async () => {
    const dir = tmp();
    const missing = await SafetensorsFile.open(join(dir, 'nope.safetensors'))();
    expect(E.isLeft(missing) && missing.left.problem).toBe('missing-file');
    expect(E.isLeft(missing) && missing.left.message).toContain('nope.safetensors');
    const path = join(dir, 't.safetensors');
    const bytes = sample();
    writeFileSync(path, bytes);
    truncateSync(path, bytes.length - 3);
    const t = await SafetensorsFile.open(path)();
    expect(E.isLeft(t) && t.left.problem).toBe('out-of-range');
    expect(E.isLeft(t) && t.left.tensor).toBe('d');
  });

  it('a file truncated between open and read reports a short read for that tensor', async () => {
    const dir = tmp();
    const path = join(dir, 'r.safetensors');
    const bytes = sample();
    writeFileSync(path, bytes);
    const f = await SafetensorsFile.open(path)();
    if (E.isLeft(f)) throw f.left;
    truncateSync(path, bytes.length - 6);
    const d = await f.right.read('d');
    expect(E.isLeft(d) && d.left.problem).toBe('truncated');
    expect(E.isLeft(d) && d.left.message).toMatch(/r\.safetensors tensor 'd'/);
    await f.right.close();
  });

  it('opens sharded checkpoints through the index and checks it against the shards', async () => {
    const ck = writeTinyCheckpoint({ shards: 2 });
    const src = await WeightSource.open(ck.dir)();
    if (E.isLeft(src)) throw src.left;
    expect(src.right.names().sort()).toEqual([...ck.weights.keys()].sort());
    const t = await src.right.read('model.norm.weight');
    expect(E.isRight(t) && Array.from(t.right.data)).toEqual(Array.from(ck.weights.get('model.norm.weight')!.values));
    await src.right.close();

    const idx = join(ck.dir, 'model.safetensors.index.json');
    const index = JSON.parse((await import('node:fs')).readFileSync(idx, 'utf8')) as { weight_map: Record<string, string> };
    index.weight_map['model.made.up'] = Object.values(index.weight_map)[0]!;
    writeFileSync(idx, JSON.stringify(index));
    const bad = await WeightSource.open(ck.dir)();
    expect(E.isLeft(bad) && bad.left.problem).toBe('missing-tensor');
    expect(E.isLeft(bad) && bad.left.tensor).toBe('model.made.up');
    writeFileSync(idx, '{"weight_map": 3}');
    const bad2 = await WeightSource.open(ck.dir)();
    expect(E.isLeft(bad2) && bad2.left.problem).toBe('bad-index');
  });

  it('an empty folder names the files it looked for', async () => {
    const r = await WeightSource.open(tmp())();
    expect(E.isLeft(r) && r.left.message).toMatch(/model\.safetensors or model\.safetensors\.index\.json/);
  });
});

