import { open, stat, type FileHandle } from 'node:fs/promises';
import * as E from 'fp-ts/lib/Either.js';
import * as TE from 'fp-ts/lib/TaskEither.js';
import { encodeF16, f16BitsToF32 } from '@attnkit/tensor';
import { SafetensorsError } from './errors.js';

/*
 * The safetensors format, read by hand because it is the boundary of the tensor layer:
 *   [8-byte little-endian header length N][N bytes of JSON header][data bytes]
 * The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets
 * relative to the data section) plus an optional "__metadata__" map of strings.
 * Everything in it is checked before a single tensor byte is trusted.
 */

/** Item sizes of every dtype the format defines; those we can load are in LOADABLE. */
export const SAFETENSORS_ITEMSIZE = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
} as const;
export type SafetensorsDType = keyof typeof SAFETENSORS_ITEMSIZE;
const LOADABLE: readonly SafetensorsDType[] = ['F32', 'F16', 'BF16', 'I32', 'U32', 'I8', 'U8'];

/** Headers beyond this are refused before parsing (the reference implementation uses 100 MB). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte offsets in the file, end exclusive. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  /** Absolute offset of the data section (8 + header length). */
  dataStart: number;
  entries: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

/** A tensor's bytes on the host, decoded to a JS typed array. */
export type HostTensor =
  | { dtype: 'f32'; shape: number[]; data: Float32Array }
  | { dtype: 'f16'; shape: number[]; data: Uint16Array }
  | { dtype: 'bf16'; shape: number[]; data: Uint16Array }
  | { dtype: 'i32'; shape: number[]; data: Int32Array }
  | { dtype: 'u32'; shape: number[]; data: Uint32Array }
  | { dtype: 'i8'; shape: number[]; data: Int8Array }
  | { dtype: 'u8'; shape: number[]; data: Uint8Array };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Reads the 8-byte length prefix. `prefix` is the first bytes of the file (at least 8
 * unless the file is shorter, which is itself the error).
 */
export function parseHeaderLength(file: string, prefix: Uint8Array, fileSize: number): E.Either<SafetensorsError, number> {
  if (fileSize < 8 || prefix.length < 8) return E.left(new SafetensorsError('truncated', file, `file has ${fileSize} bytes; a safetensors file starts with an 8-byte header length`));
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) return E.left(new SafetensorsError('header-length', file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`, undefined, [8, 8]));
  const len = Number(n);
  if (8 + len > fileSize) {
    return E.left(new SafetensorsError('header-length', file, `header length ${len} runs past the end of the file (${fileSize} bytes)`, undefined, [8, 8 + len]));
  }
  return E.right(len);
}

/** Validates the JSON header: every entry well formed, in range, sized by its shape, no overlaps or gaps. */
export function parseHeader(file: string, headerBytes: Uint8Array, fileSize: number): E.Either<SafetensorsError, SafetensorsHeader> {
  const dataStart = 8 + headerBytes.length;
  const dataLen = fileSize - dataStart;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    return E.left(new SafetensorsError('header-json', file, `header is not valid UTF-8 JSON: ${(e as Error).message}`, undefined, [8, dataStart]));
  }
  if (!isObject(json)) return E.left(new SafetensorsError('header-json', file, 'header must be a JSON object', undefined, [8, dataStart]));
  const metadata: Record<string, string> = {};
  const entries = new Map<string, TensorEntry>();
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isObject(raw) || Object.values(raw).some((v) => typeof v !== 'string')) {
        return E.left(new SafetensorsError('bad-entry', file, '__metadata__ must map strings to strings'));
      }
      Object.assign(metadata, raw);
      continue;
    }
    const bad = (detail: string, problem: 'bad-entry' | 'unknown-dtype' | 'size-mismatch' | 'out-of-range' = 'bad-entry', range?: [number, number]) =>
      E.left(new SafetensorsError(problem, file, detail, name, range));
    if (!isObject(raw)) return bad('entry must be an object {dtype, shape, data_offsets}');
    const { dtype, shape, data_offsets: offsets } = raw;
    if (typeof dtype !== 'string' || !(dtype in SAFETENSORS_ITEMSIZE)) {
      return bad(`dtype must be one of ${Object.keys(SAFETENSORS_ITEMSIZE).join(', ')}, got ${JSON.stringify(dtype)}`, 'unknown-dtype');
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) return bad(`shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      return bad(`data_offsets must be [begin, end] non-negative integers, got ${JSON.stringify(offsets)}`);
    }
    const [b, e] = offsets as [number, number];
    const abs: [number, number] = [dataStart + b, dataStart + e];
    if (e < b) return bad(`data_offsets end ${e} is before begin ${b}`, 'out-of-range', abs);
    if (e > dataLen) return bad(`data_offsets end ${e} runs past the data section (${dataLen} bytes; file has ${fileSize})`, 'out-of-range', abs);
    const elements = (shape as number[]).reduce((p, d) => p * d, 1);
    const want = elements * SAFETENSORS_ITEMSIZE[dtype as SafetensorsDType];
    if (want !== e - b) {
      return bad(`shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${want} bytes but data_offsets span ${e - b}`, 'size-mismatch', abs);
    }
    entries.set(name, { name, dtype: dtype as SafetensorsDType, shape: [...(shape as number[])], begin: abs[0], end: abs[1] });
  }
  // Byte ranges must tile the data section exactly: no overlaps, no holes, nothing trailing.
  const sorted = [...entries.values()].sort((x, y) => x.begin - y.begin || x.end - y.end);
  let at = dataStart;
  let prev: TensorEntry | null = null;
  for (const t of sorted) {
    if (t.begin < at) {
      return E.left(new SafetensorsError('overlap', file, `bytes overlap tensor '${prev?.name}' which ends at ${at}`, t.name, [t.begin, t.end]));
    }
    if (t.begin > at) return E.left(new SafetensorsError('gap', file, `${t.begin - at} unindexed bytes before this tensor (from ${at})`, t.name, [t.begin, t.end]));
    at = t.end;
    prev = t;
  }
  if (at !== fileSize) {
    return E.left(new SafetensorsError('gap', file, `${fileSize - at} bytes after the last tensor are not indexed by the header`, prev?.name, [at, fileSize]));
  }
  return E.right({ file, fileSize, dataStart, entries, metadata });
}

