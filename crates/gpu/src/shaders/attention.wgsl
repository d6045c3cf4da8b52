// Attention over an f16 KV cache (f16 pairs packed in u32 words), head-major:
// [kv_head][slot][dim], position p in slot p % slots. GQA: query head h reads KV head
// h / (n_head / n_kv). Prepended with the cache readers, `KC`/`VC` and `k_pair`/`v_at`:
// attention_kv_u32.wgsl (words unpacked with unpack2x16float, any device) or
// attention_kv_f16.wgsl (the same bytes read as f16, where the device has shader-f16).

struct AttnParams {
    n: u32,          // query tokens (positions start_pos..)
    n_head: u32,
    n_kv: u32,
    dk: u32,
    dv: u32,
    slots: u32,
    start_pos: u32,
    window: u32,     // 0 = unlimited
    scale: f32,
    softcap: f32,    // 0 = off
    q_stride: u32,   // floats between query tokens
    q_off: u32,
    o_stride: u32,   // floats between output tokens
    o_off: u32,
    d: u32,          // kv_store: dims per head of the stored rows
    latent: u32,     // 1: the values are the keys' first dv (VC is KC)
}

@group(0) @binding(0) var<uniform> P: AttnParams;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;
@group(0) @binding(5) var<storage, read_write> C: array<u32>;

// Writes rows Q[q_off + t * q_stride ..][..n_kv * d] (keys or values of tokens at positions
// start_pos + t) into cache C as f16; one thread per pair of elements.
@compute @workgroup_size(256)
fn kv_store(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let hp = P.d / 2u;
    if (i >= P.n * P.n_kv * hp) {
        return;
    }
    let pr = i % hp;
    let h = (i / hp) % P.n_kv;
    let t = i / (hp * P.n_kv);
    let src = P.q_off + t * P.q_stride + h * P.d + 2u * pr;
    let slot = (P.start_pos + t) % P.slots;
    C[(h * P.slots + slot) * hp + pr] = pack2x16float(vec2<f32>(Q[src], Q[src + 1u]));
}

const WG: u32 = 64u;
const MAX_D: u32 = 576u; // DeepSeek's latent rows: 512 + 64
const PER: u32 = 9u; // MAX_D / WG output dims per thread
var<workgroup> qs: array<f32, 576>;
var<workgroup> sc: array<f32, 64>;
var<workgroup> ps: array<f32, 64>;

fn safe_tanh(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

// One workgroup per (token, head): an online softmax over tiles of 64 keys; each thread
// scores one key of a tile, then owns output dims lid, lid + 64, ...
@compute @workgroup_size(64)
fn attend(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let job = wid.x + wid.y * nwg.x;
    if (job >= P.n * P.n_head) {
        return;
    }
    let t = job / P.n_head;
    let h = job % P.n_head;
    let g = h / (P.n_head / P.n_kv);
    let pos = P.start_pos + t;
    var first = 0u;
    if (P.window > 0u && pos + 1u > P.window) {
        first = pos + 1u - P.window;
    }
    let qo = P.q_off + t * P.q_stride + h * P.dk;
    for (var d = lid; d < P.dk; d += WG) {
        qs[d] = Q[qo + d];
    }
    workgroupBarrier();
    let hk = P.dk / 2u;
    // Words between a KV head's rows of values: a latent cache's are its key rows.
    let hv = select(P.dv / 2u, hk, P.latent != 0u);
    var m = -3.0e38;
    var l = 0.0;
    var acc: array<f32, 9>;
    for (var j0 = first; j0 <= pos; j0 += WG) {
        let j = j0 + lid;
        var s = -3.0e38;
        if (j <= pos) {
            let c = (g * P.slots + j % P.slots) * hk;
            var a = 0.0;
            for (var d = 0u; d < hk; d++) {
                let kv = k_pair(c + d);
                a += qs[2u * d] * kv.x + qs[2u * d + 1u] * kv.y;
            }
            s = a * P.scale;
            if (P.softcap != 0.0) {
                s = safe_tanh(s * (1.0 / P.softcap)) * P.softcap;
            }
        }
        sc[lid] = s;
        workgroupBarrier();
        let cnt = min(WG, pos + 1u - j0);
        var mt = m;
        for (var i = 0u; i < cnt; i++) {
            mt = max(mt, sc[i]);
        }
        // Each thread exponentiates its own key once; all read the tile's weights.
        ps[lid] = select(0.0, exp(s - mt), lid < cnt);
        workgroupBarrier();
        let corr = exp(m - mt);
        l *= corr;
        for (var q = 0u; q < PER; q++) {
            acc[q] *= corr;
        }
        for (var i = 0u; i < cnt; i++) {
            let p = ps[i];
            l += p;
            let c = (g * P.slots + (j0 + i) % P.slots) * hv;
            for (var q = 0u; q < PER; q++) {
                let d = lid + q * WG;
                if (d < P.dv) {
                    acc[q] += p * v_at(c, d);
                }
            }
        }
        m = mt;
        workgroupBarrier();
    }
    let oo = P.o_off + t * P.o_stride + h * P.dv;
    for (var q = 0u; q < PER; q++) {
        let d = lid + q * WG;
        if (d < P.dv) {
            O[oo + d] = acc[q] / l;
        }
    }
}
