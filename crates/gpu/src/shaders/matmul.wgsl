// Weight matrix times activations, the weights dequantized here 32 values at a time through
// the format's `load_sub(row_byte, sub_block)` (prepended with the format's file). Outputs:
// Y[y_off + t * y_stride + r] = sum_k W[r][k] * X[x_off + t * x_stride + k].

@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@group(0) @binding(4) var<storage, read> IDS: array<u32>;

const WG: u32 = 64u;
// Tokens per matrix-vector dispatch (decode, or a few sequences decoding together).
const NT: u32 = 8u;

var<workgroup> red: array<f32, 512>; // WG * NT

fn sub_dot(xo: u32, s: u32) -> f32 {
    var a = 0.0;
    for (var i = 0u; i < 32u; i++) {
        let e = 32u * s + i;
        a += sv[i] * select(0.0, X[xo + e], e < P.k);
    }
    return a;
}

// Decode: ROWS weight rows per workgroup, TPR threads per row striding over its
// sub-blocks (neighbours read neighbouring blocks), up to NT tokens sharing each decoded
// sub-block, then a tree sum per row in workgroup memory.
const ROWS: u32 = 4u;
const TPR: u32 = 16u; // WG / ROWS

@compute @workgroup_size(64)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let slot = lid / TPR;
    let lane = lid % TPR;
    let r = (wid.x + wid.y * nwg.x) * ROWS + slot;
    let n = min(P.n, NT);
    var acc: array<f32, 8>;
    if (r < P.rows) {
        let nsub = (P.k + 31u) / 32u;
        let rb = r * P.row_bytes;
        for (var s = lane; s < nsub; s += TPR) {
            load_sub(rb, s);
            for (var t = 0u; t < n; t++) {
                acc[t] += sub_dot(P.x_off + t * P.x_stride, s);
            }
        }
    }
    for (var t = 0u; t < NT; t++) {
        red[t * WG + lid] = acc[t];
    }
    workgroupBarrier();
    for (var st = TPR / 2u; st > 0u; st >>= 1u) {
        if (lane < st) {
            for (var t = 0u; t < n; t++) {
                red[t * WG + lid] += red[t * WG + lid + st];
            }
        }
        workgroupBarrier();
    }
    if (r < P.rows && lane < n) {
        Y[P.y_off + lane * P.y_stride + r] = red[lane * WG + slot * TPR];
    }
}

// Stacked matrices by id (MoE experts, per-head matrices): output row i = i0 + wid.y takes
// matrix IDS[i] (rows of `rows` each; this binding holds matrices e0..e0 + ne) times input
// row i / per, ROWS weight rows per workgroup as `matvec`. Rows whose matrix another binding
// holds are left to that binding's dispatch. Each output row decodes its matrix itself:
// for a decode step's few rows; longer batches take matmul_id_tiled.
@compute @workgroup_size(64)
fn matvec_id(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let slot = lid / TPR;
    let lane = lid % TPR;
    let r = wid.x * ROWS + slot;
    let i = P.i0 + wid.y;
    let id = IDS[i];
    let ok = r < P.rows && id >= P.e0 && id < P.e0 + P.ne;
    var acc = 0.0;
    if (ok) {
        let nsub = (P.k + 31u) / 32u;
        let rb = ((id - P.e0) * P.rows + r) * P.row_bytes;
        let xo = P.x_off + (i / P.per) * P.x_stride;
        for (var s = lane; s < nsub; s += TPR) {
            load_sub(rb, s);
            acc += sub_dot(xo, s);
        }
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var st = TPR / 2u; st > 0u; st >>= 1u) {
        if (lane < st) {
            red[lid] += red[lid + st];
        }
        workgroupBarrier();
    }
    if (ok && lane == 0u) {
        Y[P.y_off + i * P.y_stride + r] = red[lid];
    }
}

// Prefill: a 32-row x 32-token output tile per workgroup, 4 x 4 per thread. Each step
// covers 64 columns: every thread decodes one sub-block (threads 0-31 the first of the pair
// for rows 0-31, threads 32-63 the second) and loads 32 activations, into element-major
// tiles (tile[e][row]) so the stores and the 4-wide reads fall on consecutive addresses.
// 2 x 8 KiB of workgroup memory: within WebGPU's 16 KiB baseline.
const TILE: u32 = 32u;
const KSTEP: u32 = 64u;
var<workgroup> ws: array<f32, 2048>; // KSTEP * TILE
var<workgroup> xs: array<f32, 2048>;