/** bf16 bits -> f32 (exact: bf16 is the top half of an f32). */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! << 16;
  return new Float32Array(out.buffer);
}

/** Widens any float host tensor to f32 (f16 and bf16 exactly). */
export function hostToF32(t: HostTensor): Float32Array {
  switch (t.dtype) {
    case 'f32': return t.data;
    case 'bf16': return bf16ToF32(t.data);
    case 'f16': {
      const out = new Float32Array(t.data.length);
      for (let i = 0; i < out.length; i++) out[i] = f16BitsToF32(t.data[i]!);
      return out;
    }
    default: return Float32Array.from(t.data);
  }
}

/** Any float host tensor as f16 bits (f16 as is; f32/bf16 rounded to nearest even). */
export function hostToF16Bits(t: HostTensor): Uint16Array {
  return t.dtype === 'f16' ? t.data : encodeF16(hostToF32(t));
}

function decode(entry: TensorEntry, bytes: Uint8Array, file: string): E.Either<SafetensorsError, HostTensor> {
  // Copy into an aligned buffer of its own: typed arrays need aligned offsets.
  const buf = bytes.byteOffset % 8 === 0 ? bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) : bytes.slice().buffer;
  const shape = entry.shape;
  switch (entry.dtype) {
    case 'F32': return E.right({ dtype: 'f32', shape, data: new Float32Array(buf) });
    case 'F16': return E.right({ dtype: 'f16', shape, data: new Uint16Array(buf) });
    case 'BF16': return E.right({ dtype: 'bf16', shape, data: new Uint16Array(buf) });
    case 'I32': return E.right({ dtype: 'i32', shape, data: new Int32Array(buf) });
    case 'U32': return E.right({ dtype: 'u32', shape, data: new Uint32Array(buf) });
    case 'I8': return E.right({ dtype: 'i8', shape, data: new Int8Array(buf) });
    case 'U8': return E.right({ dtype: 'u8', shape, data: new Uint8Array(buf) });
    default:
      return E.left(new SafetensorsError('unsupported-dtype', file, `dtype ${entry.dtype} cannot be loaded (supported: ${LOADABLE.join(', ')})`, entry.name, [entry.begin, entry.end]));
  }
}

