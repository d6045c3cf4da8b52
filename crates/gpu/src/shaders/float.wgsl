// Float formats (block of one element): sub-block `s` is elements 32s..32s+31 of the row at
// byte `rb`; elements at or past `k` read as zero.

fn load_f32(rb: u32, s: u32, k: u32) {
    for (var i = 0u; i < 32u; i++) {
        let e = 32u * s + i;
        sv[i] = select(0.0, bitcast<f32>(W[(rb >> 2u) + e]), e < k);
    }
}

fn load_f16(rb: u32, s: u32, k: u32) {
    for (var i = 0u; i < 32u; i++) {
        let e = 32u * s + i;
        sv[i] = select(0.0, rd_f16(rb + 2u * e), e < k);
    }
}

fn load_bf16(rb: u32, s: u32, k: u32) {
    for (var i = 0u; i < 32u; i++) {
        let e = 32u * s + i;
        sv[i] = select(0.0, bitcast<f32>(rd_u16(rb + 2u * e) << 16u), e < k);
    }
}
