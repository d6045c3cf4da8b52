// The KV cache as u32 words of two f16 (WGSL without the f16 extension).
@group(0) @binding(2) var<storage, read> KC: array<u32>;
@group(0) @binding(3) var<storage, read> VC: array<u32>;

// Key elements 2i, 2i + 1 of the cache, `i` in words.
fn k_pair(i: u32) -> vec2<f32> {
    return unpack2x16float(KC[i]);
}

// Value element `d` of the row starting at word `w`.
fn v_at(w: u32, d: u32) -> f32 {
    return unpack2x16float(VC[w + (d >> 1u)])[d & 1u];
}