@compute @workgroup_size(64)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let r0 = wid.x * TILE;
    let t0 = wid.y * TILE;
    let tr = (lid % 8u) * 4u;
    let tc = (lid / 8u) * 4u;
    var acc: array<f32, 16>;
    let nsub = (P.k + 31u) / 32u;
    let row = lid % TILE;
    let half = lid / TILE;
    for (var s0 = 0u; s0 < nsub; s0 += 2u) {
        let s = s0 + half;
        let r = r0 + row;
        if (r < P.rows && s < nsub) {
            load_sub(r * P.row_bytes, s);
            for (var i = 0u; i < 32u; i++) {
                ws[(half * 32u + i) * TILE + row] = sv[i];
            }
        } else {
            for (var i = 0u; i < 32u; i++) {
                ws[(half * 32u + i) * TILE + row] = 0.0;
            }
        }
        for (var q = 0u; q < 32u; q++) {
            let idx = q * WG + lid;
            let t = idx / KSTEP;
            let e = idx % KSTEP;
            let tok = t0 + t;
            let col = 32u * s0 + e;
            let ok = tok < P.n && col < P.k;
            let v = X[P.x_off + min(tok, P.n - 1u) * P.x_stride + min(col, P.k - 1u)];
            xs[e * TILE + t] = select(0.0, v, ok);
        }
        workgroupBarrier();
        for (var e = 0u; e < KSTEP; e++) {
            let wv = vec4<f32>(ws[e * TILE + tr], ws[e * TILE + tr + 1u],
                               ws[e * TILE + tr + 2u], ws[e * TILE + tr + 3u]);
            let xv = vec4<f32>(xs[e * TILE + tc], xs[e * TILE + tc + 1u],
                               xs[e * TILE + tc + 2u], xs[e * TILE + tc + 3u]);
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += wv[i] * xv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let r = r0 + tr + i;
            let t = t0 + tc + j;
            if (r < P.rows && t < P.n) {
                Y[P.y_off + t * P.y_stride + r] = acc[i * 4u + j];
            }
        }
    }
}

// Stacked matrices by id, for many rows (prefill): ORD holds the rows grouped by matrix
// (moe.wgsl's group_ids, over `i0` matrices); workgroup (x, y, z) takes a 32-row tile of
// matrix e0 + z and rows y * 32.. of its group, as matmul_tiled does with tokens, so each
// matrix is decoded once per 32 rows choosing it.
@group(0) @binding(6) var<storage, read> ORD: array<u32>;
var<workgroup> group_len: u32;

@compute @workgroup_size(64)
fn matmul_id_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let e = P.e0 + wid.z;
    let first = ORD[e];
    if (lid == 0u) {
        group_len = ORD[e + 1u] - first;
    }
    let cnt = workgroupUniformLoad(&group_len);
    let t0 = wid.y * TILE;
    if (t0 >= cnt) {
        return;
    }
    let order = P.i0 + 1u + first;
    let r0 = wid.x * TILE;
    let tr = (lid % 8u) * 4u;
    let tc = (lid / 8u) * 4u;
    var acc: array<f32, 16>;
    let nsub = (P.k + 31u) / 32u;
    let row = lid % TILE;
    let half = lid / TILE;
    let wbase = wid.z * P.rows;
    for (var s0 = 0u; s0 < nsub; s0 += 2u) {
        let s = s0 + half;
        let r = r0 + row;
        if (r < P.rows && s < nsub) {
            load_sub((wbase + r) * P.row_bytes, s);
            for (var i = 0u; i < 32u; i++) {
                ws[(half * 32u + i) * TILE + row] = sv[i];
            }
        } else {
            for (var i = 0u; i < 32u; i++) {
                ws[(half * 32u + i) * TILE + row] = 0.0;
            }
        }
        for (var q = 0u; q < 32u; q++) {
            let idx = q * WG + lid;
            let t = idx / KSTEP;
            let c = idx % KSTEP;
            let j = t0 + t;
            let col = 32u * s0 + c;
            let ok = j < cnt && col < P.k;
            let slot = ORD[order + min(j, cnt - 1u)];
            let v = X[P.x_off + (slot / P.per) * P.x_stride + min(col, P.k - 1u)];
            xs[c * TILE + t] = select(0.0, v, ok);
        }
        workgroupBarrier();
        for (var c = 0u; c < KSTEP; c++) {
            let wv = vec4<f32>(ws[c * TILE + tr], ws[c * TILE + tr + 1u],
                               ws[c * TILE + tr + 2u], ws[c * TILE + tr + 3u]);
            let xv = vec4<f32>(xs[c * TILE + tc], xs[c * TILE + tc + 1u],
                               xs[c * TILE + tc + 2u], xs[c * TILE + tc + 3u]);
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += wv[i] * xv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let r = r0 + tr + i;
            let t = t0 + tc + j;
            if (r < P.rows && t < cnt) {
                Y[P.y_off + ORD[order + t] * P.y_stride + r] = acc[i * 4u + j];
            }
        }
    }
}

// Embedding lookup: token t's row IDS[t] (global row; this binding holds rows x_off..x_off +
// rows) decoded into Y[y_off + t * y_stride ..][..k].
@compute @workgroup_size(64)
fn get_rows(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= P.n) {
        return;
    }
    let id = IDS[t];
    if (id < P.x_off || id >= P.x_off + P.rows) {
        return;
    }
    let rb = (id - P.x_off) * P.row_bytes;
    let nsub = (P.k + 31u) / 32u;
    for (var s = lid; s < nsub; s += WG) {
        load_sub(rb, s);
        for (var i = 0u; i < 32u; i++) {
            let e = 32u * s + i;
            if (e < P.k) {
                Y[P.y_off + t * P.y_stride + e] = sv[i];
            }
        }
    }
}