/** Decodes one tensor from a whole file held in memory (tests and small fixtures). */
export function decodeTensor(header: SafetensorsHeader, bytes: Uint8Array, name: string): E.Either<SafetensorsError, HostTensor> {
  const entry = header.entries.get(name);
  if (!entry) return E.left(new SafetensorsError('missing-tensor', header.file, `no tensor named '${name}' (has ${header.entries.size})`, name));
  if (entry.end > bytes.length) return E.left(new SafetensorsError('truncated', header.file, `buffer has ${bytes.length} bytes`, name, [entry.begin, entry.end]));
  return decode(entry, bytes.subarray(entry.begin, entry.end), header.file);
}

/** Parses a whole safetensors file held in memory. */
export function parseSafetensors(file: string, bytes: Uint8Array): E.Either<SafetensorsError, SafetensorsHeader> {
  return E.chain((len: number) => parseHeader(file, bytes.subarray(8, 8 + len), bytes.length))(parseHeaderLength(file, bytes.subarray(0, 8), bytes.length));
}

/**
 * An open safetensors file. Only the header is read on open; each tensor is read from the
 * file handle into a buffer of its own when asked for, so a checkpoint is never held
 * twice in memory (once as the file, once as tensors).
 */
export class SafetensorsFile {
  private constructor(readonly header: SafetensorsHeader, private readonly fh: FileHandle) {}

  static open(path: string): TE.TaskEither<SafetensorsError, SafetensorsFile> {
    return async () => {
      let fh: FileHandle;
      let size: number;
      try {
        size = (await stat(path)).size;
        fh = await open(path, 'r');
      } catch (e) {
        return E.left(new SafetensorsError('missing-file', path, `cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`));
      }
      try {
        const prefix = new Uint8Array(8);
        const { bytesRead } = await fh.read(prefix, 0, 8, 0);
        const len = parseHeaderLength(path, prefix.subarray(0, bytesRead), size);
        if (E.isLeft(len)) throw len.left;
        const headerBytes = new Uint8Array(len.right);
        const got = await fh.read(headerBytes, 0, len.right, 8);
        if (got.bytesRead !== len.right) throw new SafetensorsError('truncated', path, `read ${got.bytesRead} of ${len.right} header bytes`, undefined, [8, 8 + len.right]);
        const header = parseHeader(path, headerBytes, size);
        if (E.isLeft(header)) throw header.left;
        return E.right(new SafetensorsFile(header.right, fh));
      } catch (e) {
        await fh.close();
        if (e instanceof SafetensorsError) return E.left(e);
        throw e;
      }
    };
  }

  get file(): string {
    return this.header.file;
  }

  names(): string[] {
    return [...this.header.entries.keys()];
  }

  entry(name: string): TensorEntry | undefined {
    return this.header.entries.get(name);
  }

  /** Reads and decodes one tensor; a short read (file truncated since open) is an error. */
  async read(name: string): Promise<E.Either<SafetensorsError, HostTensor>> {
    const entry = this.header.entries.get(name);
    if (!entry) return E.left(new SafetensorsError('missing-tensor', this.file, `no tensor named '${name}'`, name));
    const n = entry.end - entry.begin;
    const bytes = new Uint8Array(n);
    let done = 0;
    while (done < n) {
      const { bytesRead } = await this.fh.read(bytes, done, n - done, entry.begin + done);
      if (bytesRead === 0) {
        return E.left(new SafetensorsError('truncated', this.file, `file ended after ${done} of ${n} bytes`, name, [entry.begin, entry.end]));
      }
      done += bytesRead;
    }
    return decode(entry, bytes, this.file);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

export interface TensorToWrite {
  dtype: SafetensorsDType;
  shape: number[];
  /** Raw little-endian bytes, or a typed array whose bytes are written as they are. */
  data: ArrayBufferView;
}

/**
 * Serialises tensors to safetensors bytes (header padded with spaces to 8 bytes, as the
 * reference writer does). Used by tests and fixture tools; no validation beyond sizes.
 */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const names = Object.keys(tensors);
  for (const name of names) {
    const t = tensors[name]!;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  while (enc.encode(json).length % 8) json += ' ';
  const hb = enc.encode(json);
  const out = new Uint8Array(8 + hb.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let at = 8 + hb.length;
  for (const name of names) {
    const d = tensors[name]!.data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}
