import { sgBox, type SgConfig, type SgShape } from './sgmatrix.js';
import { SG_HEADER_WGSL, sgEntryWgsl } from './sg-header.js';
import { WINDOW3_WGSL } from './window-wgsl.js';

/**
 * The subgroup-matrix kernel with K and V shared by the workgroup: its `subgroups`
 * subtiles are stacked along axis 1 (4*NSG x 4 queries in 2-D), so their key boxes are
 * row ranges of one union box, (4*NSG + k - 1) rows of 16 keys. The union box streams
 * through workgroup memory `stageBlocks` 16-key blocks at a time (each subgroup copies
 * whole fragments: matrix load from storage, matrix store to workgroup memory), and every
 * subgroup multiplies the staged blocks that fall in its own box. Storage reads per query
 * drop from 16 rows per 16 queries to (4*NSG + 12) rows per 16*NSG queries.
 *
 * S is f16 with P written over it, one chunk (the subtile's whole box), so softmax needs no
 * rescale; O is f16 (P normalized in the softmax, staged in the S slice) or f32 (own array).
 */
export interface SgSharedLayout { SR: number; QR: number; OR: number; KR: number; ssPer: number; osPer: number; bytes: number }

export function sgSharedLayout(cfg: SgConfig, s: SgShape): SgSharedLayout {
  const { width: W } = sgBox(cfg, s);
  const oF16 = cfg.oDtype === 'f16';
  const SR = W + 8;
  const QR = s.D + 8;
  const OR = s.D + (oF16 ? 8 : 4);
  const KR = s.D + 8;
  const ssPer = Math.max(16 * SR, 16 * QR, oF16 ? 16 * OR : 0);
  const osPer = oF16 ? 0 : 16 * OR;
  const kv = (cfg.stageBlocks ?? 4) * 16 * KR;
  return { SR, QR, OR, KR, ssPer, osPer, bytes: cfg.subgroups * (ssPer * 2 + osPer * 4) + kv * 2 };
}

