import { sgBox, type SgConfig, type SgShape } from './sgmatrix.js';
import { SG_HEADER_WGSL, sgEntryWgsl } from './sg-header.js';
import { WINDOW3_WGSL } from './window-wgsl.js';

/**
 * The subgroup-matrix kernel with `stack` (2) subtiles per subgroup, stacked along axis 1
 * (the rows of a 2-D grid). Their key boxes overlap in all but `sub[1]` key rows, so the
 * subgroup walks the union box once and every K and V fragment it loads from storage feeds
 * the MMAs of each subtile whose own box holds that key row: 20 fragment loads per key
 * column instead of 32 for a 4x4 pair with a 13-window. Each subtile keeps its own S, P and
 * softmax state exactly as in sgmatrix.ts; this variant needs the whole box in one chunk.
 */
export function sgStackedSource(cfg: SgConfig, s: SgShape): string {
  const MQ = cfg.stack ?? 1;
  const { D } = s;
  const NF = D / 16;
  const NSG = cfg.subgroups;
  const [t0, t1, t2] = cfg.sub;
  const box = sgBox(cfg, s);
  if (box.chunks !== 1) throw new Error('sgStackedSource: the key box must fit one chunk');
  const W = box.width;
  const UW = box.span[1] + (MQ - 1) * t1;
  const f32S = cfg.sDtype === 'f32';
  const HALF = Math.max(W, D) * 16;
  const L = `subgroup_matrix_left<f16, 16, 16>`;
  const R = `subgroup_matrix_right<f16, 16, 16>`;
  // f16 O: P is normalized in the softmax (one chunk), O accumulates in f16 and is staged in the f16 array.
  const oF16 = cfg.oDtype === 'f16';
  if (!oF16 && MQ > 2) throw new Error('sgStackedSource: more than 2 stacked subtiles need f16 O');
  const A = `subgroup_matrix_result<${oF16 ? 'f16' : 'f32'}, 16, 16>`;
  const perLane = W / 32;
  const hsName = f32S ? 'hs' : 'ss';
  const osName = oF16 ? hsName : f32S ? 'ss' : 'os';
  const sStride = f32S ? Math.max(16 * W, 16 * D) : HALF;
  const oStride = oF16 ? HALF : f32S ? sStride : 16 * D;
  // Per subgroup: MQ slices of each array.
  const decls = f32S
    ? `var<workgroup> ss: array<f32, ${NSG * MQ * sStride}>;\nvar<workgroup> hs: array<f16, ${NSG * MQ * HALF}>;`
    : `var<workgroup> ss: array<f16, ${NSG * MQ * HALF}>;${oF16 ? '' : `\nvar<workgroup> os: array<f32, ${NSG * MQ * 16 * D}>;`}`;
  const ms = Array.from({ length: MQ }, (_, m) => m);
  const fs = Array.from({ length: NF }, (_, f) => f);
  const cols = Array.from({ length: perLane }, (_, j) => j);
  return `${SG_HEADER_WGSL}
${decls}

const NEG = -1e30;

${WINDOW3_WGSL}
// In-subtile coordinates of query row r (0..15) of subtile m.
fn qpos(m: u32, r: u32) -> vec3<i32> {
  return vec3<i32>(i32(r / ${t1 * t2}u), i32((r / ${t2}u) % ${t1}u + m * ${t1}u), i32(r % ${t2}u));
}
// In-box coordinates of key column c (the subtile's own box).
fn kpos(c: u32) -> vec3<i32> {
  let blk = c / 16u;
  let row = blk / ${box.bz}u;
  return vec3<i32>(i32(row / ${box.span[1]}u), i32(row % ${box.span[1]}u), i32((blk % ${box.bz}u) * 16u + c % 16u));
}

${sgEntryWgsl(NSG * 32, 'St', `(wid.x + wid.y * nwg.x) * ${NSG}u + sg`)}
  let tileStart = vec3<i32>((ta % tpg) * vec3<u32>(${t0}u, ${t1 * MQ}u, ${t2}u));
  let lg = vec3<i32>(group_len(Lv.x, dd.x, g.x), group_len(Lv.y, dd.y, g.y), group_len(Lv.z, dd.z, g.z));
  let span = vec3<i32>(${box.span[0]}, ${box.span[1]}, ${box.span[2]});
${ms.map((m) => `  let lo${m} = min(ws3(min(tileStart + vec3<i32>(0, ${m * t1}, 0), lg - vec3<i32>(1)), lg, kk, cz), lg - span);`).join('\n')}
  let kvBase = (b * u.Hkv + kvh) * Lv.x * Lv.y * Lv.z;
  let kstride = dd.z * ${D}u;
  let sBase = sg * ${MQ * sStride}u;
  let hBase = sg * ${MQ * HALF}u;
  let oBase = sg * ${MQ * oStride}u;

  for (var i = 0u; i < ${(MQ * 16 * D) / 32}u; i++) {
    let e = i * 32u + lane;
    let m = e / ${16 * D}u;
    let r = (e / ${D}u) % 16u;
    let iq = min(tileStart + qpos(m, r), lg - vec3<i32>(1));
    let x = g + dd * vec3<u32>(iq);
    let qrow = ((b * u.H + h) * Lv.x + x.x) * Lv.y * Lv.z + x.y * Lv.z + x.z;
    ${hsName}[hBase + m * ${HALF}u + e % ${16 * D}u] = qb[qrow * ${D}u + e % ${D}u];
  }
  workgroupBarrier();
${ms.map((m) => `  var qf${m}: array<${L}, ${NF}>;
  for (var f = 0u; f < ${NF}u; f++) { qf${m}[f] = subgroupMatrixLoad<${L}>(&${hsName}, hBase + ${m * HALF}u + f * 16u, false, ${D}u); }`).join('\n')}
  workgroupBarrier();

  // S for every subtile, walking the union of their boxes once.
  for (var ux = 0; ux < ${box.span[0]}; ux++) {
    for (var uy = 0; uy < ${UW}; uy++) {
      for (var zb = 0; zb < ${box.bz}; zb++) {
        let kp = vec3<i32>(lo0.x + ux, min(lo0.y + uy, lg.y - 1), lo0.z + zb * 16);
        let y = g + dd * vec3<u32>(kp);
        let krow = kvBase + (y.x * Lv.y + y.y) * Lv.z + y.z;
        var kf: array<${R}, ${NF}>;
        for (var f = 0u; f < ${NF}u; f++) { kf[f] = subgroupMatrixLoad<${R}>(&kb, krow * ${D}u + f * 16u, true, kstride); }
${ms.map((m) => `        {
          let dy = lo0.y + uy - lo${m}.y;
          if (dy >= 0 && dy < ${box.span[1]}) {
            var acc = subgroupMatrixMultiply<${cfg.sDtype}>(qf${m}[0], kf[0]);
            for (var f = 1u; f < ${NF}u; f++) { acc = subgroupMatrixMultiplyAccumulate(qf${m}[f], kf[f], acc); }
            let col = u32(((ux * ${box.span[1]} + dy) * ${box.bz} + zb) * 16);
            subgroupMatrixStore(&ss, sBase + ${m * sStride}u + col, acc, false, ${W}u);
          }
        }`).join('\n')}
      }
    }
  }
  workgroupBarrier();
  var lrow = 0.0;
  for (var mr = 0u; mr < ${MQ * 16}u; mr++) {
    let m = mr / 16u;
    let r = mr % 16u;
    let lom = ${ms.slice(1).reduce((acc, m) => `select(${acc}, lo${m}, m == ${m}u)`, 'lo0')};
    let iq = min(tileStart + qpos(m, r), lg - vec3<i32>(1));
    let lo = ws3(iq, lg, kk, cz) - lom;
    let hi = we3(iq, lg, kk, cz) - lom;
    let sRow = sBase + m * ${sStride}u + r * ${W}u;
    let hRow = hBase + m * ${HALF}u + r * ${W}u;
    var mloc = NEG;
${cols.map((j) => `    let c${j} = ${j * 32}u + lane;
    let k${j} = kpos(c${j});
    let ok${j} = all(k${j} >= lo) && all(k${j} <= hi);
    let s${j} = select(NEG, f32(ss[sRow + c${j}]) * u.scale, ok${j});
    mloc = max(mloc, s${j});`).join('\n')}
    let mn = subgroupMax(mloc);
    var psum = 0.0;
${cols.map((j) => `    let p${j} = select(0.0, exp2(s${j} - mn), ok${j});
    psum += p${j};`).join('\n')}
    let lsum = subgroupAdd(psum);
    let pscale = ${oF16 ? '1.0 / lsum' : '1.0'};
${cols.map((j) => `    ${hsName}[hRow + c${j}] = f16(p${j} * pscale);`).join('\n')}
    if (lane == mr % 32u) { lrow = ${oF16 ? '1.0' : 'lsum'}; }
  }
  workgroupBarrier();
${ms.flatMap((m) => fs.map((f) => `  var o${m}_${f} = ${A}();`)).join('\n')}
  for (var ux = 0; ux < ${box.span[0]}; ux++) {
    for (var uy = 0; uy < ${UW}; uy++) {
      for (var zb = 0; zb < ${box.bz}; zb++) {
        let kp = vec3<i32>(lo0.x + ux, min(lo0.y + uy, lg.y - 1), lo0.z + zb * 16);
        let y = g + dd * vec3<u32>(kp);
        let krow = kvBase + (y.x * Lv.y + y.y) * Lv.z + y.z;
${fs.map((f) => `        let v${f} = subgroupMatrixLoad<${R}>(&vb, krow * ${D}u + ${f * 16}u, false, kstride);`).join('\n')}
${ms.map((m) => `        {
          let dy = lo0.y + uy - lo${m}.y;
          if (dy >= 0 && dy < ${box.span[1]}) {
            let col = u32(((ux * ${box.span[1]} + dy) * ${box.bz} + zb) * 16);
            let pf = subgroupMatrixLoad<${L}>(&${hsName}, hBase + ${m * HALF}u + col, false, ${W}u);
${fs.map((f) => `            o${m}_${f} = subgroupMatrixMultiplyAccumulate(pf, v${f}, o${m}_${f});`).join('\n')}
          }
        }`).join('\n')}
      }
    }
  }
  workgroupBarrier();
${ms.flatMap((m) => fs.map((f) => `  subgroupMatrixStore(&${osName}, oBase + ${m * oStride + f * 16}u, o${m}_${f}, false, ${D}u);`)).join('\n')}
  workgroupBarrier();
  for (var i = 0u; i < ${(MQ * 16 * D) / 32}u; i++) {
    let e = i * 32u + lane;
    let m = e / ${16 * D}u;
    let r = (e / ${D}u) % 16u;
    let iqr = tileStart + qpos(m, r);
    let inv = ${oF16 ? '1.0' : '1.0 / subgroupShuffle(lrow, m * 16u + r)'};
    if (live && all(iqr < lg)) {
      let x = g + dd * vec3<u32>(iqr);
      let qrow = ((b * u.H + h) * Lv.x + x.x) * Lv.y * Lv.z + x.y * Lv.z + x.z;
      ob[qrow * ${D}u + e % ${D}u] = f16(f32(${osName}[oBase + m * ${oStride}u + e % ${16 * D}u]) * inv);
    }
  }
}
`;
}
