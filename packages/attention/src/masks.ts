import { ArgumentError, tensor, type Backend } from '@attnkit/tensor';
import type { MaskSpec } from './options.js';
import { checkIdList } from './problem.js';

/**
 * Builds a block-sparse mask from host lists: lists[qb] holds the key-block ids query
 * block qb may see (any order, unique). Rows are padded with -1 to the longest list.
 * Ids are checked here, on the host, against ceil(kvLength / keyBlock).
 */
export function blockSparseMask(
  backend: Backend,
  lists: ReadonlyArray<ReadonlyArray<number>>,
  opts: { queryBlock: number; keyBlock: number; kvLength: number; causal?: boolean },
): Extract<MaskSpec, { kind: 'blocks' }> {
  const op = 'blockSparseMask';
  if (lists.length === 0) throw new ArgumentError(op, 'lists', 'one list per query block (at least one)', 0);
  if (!Number.isInteger(opts.kvLength) || opts.kvLength < 1) throw new ArgumentError(op, 'kvLength', 'a positive integer', opts.kvLength);
  if (!Number.isInteger(opts.keyBlock) || opts.keyBlock < 16 || opts.keyBlock % 16) throw new ArgumentError(op, 'keyBlock', 'a positive multiple of 16', opts.keyBlock);
  const maxSel = Math.max(1, ...lists.map((l) => l.length));
  const ids = new Int32Array(lists.length * maxSel).fill(-1);
  lists.forEach((l, qb) => l.forEach((id, s) => (ids[qb * maxSel + s] = id)));
  checkIdList(op, 'lists', ids, maxSel, Math.ceil(opts.kvLength / opts.keyBlock));
  const indices = tensor(backend, ids, [1, 1, lists.length, maxSel], 'i32');
  return { kind: 'blocks', queryBlock: opts.queryBlock, keyBlock: opts.keyBlock, indices, causal: !!opts.causal };
}
