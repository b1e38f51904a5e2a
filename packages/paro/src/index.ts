export { AXIS_ORDERS, checkLayout, invertPermutation, orderPermutation, tokenCount, type AxisOrder, type VideoLayout } from './layout.js';
export { BLOCK, blockCount, checkDensity, fullMask, maskDensity, packMask, rowsFromMass, type BlockMask } from './mask.js';
export { blockSparseAttention, denseAttention, gatherTokens, quantizeBlocks, releaseScratch, type Int8Blocks, type SparseOptions } from './attention.js';
export { calibrate, concentration, type CalibrateOptions, type Calibration, type HeadCalibration } from './calibrate.js';
export { calibrationFromJson, calibrationToJson, parseCalibration } from './json.js';
export { paroAttention, planFor, type ParoOptions, type ParoPlan } from './paro.js';
export { syntheticVideoQK, type SyntheticOptions } from './synthetic.js';
export { CalibrationFormatError, DensityError, LayoutError } from './errors.js';
export { chunkFor, configurePackedDot, configureSparseStaging, sparseProgram, CHUNK } from './kernels.js';
export { configureInt8PV, quantizeVProgram, sparseInt8PVProgram, type Int8PVConfig } from './kernels-int8pv.js';
export {
  configureSgmatrixPV, sgmatrixInt8Available, sgmatrixProbeProgram, sgmatrixPVAvailable, sparseSgmatrixProgram, sparseSgmatrixPV16Program,
  sparseSgmatrixPVProgram, type SgmatrixPVLayout,
} from './kernels-sgmatrix.js';
