export { AXIS_ORDERS, checkLayout, invertPermutation, orderPermutation, tokenCount, type AxisOrder, type VideoLayout } from './layout.js';
export { BLOCK, blockCount, checkDensity, fullMask, maskDensity, packMask, rowsFromMass, type BlockMask } from './mask.js';
export { blockSparseAttention, denseAttention, gatherTokens, quantizeBlocks, type Int8Blocks, type SparseOptions } from './attention.js';
export { calibrate, concentration, type CalibrateOptions, type Calibration, type HeadCalibration } from './calibrate.js';
export { calibrationFromJson, calibrationToJson, parseCalibration } from './json.js';
export { paroAttention, planFor, type ParoPlan } from './paro.js';
export { syntheticVideoQK, type SyntheticOptions } from './synthetic.js';
export { CalibrationFormatError, DensityError, LayoutError } from './errors.js';
export { sparseProgram, CHUNK } from './kernels.js';