export function sgSharedSource(cfg: SgConfig, s: SgShape): string {
  const { D } = s;
  const NF = D / 16;
  const NSG = cfg.subgroups;
  const CR = cfg.stageBlocks ?? 4;
  const [t0, t1, t2] = cfg.sub;
  const box = sgBox(cfg, s);
  if (box.chunks !== 1) throw new Error('sgSharedSource: the key box must fit one chunk');
  if (cfg.sDtype !== 'f16') throw new Error('sgSharedSource: f16 S only');
  const W = box.width;
  const UW = box.span[1] + (NSG - 1) * t1;
  const UB = box.span[0] * UW * box.bz;
  const NCH = Math.ceil(UB / CR);
  const oF16 = cfg.oDtype === 'f16';
  const lay = sgSharedLayout(cfg, s);
  const { SR, QR, OR, KR } = lay;
  const L = 'subgroup_matrix_left<f16, 16, 16>';
  const R = 'subgroup_matrix_right<f16, 16, 16>';
  const A = `subgroup_matrix_result<${oF16 ? 'f16' : 'f32'}, 16, 16>`;
  const osName = oF16 ? 'ss' : 'os';
  const oBaseExpr = oF16 ? 'sBase' : `sg * ${lay.osPer}u`;
  const cols = Array.from({ length: W / 32 }, (_, j) => j);
  const fs = Array.from({ length: NF }, (_, f) => f);
  // Fragment copies per subgroup per staged chunk (the last subgroups repeat the final copy when NSG does not divide them).
  const stageLoop = `for (var i = 0u; i < ${Math.ceil((CR * NF) / NSG)}u; i++) {`;
  // One chunk of CR union-box blocks of K or V (K transposed) into kvs, then the head of the
  // loop over the chunk's blocks that lie inside the box (the caller writes its body).
  const stageChunk = (src: 'kb' | 'vb', colMajor: boolean) => `workgroupBarrier();
    ${stageLoop}
      let fi = min(i * ${NSG}u + sg, ${CR * NF - 1}u);
      let blk = fi / ${NF}u;
      let up = upos(min(c * ${CR}u + blk, ${UB - 1}u));
      let kp = vec3<i32>(lo0.x + up.x, min(lo0.y + up.y, lg.y - 1), lo0.z + up.z * 16);
      let y = g + dd * vec3<u32>(kp);
      let krow = kvBase + (y.x * Lv.y + y.y) * Lv.z + y.z;
      let t = subgroupMatrixLoad<${R}>(&${src}, krow * ${D}u + (fi % ${NF}u) * 16u, ${colMajor}, kstride);
      subgroupMatrixStore(&kvs, blk * ${16 * KR}u + (fi % ${NF}u) * 16u, t, ${colMajor}, ${KR}u);
    }
    workgroupBarrier();
    for (var blk = 0u; blk < ${CR}u; blk++) {
      let ub = c * ${CR}u + blk;
      let up = upos(min(ub, ${UB - 1}u));
      let dy = lo0.y + up.y - boxLo.y;
      if (ub < ${UB}u && dy >= 0 && dy < ${box.span[1]}) {`;
  return `${SG_HEADER_WGSL}
var<workgroup> ss: array<f16, ${NSG * lay.ssPer}>;
${oF16 ? '' : `var<workgroup> os: array<f32, ${NSG * lay.osPer}>;`}
var<workgroup> kvs: array<f16, ${CR * 16 * KR}>;

const NEG = -1e30;

${WINDOW3_WGSL}
fn qpos(r: u32) -> vec3<i32> {
  return vec3<i32>(i32(r / ${t1 * t2}u), i32((r / ${t2}u) % ${t1}u), i32(r % ${t2}u));
}
// In-box coordinates of S column c (the subtile's own box).
fn kpos(c: u32) -> vec3<i32> {
  let blk = c / 16u;
  let row = blk / ${box.bz}u;
  return vec3<i32>(i32(row / ${box.span[1]}u), i32(row % ${box.span[1]}u), i32((blk % ${box.bz}u) * 16u + c % 16u));
}
// Union-box block ub -> (x row, y row, z block).
fn upos(ub: u32) -> vec3<i32> {
  return vec3<i32>(i32(ub / ${UW * box.bz}u), i32((ub / ${box.bz}u) % ${UW}u), i32(ub % ${box.bz}u));
}

${sgEntryWgsl(NSG * 32, 'Tw', `wid.x + wid.y * nwg.x`)}
  let wgStart = vec3<i32>((ta % tpg) * vec3<u32>(${t0}u, ${t1 * NSG}u, ${t2}u));
  let tileStart = wgStart + vec3<i32>(0, i32(sg * ${t1}u), 0);
  let lg = vec3<i32>(group_len(Lv.x, dd.x, g.x), group_len(Lv.y, dd.y, g.y), group_len(Lv.z, dd.z, g.z));
  let span = vec3<i32>(${box.span[0]}, ${box.span[1]}, ${box.span[2]});
  let lo0 = min(ws3(min(wgStart, lg - vec3<i32>(1)), lg, kk, cz), lg - span);
  let boxLo = min(ws3(min(tileStart, lg - vec3<i32>(1)), lg, kk, cz), lg - span);
  let kvBase = (b * u.Hkv + kvh) * Lv.x * Lv.y * Lv.z;
  let kstride = dd.z * ${D}u;
  let sBase = sg * ${lay.ssPer}u;
  let oBase = ${oBaseExpr};

  for (var i = 0u; i < ${(16 * D) / 32}u; i++) {
    let e = i * 32u + lane;
    let r = e / ${D}u;
    let iq = min(tileStart + qpos(r), lg - vec3<i32>(1));
    let x = g + dd * vec3<u32>(iq);
    let qrow = ((b * u.H + h) * Lv.x + x.x) * Lv.y * Lv.z + x.y * Lv.z + x.z;
    ss[sBase + r * ${QR}u + e % ${D}u] = qb[qrow * ${D}u + e % ${D}u];
  }
  workgroupBarrier();
  var qf: array<${L}, ${NF}>;
  for (var f = 0u; f < ${NF}u; f++) { qf[f] = subgroupMatrixLoad<${L}>(&ss, sBase + f * 16u, false, ${QR}u); }

  // S = Q·Kᵀ over the union box, ${CR} staged blocks at a time.
  for (var c = 0u; c < ${NCH}u; c++) {
    ${stageChunk('kb', true)}
        var acc = subgroupMatrixMultiply<f16>(qf[0], subgroupMatrixLoad<${R}>(&kvs, blk * ${16 * KR}u, true, ${KR}u));
        for (var f = 1u; f < ${NF}u; f++) {
          acc = subgroupMatrixMultiplyAccumulate(qf[f], subgroupMatrixLoad<${R}>(&kvs, blk * ${16 * KR}u + f * 16u, true, ${KR}u), acc);
        }
        let col = u32(((up.x * ${box.span[1]} + dy) * ${box.bz} + up.z) * 16);
        subgroupMatrixStore(&ss, sBase + col, acc, false, ${SR}u);
      }
    }
  }
  workgroupBarrier();
  var lrow = 0.0;
  for (var r = 0u; r < 16u; r++) {
    let iq = min(tileStart + qpos(r), lg - vec3<i32>(1));
    let lo = ws3(iq, lg, kk, cz) - boxLo;
    let hi = we3(iq, lg, kk, cz) - boxLo;
    var mloc = NEG;
${cols.map((j) => `    let c${j} = ${j * 32}u + lane;
    let k${j} = kpos(c${j});
    let ok${j} = all(k${j} >= lo) && all(k${j} <= hi);
    let s${j} = select(NEG, f32(ss[sBase + r * ${SR}u + c${j}]) * u.scale, ok${j});
    mloc = max(mloc, s${j});`).join('\n')}
    let mn = subgroupMax(mloc);
    var psum = 0.0;
${cols.map((j) => `    let p${j} = select(0.0, exp2(s${j} - mn), ok${j});
    psum += p${j};`).join('\n')}
    let lsum = subgroupAdd(psum);
    let pscale = ${oF16 ? '1.0 / lsum' : '1.0'};
${cols.map((j) => `    ss[sBase + r * ${SR}u + c${j}] = f16(p${j} * pscale);`).join('\n')}
    if (lane == r) { lrow = ${oF16 ? '1.0' : 'lsum'}; }
  }
${fs.map((f) => `  var o${f} = ${A}();`).join('\n')}
  // O += P·V over the union box.
  for (var c = 0u; c < ${NCH}u; c++) {
    ${stageChunk('vb', false)}
        let col = u32(((up.x * ${box.span[1]} + dy) * ${box.bz} + up.z) * 16);
        let pf = subgroupMatrixLoad<${L}>(&ss, sBase + col, false, ${SR}u);
${fs.map((f) => `        o${f} = subgroupMatrixMultiplyAccumulate(pf, subgroupMatrixLoad<${R}>(&kvs, blk * ${16 * KR}u + ${f * 16}u, false, ${KR}u), o${f});`).join('\n')}
      }
    }
  }
  workgroupBarrier();
${fs.map((f) => `  subgroupMatrixStore(&${osName}, oBase + ${f * 16}u, o${f}, false, ${OR}u);`).join('\n')}
  workgroupBarrier();
  for (var i = 0u; i < ${(16 * D) / 32}u; i++) {
    let e = i * 32u + lane;
    let r = e / ${D}u;
    let iqr = tileStart + qpos(r);
    let inv = 1.0 / subgroupShuffle(lrow, r);
    if (live && all(iqr < lg)) {
      let x = g + dd * vec3<u32>(iqr);
      let qrow = ((b * u.H + h) * Lv.x + x.x) * Lv.y * Lv.z + x.y * Lv.z + x.z;
      ob[qrow * ${D}u + e % ${D}u] = f16(f32(${osName}[oBase + r * ${OR}u + e % ${D}u]) * inv);
    }
  }
}
`;
}
