// Mixture-of-experts routing and the small row ops MoE and latent attention need. One
// parameter block for all; each entry point says which fields it reads.

struct MoeParams {
    n: u32,          // rows (route, weighted_sum, copy_rows) or elements (sigmoid)
    width: u32,      // route: experts; weighted_sum, copy_rows: floats per row
    k: u32,          // route: experts chosen per row; weighted_sum: rows summed per row
    gating: u32,     // route: 0 softmax, 1 sigmoid, 2 softmax over the chosen logits
    flags: u32,      // route: 1 = selection bias in X, 2 = normalise the weights
    n_group: u32,    // route: expert groups (0 or 1 = none)
    n_group_used: u32,
    scale: f32,      // route: weights scale (0 or 1 = none)
    x_off: u32,
    x_stride: u32,
    y_off: u32,
    y_stride: u32,
}

@group(0) @binding(0) var<uniform> P: MoeParams;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@group(0) @binding(4) var<storage, read_write> IDS: array<u32>;
@group(0) @binding(5) var<storage, read_write> WTS: array<f32>;
@group(0) @binding(6) var<storage, read_write> ORD: array<atomic<u32>>;

// Below every selection score: the mark of an expert outside the kept groups.
const MASKED: f32 = -3.0e38;

fn flat(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
    return gid.x + gid.y * nwg.x * wg;
}

var<private> group_score: array<f32, 64>;
var<private> group_kept: array<u32, 64>;

// Row t's selection score of expert i: its probability (Y, already converted) plus the
// bias, or MASKED outside the kept groups.
fn score(base: u32, i: u32, per: u32) -> f32 {
    if (P.n_group > 1u && group_kept[i / per] == 0u) {
        return MASKED;
    }
    var s = Y[base + i];
    if ((P.flags & 1u) != 0u) {
        s += X[i];
    }
    return s;
}

// The router of one row per invocation (rows are few, experts at most a few hundred):
// Y's row of logits becomes probabilities in place, then the best groups, top-k (ties to
// the lower id), and the chosen experts' weights, as compute::moe::route.
@compute @workgroup_size(64)
fn route(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(gid, nwg, 64u);
    if (t >= P.n) {
        return;
    }
    let ne = P.width;
    let base = t * ne;
    if (P.gating == 0u) {
        var m = MASKED;
        for (var i = 0u; i < ne; i++) {
            m = max(m, Y[base + i]);
        }
        var sum = 0.0;
        for (var i = 0u; i < ne; i++) {
            let e = exp(Y[base + i] - m);
            Y[base + i] = e;
            sum += e;
        }
        let inv = 1.0 / sum;
        for (var i = 0u; i < ne; i++) {
            Y[base + i] *= inv;
        }
    } else if (P.gating == 1u) {
        for (var i = 0u; i < ne; i++) {
            Y[base + i] = 1.0 / (1.0 + exp(-Y[base + i]));
        }
    }
    var per = ne;
    if (P.n_group > 1u) {
        per = ne / P.n_group;
        // Group score: the sum of its two best selection scores.
        for (var g = 0u; g < P.n_group; g++) {
            group_kept[g] = 1u;
            var a = MASKED;
            var b = MASKED;
            for (var i = g * per; i < (g + 1u) * per; i++) {
                let v = score(base, i, per);
                if (v > a) {
                    b = a;
                    a = v;
                } else if (v > b) {
                    b = v;
                }
            }
            group_score[g] = select(a, a + b, per > 1u);
            group_kept[g] = 0u;
        }
        for (var u = 0u; u < P.n_group_used; u++) {
            var best = P.n_group;
            for (var g = 0u; g < P.n_group; g++) {
                if (group_kept[g] == 0u && (best == P.n_group || group_score[g] > group_score[best])) {
                    best = g;
                }
            }
            group_kept[best] = 1u;
        }
    }
    let k = P.k;
    let o = t * k;
    for (var r = 0u; r < k; r++) {
        var best = ne;
        var best_s = MASKED;
        for (var i = 0u; i < ne; i++) {
            var taken = false;
            for (var j = 0u; j < r; j++) {
                taken = taken || IDS[o + j] == i;
            }
            if (taken) {
                continue;
            }
            let s = score(base, i, per);
            if (best == ne || s > best_s) {
                best = i;
                best_s = s;
            }
        }
        IDS[o + r] = best;
        WTS[o + r] = Y[base + best];
    }
    if (P.gating == 2u) {
        var m = MASKED;
        for (var r = 0u; r < k; r++) {
            m = max(m, WTS[o + r]);
        }
        var sum = 0.0;
        for (var r = 0u; r < k; r++) {
            let e = exp(WTS[o + r] - m);
            WTS[o + r] = e;
            sum += e;
        }
        for (var r = 0u; r < k; r++) {
            WTS[o + r] *= 1.0 / sum;
        }
    }
    if ((P.flags & 2u) != 0u) {
        var sum = 0.0;
        for (var r = 0u; r < k; r++) {
            sum += WTS[o + r];
        }
        sum = max(sum, 6.103515625e-5);
        for (var r = 0u; r < k; r++) {
            WTS[o + r] /= sum;
        }
    }
    if (P.scale != 0.0 && P.scale != 1.0) {
        for (var r = 0u; r < k; r++) {
            WTS[o + r] *= P.scale;
        }
    }
}

