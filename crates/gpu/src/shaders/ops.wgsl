// Row-wise and element-wise ops on f32 activations. One parameter block for all; each entry
// point says which fields it reads.

struct OpParams {
    n: u32,      // elements per row (norms), elements (element-wise), tokens (rope)
    rows: u32,   // rows (norms), heads (rope)
    p0: u32,     // norms: 1 = has weight, 2 = has bias, 4 = in place (bit flags); rope: head_dim; glu: width
    p1: u32,     // rope: n_rot; glu: gate row stride
    p2: u32,     // rope: floats between tokens; glu: up row stride
    p3: u32,     // rope: 1 = NEOX pairs; glu: 1 = up is in Y too
    f0: f32,     // eps, scale, soft-cap
    f1: f32,
    x_off: u32,
    y_off: u32,
    _a: u32,
    _b: u32,
}

@group(0) @binding(0) var<uniform> P: OpParams;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;  // norm weight
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@group(0) @binding(4) var<storage, read> B: array<f32>;  // norm bias

const NWG: u32 = 128u;
var<workgroup> red: array<f32, 128>;

// Element `i` of the norm's input: X, or Y itself in place.
fn src(i: u32) -> f32 {
    if ((P.p0 & 4u) != 0u) {
        return Y[i];
    }
    return X[i];
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var st = NWG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) {
            red[lid] += red[lid + st];
        }
        workgroupBarrier();
    }
    let s = red[0];
    workgroupBarrier();
    return s;
}

// Y row = X row / sqrt(mean(x^2) + eps) (* G), one workgroup per row.
@compute @workgroup_size(128)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= P.rows) {
        return;
    }
    let xo = P.x_off + row * P.n;
    let yo = P.y_off + row * P.n;
    var ss = 0.0;
    for (var i = lid; i < P.n; i += NWG) {
        let v = src(xo + i);
        ss += v * v;
    }
    let s = 1.0 / sqrt(reduce_sum(lid, ss) / f32(P.n) + P.f0);
    for (var i = lid; i < P.n; i += NWG) {
        var v = src(xo + i) * s;
        if ((P.p0 & 1u) != 0u) {
            v *= G[i];
        }
        Y[yo + i] = v;
    }
}

// Y row = (X row - mean) / sqrt(var + eps) (* G) (+ B).
@compute @workgroup_size(128)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= P.rows) {
        return;
    }
    let xo = P.x_off + row * P.n;
    let yo = P.y_off + row * P.n;
    var sum = 0.0;
    for (var i = lid; i < P.n; i += NWG) {
        sum += src(xo + i);
    }
    let mean = reduce_sum(lid, sum) / f32(P.n);
    var sq = 0.0;
    for (var i = lid; i < P.n; i += NWG) {
        let d = src(xo + i) - mean;
        sq += d * d;
    }
    let s = 1.0 / sqrt(reduce_sum(lid, sq) / f32(P.n) + P.f0);
    for (var i = lid; i < P.n; i += NWG) {
        var v = (src(xo + i) - mean) * s;
        if ((P.p0 & 1u) != 0u) {
            v *= G[i];
        }
        if ((P.p0 & 2u) != 0u) {
            v += B[i];
        }
        Y[yo + i] = v;
    }
}

// tanh without the inf/inf of exp-based implementations for large arguments.
fn safe_tanh(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// Rotates pairs of Y in place: token t's heads at Y[y_off + t * p2 + h * head_dim ..], with
// X[t * n_rot ..] holding (cos, sin) per pair for the token's position (made on the host).
@compute @workgroup_size(256)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let half = P.p1 / 2u;
    if (i >= P.n * P.rows * half) {
        return;
    }
    let pr = i % half;
    let h = (i / half) % P.rows;
    let t = i / (half * P.rows);
    let base = P.y_off + t * P.p2 + h * P.p0;
    var a = base + 2u * pr;
    var b = a + 1u;
    if (P.p3 == 1u) {
        a = base + pr;
        b = base + pr + half;
    }
    let c = X[P.x_off + t * P.p1 + 2u * pr];
    let s = X[P.x_off + t * P.p1 + 2u * pr + 1u];
    let x0 = Y[a];
    let x1 = Y[b];
    Y[a] = x0 * c - x1 * s;
    Y[b] = x0 * s + x1 * c;
}

// Row t, column c (c < width) of the gate (Y) and up (X, or Y when p3 = 1) rows.
fn glu_at(i: u32) -> vec2<u32> {
    let t = i / P.p0;
    let c = i % P.p0;
    return vec2<u32>(P.y_off + t * P.p1 + c, P.x_off + t * P.p2 + c);
}

fn glu_up(j: u32) -> f32 {
    if (P.p3 == 1u) {
        return Y[j];
    }
    return X[j];
}

fn gelu1(g: f32) -> f32 {
    if (g <= -10.0) {
        return 0.0;
    }
    if (g >= 10.0) {
        return g;
    }
    return 0.5 * g * (1.0 + safe_tanh(0.7978846 * g * (1.0 + 0.044715 * g * g)));
}

// gate = silu(gate) * up for n rows of width p0.
@compute @workgroup_size(256)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n * P.p0) {
        return;
    }
    let at = glu_at(i);
    let g = Y[at.x];
    Y[at.x] = g / (1.0 + exp(-g)) * glu_up(at.y);
}

// gate = gelu(gate) * up (ggml's tanh-approximation GELU, identity past 10).
@compute @workgroup_size(256)
fn geglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n * P.p0) {
        return;
    }
    let at = glu_at(i);
    Y[at.x] = gelu1(Y[at.x]) * glu_up(at.y);
}

// Y = gelu(Y) over n elements.
@compute @workgroup_size(256)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n) {
        return;
    }
    Y[P.y_off + i] = gelu1(Y[P.y_off + i]);
}

// Y += X (p0 != 0: X is one row of p0 added to every row of Y, a bias).
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n) {
        return;
    }
    var j = i;
    if (P.p0 != 0u) {
        j = i % P.p0;
    }
    Y[P.y_off + i] += X[P.x_off + j];
}

// Y *= f0.
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n) {
        return;
    }
    Y[P.y_off + i] *= P.f0;
}

// Y = f0 * tanh(Y / f0).
@compute @workgroup_size(256)
fn softcap(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= P.n) {
        return;
    }
    Y[P.y_off + i] = safe_tanh(Y[P.y_off + i] * (1.0 / P.f0)) * P.f0;
}
