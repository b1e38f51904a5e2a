import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import * as TE from 'fp-ts/lib/TaskEither.js';
import { SafetensorsError } from './errors.js';
import { SafetensorsFile, type HostTensor, type TensorEntry } from './safetensors.js';

/**
 * A checkpoint's tensors, whether in one `model.safetensors` or sharded behind
 * `model.safetensors.index.json` ({weight_map: {tensor: shard file}}). Tensors are read one
 * at a time, so the loader can upload and drop each before reading the next.
 */
export class WeightSource {
  private constructor(
    /** The file a person would name in an error: the index for sharded checkpoints. */
    readonly file: string,
    private readonly where: Map<string, SafetensorsFile>,
    private readonly files: SafetensorsFile[],
  ) {}

  static open(dir: string): TE.TaskEither<SafetensorsError, WeightSource> {
    const single = join(dir, 'model.safetensors');
    const index = join(dir, 'model.safetensors.index.json');
    if (existsSync(index)) return WeightSource.openSharded(index);
    return async () => {
      const f = await SafetensorsFile.open(single)();
      if (E.isLeft(f)) {
        if (f.left.problem === 'missing-file') {
          return E.left(new SafetensorsError('missing-file', single, `no model.safetensors or model.safetensors.index.json in ${dir}`));
        }
        return f;
      }
      return E.right(new WeightSource(single, new Map(f.right.names().map((n) => [n, f.right])), [f.right]));
    };
  }

  static openSharded(indexPath: string): TE.TaskEither<SafetensorsError, WeightSource> {
    return async () => {
      let weightMap: Record<string, string>;
      try {
        const json = JSON.parse(await readFile(indexPath, 'utf8')) as unknown;
        const wm = (json as { weight_map?: unknown })?.weight_map;
        if (typeof wm !== 'object' || wm === null || Array.isArray(wm) || Object.values(wm).some((v) => typeof v !== 'string')) {
          return E.left(new SafetensorsError('bad-index', indexPath, "'weight_map' must map tensor names to shard file names"));
        }
        weightMap = wm as Record<string, string>;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        return E.left(new SafetensorsError(code ? 'missing-file' : 'bad-index', indexPath, code ? `cannot open: ${code}` : `not valid JSON: ${(e as Error).message}`));
      }
      const shards = new Map<string, SafetensorsFile>();
      const opened: SafetensorsFile[] = [];
      const fail = async (err: SafetensorsError) => {
        await Promise.all(opened.map((f) => f.close()));
        return E.left(err);
      };
      for (const shard of new Set(Object.values(weightMap))) {
        if (shard !== basename(shard)) return fail(new SafetensorsError('bad-index', indexPath, `shard '${shard}' must be a file name in the same folder`));
        const f = await SafetensorsFile.open(join(dirname(indexPath), shard))();
        if (E.isLeft(f)) return fail(f.left);
        shards.set(shard, f.right);
        opened.push(f.right);
      }
      const where = new Map<string, SafetensorsFile>();
      for (const [name, shard] of Object.entries(weightMap)) {
        const f = shards.get(shard)!;
        if (!f.entry(name)) return fail(new SafetensorsError('missing-tensor', f.file, `the index places this tensor in ${shard} but the shard has no such entry`, name));
        where.set(name, f);
      }
      return E.right(new WeightSource(indexPath, where, opened));
    };
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  /** The header entry and the file holding it. */
  entry(name: string): { entry: TensorEntry; file: string } | undefined {
    const f = this.where.get(name);
    const entry = f?.entry(name);
    return f && entry ? { entry, file: f.file } : undefined;
  }

  async read(name: string): Promise<E.Either<SafetensorsError, HostTensor>> {
    const f = this.where.get(name);
    if (!f) return E.left(new SafetensorsError('missing-tensor', this.file, 'no such tensor in the checkpoint', name));
    return f.read(name);
  }

  /** Sum of tensor bytes, for progress reporting. */
  totalBytes(): number {
    let n = 0;
    for (const [name, f] of this.where) {
      const e = f.entry(name)!;
      n += e.end - e.begin;
    }
    return n;
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}
