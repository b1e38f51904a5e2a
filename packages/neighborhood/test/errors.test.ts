import { ArgumentError, CpuBackend, DTypeError, ShapeError, random, zeros } from '@attnkit/tensor';
import { describe, expect, it } from 'vitest';
import { na1d, na2d, na3d, WindowError } from '../src/index.js';

const cpu = new CpuBackend();
const t = (shape: number[], dtype: 'f32' | 'f16' = 'f32') => random(cpu, shape, { dtype });

describe('bad input gives typed errors', () => {
  it('a window larger than the axis', () => {
    const x = t([1, 1, 5, 7, 8]);
    expect(() => na2d(x, x, x, { kernelSize: [7, 3] })).toThrow(WindowError);
    expect(() => na2d(x, x, x, { kernelSize: [7, 3] })).toThrow(/axis 0 \(length 5\).*larger than the axis/);
  });

  it('a dilation that does not fit (k * d > L)', () => {
    const x = t([1, 1, 10, 8]);
    expect(() => na1d(x, x, x, { kernelSize: 4, dilation: 3 })).toThrow(WindowError);
    expect(() => na1d(x, x, x, { kernelSize: 4, dilation: 3 })).toThrow(/kernel \* dilation = 12/);
    expect(() => na1d(x, x, x, { kernelSize: 3, dilation: 0 })).toThrow(ArgumentError);
    expect(() => na1d(x, x, x, { kernelSize: 2.5 })).toThrow(ArgumentError);
  });

  it('per-axis options with the wrong number of entries', () => {
    const x = t([1, 1, 4, 4, 4, 8]);
    expect(() => na3d(x, x, x, { kernelSize: [3, 3] })).toThrow(ArgumentError);
    expect(() => na3d(x, x, x, { kernelSize: 3, causal: [true, false] })).toThrow(ArgumentError);
  });

  it('shapes: wrong rank, mismatched key/value, heads that do not group, head dim not a multiple of 4', () => {
    const q = t([1, 4, 6, 8]);
    expect(() => na2d(q, q, q, { kernelSize: 3 })).toThrow(ShapeError);
    expect(() => na1d(q, t([1, 4, 5, 8]), q, { kernelSize: 3 })).toThrow(ShapeError);
    expect(() => na1d(q, t([1, 3, 6, 8]), t([1, 3, 6, 8]), { kernelSize: 3 })).toThrow(ShapeError);
    const odd = t([1, 1, 6, 6]);
    expect(() => na1d(odd, odd, odd, { kernelSize: 3 })).toThrow(ShapeError);
  });

  it('dtypes: integer tensors and mixed f32/f16', () => {
    const q = t([1, 1, 6, 8]);
    expect(() => na1d(q, t([1, 1, 6, 8], 'f16'), q, { kernelSize: 3 })).toThrow(DTypeError);
    const i = zeros(cpu, [1, 1, 6, 8], 'i32');
    expect(() => na1d(i, i, i, { kernelSize: 3 })).toThrow(DTypeError);
  });
});