// Y row t = sum over j < k of W[t * k + j] * X row t * k + j, in order of j.
@compute @workgroup_size(256)
fn weighted_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg, 256u);
    if (i >= P.n * P.width) {
        return;
    }
    let t = i / P.width;
    let c = i % P.width;
    var acc = 0.0;
    for (var j = 0u; j < P.k; j++) {
        let r = t * P.k + j;
        acc += W[r] * X[P.x_off + r * P.x_stride + c];
    }
    Y[P.y_off + t * P.y_stride + c] = acc;
}

// Y = 1 / (1 + exp(-Y)) over n elements.
@compute @workgroup_size(256)
fn sigmoid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg, 256u);
    if (i >= P.n) {
        return;
    }
    Y[i] = 1.0 / (1.0 + exp(-Y[i]));
}

// n rows of width from X to Y.
@compute @workgroup_size(256)
fn copy_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg, 256u);
    if (i >= P.n * P.width) {
        return;
    }
    let t = i / P.width;
    let c = i % P.width;
    Y[P.y_off + t * P.y_stride + c] = X[P.x_off + t * P.x_stride + c];
}

// Rows grouped by matrix id for the tiled matmul_id: ORD[0..=width] the first row of each
// matrix's group, ORD[width + 1 ..][..n] the rows in id order, ORD[width + 1 + n + e]
// cursors. One workgroup: counts and placements by atomics (a row's product does not
// depend on where it sits in its group, so the order within one does not matter), the
// prefix sum by one invocation. Ids past the stack (none are made) are left out.
@compute @workgroup_size(256)
fn group_ids(@builtin(local_invocation_index) lid: u32) {
    let ne = P.width;
    let rows = ne + 1u;
    let cur = rows + P.n;
    for (var e = lid; e <= ne; e += 256u) {
        atomicStore(&ORD[e], 0u);
    }
    storageBarrier();
    for (var i = lid; i < P.n; i += 256u) {
        let id = IDS[i];
        if (id < ne) {
            atomicAdd(&ORD[id + 1u], 1u);
        }
    }
    storageBarrier();
    if (lid == 0u) {
        for (var e = 0u; e < ne; e++) {
            let first = atomicLoad(&ORD[e]);
            atomicStore(&ORD[e + 1u], atomicLoad(&ORD[e + 1u]) + first);
            atomicStore(&ORD[cur + e], first);
        }
    }
    storageBarrier();
    for (var i = lid; i < P.n; i += 256u) {
        let id = IDS[i];
        if (id < ne) {
            atomicStore(&ORD[rows + atomicAdd(&ORD[cur + id], 1u)], i);
        }
    }
}
