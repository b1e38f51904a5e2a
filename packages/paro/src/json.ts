import * as E from 'fp-ts/lib/Either.js';
import { pipe } from 'fp-ts/lib/function.js';
import type { Calibration, HeadCalibration } from './calibrate.js';
import { CalibrationFormatError } from './errors.js';
import { AXIS_ORDERS, tokenCount, type AxisOrder } from './layout.js';
import { blockCount } from './mask.js';

/** Calibration as JSON text (stable field order, one head per line of the array). */
export function calibrationToJson(c: Calibration): string {
  return JSON.stringify(c);
}

const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

function fail(source: string, field: string, problem: string): E.Either<CalibrationFormatError, never> {
  return E.left(new CalibrationFormatError(source, field, problem));
}

function parseHead(source: string, h: number, raw: unknown, blocks: number): E.Either<CalibrationFormatError, HeadCalibration> {
  const at = `heads[${h}]`;
  if (typeof raw !== 'object' || raw === null) return fail(source, at, 'must be an object');
  const r = raw as Record<string, unknown>;
  if (!AXIS_ORDERS.includes(r.order as AxisOrder)) return fail(source, `${at}.order`, `must be one of ${AXIS_ORDERS.join(', ')}, got ${JSON.stringify(r.order)}`);
  const scores = r.scores as Record<string, unknown> | undefined;
  if (typeof scores !== 'object' || scores === null) return fail(source, `${at}.scores`, 'must be an object');
  for (const o of AXIS_ORDERS) {
    if (typeof scores[o] !== 'number' || !Number.isFinite(scores[o])) return fail(source, `${at}.scores.${o}`, 'must be a finite number');
  }
  if (!Array.isArray(r.mask) || r.mask.length !== blocks) return fail(source, `${at}.mask`, `must list ${blocks} query blocks`);
  for (let qb = 0; qb < blocks; qb++) {
    const row = r.mask[qb] as unknown;
    if (!Array.isArray(row) || row.length === 0) return fail(source, `${at}.mask[${qb}]`, 'must be a non-empty array of key blocks');
    for (let i = 0; i < row.length; i++) {
      const kb = row[i] as unknown;
      if (typeof kb !== 'number' || !Number.isInteger(kb) || kb < 0 || kb >= blocks || (i > 0 && kb <= (row[i - 1] as number))) {
        return fail(source, `${at}.mask[${qb}][${i}]`, `must be ascending integers in [0, ${blocks}), got ${JSON.stringify(kb)}`);
      }
    }
  }
  return E.right({ order: r.order as AxisOrder, scores: scores as Record<AxisOrder, number>, mask: r.mask as number[][] });
}

/** Validates parsed JSON as a Calibration; every problem names the field. */
export function parseCalibration(raw: unknown, source = 'calibration'): E.Either<CalibrationFormatError, Calibration> {
  if (typeof raw !== 'object' || raw === null) return fail(source, '(root)', 'must be an object');
  const r = raw as Record<string, unknown>;
  if (r.version !== 1) return fail(source, 'version', `must be 1, got ${JSON.stringify(r.version)}`);
  const l = r.layout as Record<string, unknown> | undefined;
  if (typeof l !== 'object' || l === null) return fail(source, 'layout', 'must be an object');
  for (const f of ['frames', 'height', 'width'] as const) if (!isPosInt(l[f])) return fail(source, `layout.${f}`, 'must be a positive integer');
  const text = l.text ?? 0;
  if (typeof text !== 'number' || !Number.isInteger(text) || text < 0) return fail(source, 'layout.text', 'must be a non-negative integer');
  if (typeof r.density !== 'number' || !(r.density > 0 && r.density <= 1)) return fail(source, 'density', 'must be a number in (0, 1]');
  if (!Array.isArray(r.heads) || r.heads.length === 0) return fail(source, 'heads', 'must be a non-empty array');
  const layout = { frames: l.frames as number, height: l.height as number, width: l.width as number, text };
  const blocks = blockCount(tokenCount(layout));
  return pipe(
    r.heads.map((h, i) => parseHead(source, i, h, blocks)),
    E.sequenceArray,
    E.map((heads) => ({ version: 1 as const, layout, density: r.density as number, heads: [...heads] })),
  );
}

/** Parses JSON text; malformed JSON is a CalibrationFormatError too. */
export function calibrationFromJson(text: string, source = 'calibration'): E.Either<CalibrationFormatError, Calibration> {
  return pipe(
    E.tryCatch(() => JSON.parse(text) as unknown, (e) => new CalibrationFormatError(source, '(json)', `is not valid JSON: ${(e as Error).message}`)),
    E.chain((raw) => parseCalibration(raw, source)),
  );
}
