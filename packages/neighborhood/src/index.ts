export { na1d, na2d, na3d, denseAttention, runGpu as runFusedKernel } from './neighborhood.js';
export type { NeighborhoodOptions, Problem } from './options.js';
export { describe as describeProblem, paddedAxes } from './options.js';
export { WindowError } from './errors.js';
export { axisWindow, axisVisible, groupLength, visible, windowHalves, type AxisSpec } from './window.js';
export { coordsOf, maskedDenseReference, neighborhoodMask, neighborhoodReference } from './reference.js';
export { chunkFor, neighborhoodProgram, CHUNK } from './kernel.js';
export { hasF16SubgroupMatrix, runSg, SG_DEFAULTS, sgConfigFor, sgBox, sgProgram, sgSource, sgUnsupported, sgWorkgroupBytes, type SgConfig, type SgShape } from './sgmatrix.js';
