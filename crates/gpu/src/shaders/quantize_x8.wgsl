// Activations to 8 bits for the packed-dot matrix-vector kernels (matvec_dot4.wgsl), as the
// CPU quantizes them for Q8_0 and Q4_0 weights (ggml's quantize_row_q8_0: d = amax / 127,
// stored as f16, q = roundf(x / d)), so the GPU's integer sums are the CPU's. Per token and
// 32-value block: 8 words of packed i8 (element 4w + b in byte b of word w), then d's f32
// bits (already rounded to f16). One invocation per block; done once per matmul, the
// result read by every weight row.

struct QParams {
    n: u32,        // tokens
    k: u32,        // values per token, a multiple of 32
    x_stride: u32, // floats between tokens
    x_off: u32,    // first float
}

@group(0) @binding(0) var<uniform> Q: QParams;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> XQ: array<u32>;

// C's roundf (ties away from zero), which the CPU uses; WGSL's round() ties to even.
fn roundf(v: f32) -> f32 {
    let t = trunc(v);
    return select(round(v), t + sign(v), abs(v - t) == 0.5);
}

@compute @workgroup_size(64)
fn quantize_x8(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let nsub = Q.k / 32u;
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (i >= Q.n * nsub) {
        return;
    }
    let xo = Q.x_off + (i / nsub) * Q.x_stride + 32u * (i % nsub);
    var amax = 0.0;
    for (var j = 0u; j < 32u; j++) {
        amax = max(amax, abs(X[xo + j]));
    }
    let d = amax / 127.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    for (var w = 0u; w < 8u; w++) {
        var packed = 0u;
        for (var b = 0u; b < 4u; b++) {
            let q = i32(roundf(X[xo + 4u * w + b] * id));
            packed |= (bitcast<u32>(q) & 0xffu) << (8u * b);
        }
        XQ[i * 9u + w] = packed;
    }
    XQ[i * 9u + 8u] = bitcast<u32>(unpack2x16float(pack2x16float(vec2<f32>(d, 0.0))).x);
}
