// The KV cache read as f16 (compiled only where the device has shader-f16): the same bytes
// as attention_kv_u32.wgsl's words, loaded as f16 vectors and widened, with no unpacking or
// dynamic lane select per value.
enable f16;

@group(0) @binding(2) var<storage, read> KC: array<vec2<f16>>;
@group(0) @binding(3) var<storage, read> VC: array<f16>;

fn k_pair(i: u32) -> vec2<f32> {
    return vec2<f32>(KC[i]);
}

fn v_at(w: u32, d: u32) -> f32 {
    return f32(VC[2u * w + d]);
}
