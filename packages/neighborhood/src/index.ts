export { na1d, na2d, na3d, denseAttention } from './neighborhood.js';
export type { NeighborhoodOptions, Problem } from './options.js';
export { describe as describeProblem } from './options.js';
export { WindowError } from './errors.js';
export { axisWindow, axisVisible, groupLength, visible, windowHalves, type AxisSpec } from './window.js';
export { coordsOf, maskedDenseReference, neighborhoodMask, neighborhoodReference } from './reference.js';
export { chunkFor, neighborhoodProgram, CHUNK } from './kernel.js';
