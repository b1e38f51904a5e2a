import type { Suite } from '../harness.js';
import { matmulSuite } from './matmul.js';
import { softmaxSuite } from './softmax.js';
import { decoderSuite } from './decoder.js';
import { neighborhoodSuite } from './neighborhood.js';
import { paroSgmatrixSuite, paroSuite } from './paro.js';
import { attentionSgSuite, attentionSuite } from './attention.js';

/** Every suite; each package's suite is added here with one line. */
export const SUITES: Suite[] = [matmulSuite, softmaxSuite, decoderSuite, neighborhoodSuite, paroSuite, paroSgmatrixSuite, attentionSuite, attentionSgSuite];
