// Decode for Q8_0 and Q4_0 weights with packed 8-bit dot products (WGSL's dot4I8Packed:
// one SDot instruction per 4 values where the device has integer dot products), compiled
// only there. The activations arrive quantized by quantize_x8.wgsl (binding 2); each
// 32-value block gives an exact integer sum, scaled by d_w * d_x in f32 as ggml's CPU
// vec_dot does, so results match the CPU backend's to f32 summation order. The layout of
// rows, threads and the tree sum is matmul.wgsl's `matvec`; prepended with common.wgsl and
// a one-line `dot_blk(block_byte, xq_word)` choosing the format.

@group(0) @binding(2) var<storage, read> XQ: array<u32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

const WG: u32 = 64u;
const NT: u32 = 8u;
const ROWS: u32 = 4u;
const TPR: u32 = 16u;

var<workgroup> red: array<f32, 512>; // WG * NT

// Q8_0, 34 bytes: d (f16), qs[32] (i8): the weight words are the packed operands as stored.
fn dot_q8_0(base: u32, xb: u32) -> f32 {
    var sumi = 0;
    for (var i = 0u; i < 8u; i++) {
        sumi += dot4I8Packed(rd_u32(base + 2u + 4u * i), XQ[xb + i]);
    }
    return f32(sumi) * (rd_f16(base) * bitcast<f32>(XQ[xb + 8u]));
}

// Q4_0, 18 bytes: d, qs[16]: byte j's low nibble is element j, its high nibble j + 16,
// each minus 8. The nibbles (0..15) are valid positive i8 lanes as they are; the -8 comes
// off as 8 times the activations' block sum.
fn dot_q4_0(base: u32, xb: u32) -> f32 {
    var sumi = 0;
    var sx = 0;
    for (var i = 0u; i < 4u; i++) {
        let w = rd_u32(base + 2u + 4u * i);
        sumi += dot4I8Packed(w & 0x0f0f0f0fu, XQ[xb + i]);
        sumi += dot4I8Packed((w >> 4u) & 0x0f0f0f0fu, XQ[xb + 4u + i]);
        sx += dot4I8Packed(0x01010101u, XQ[xb + i]) + dot4I8Packed(0x01010101u, XQ[xb + 4u + i]);
    }
    return f32(sumi - 8 * sx) * (rd_f16(base) * bitcast<f32>(XQ[xb + 8u]));
}

@compute @workgroup_size(64)
fn matvec_dot4(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let slot = lid / TPR;
    let lane = lid % TPR;
    let r = (wid.x + wid.y * nwg.x) * ROWS + slot;
    let n = min(P.n, NT);
    let nsub = P.k / 32u;
    var acc: array<f32, 8>;
    if (r < P.rows) {
        let rb = r * P.row_bytes;
        for (var s = lane; s < nsub; s += TPR) {
            for (var t = 0u; t < n; t++) {
                acc[t] += dot_blk(rb + s * BLOCK_BYTES, (t * nsub + s) * 9u);
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
