// Formats with 32-element blocks: one block is one sub-block. `base` is the block's first
// byte; each function writes the 32 values into `sv` as ggml's dequantize does.

// Q4_0, 18 bytes: d (f16), qs[16]: element j = (qs[j] & 15) - 8, j + 16 = (qs[j] >> 4) - 8.
fn load_q4_0(base: u32) {
    let d = rd_f16(base);
    for (var i = 0u; i < 4u; i++) {
        let w = rd_u32(base + 2u + 4u * i);
        for (var b = 0u; b < 4u; b++) {
            let q = byte_of(w, b);
            sv[4u * i + b] = (f32(q & 15u) - 8.0) * d;
            sv[4u * i + b + 16u] = (f32(q >> 4u) - 8.0) * d;
        }
    }
}

// Q4_1, 20 bytes: d, m (f16), qs[16]: value = q * d + m.
fn load_q4_1(base: u32) {
    let d = rd_f16(base);
    let m = rd_f16(base + 2u);
    for (var i = 0u; i < 4u; i++) {
        let w = rd_u32(base + 4u + 4u * i);
        for (var b = 0u; b < 4u; b++) {
            let q = byte_of(w, b);
            sv[4u * i + b] = f32(q & 15u) * d + m;
            sv[4u * i + b + 16u] = f32(q >> 4u) * d + m;
        }
    }
}

// Q5_0, 22 bytes: d, qh (32 fifth bits), qs[16]: value = (q | h << 4) - 16, times d.
fn load_q5_0(base: u32) {
    let d = rd_f16(base);
    let qh = rd_u32(base + 2u);
    for (var i = 0u; i < 4u; i++) {
        let w = rd_u32(base + 6u + 4u * i);
        for (var b = 0u; b < 4u; b++) {
            let j = 4u * i + b;
            let q = byte_of(w, b);
            let h0 = ((qh >> j) << 4u) & 0x10u;
            let h1 = (qh >> (j + 12u)) & 0x10u;
            sv[j] = (f32((q & 15u) | h0) - 16.0) * d;
            sv[j + 16u] = (f32((q >> 4u) | h1) - 16.0) * d;
        }
    }
}

// Q5_1, 24 bytes: d, m, qh, qs[16]: value = (q | h << 4) * d + m.
fn load_q5_1(base: u32) {
    let d = rd_f16(base);
    let m = rd_f16(base + 2u);
    let qh = rd_u32(base + 4u);
    for (var i = 0u; i < 4u; i++) {
        let w = rd_u32(base + 8u + 4u * i);
        for (var b = 0u; b < 4u; b++) {
            let j = 4u * i + b;
            let q = byte_of(w, b);
            let h0 = ((qh >> j) << 4u) & 0x10u;
            let h1 = (qh >> (j + 12u)) & 0x10u;
            sv[j] = f32((q & 15u) | h0) * d + m;
            sv[j + 16u] = f32((q >> 4u) | h1) * d + m;
        }
    }
}

// Q8_0, 34 bytes: d, qs[32] (i8).
fn load_q8_0(base: u32) {
    let d = rd_f16(base);
    for (var i = 0u; i < 8u; i++) {
        let w = rd_u32(base + 2u + 4u * i);
        for (var b = 0u; b < 4u; b++) {
            sv[4u * i + b] = f32(bitcast<i32>(byte_of(w, b) << 24u) >> 24u) * d;
        }
    }
}

// IQ4_NL, 18 bytes: d, qs[16]: value = d * KVALUES[code].
fn load_iq4_nl(base: u32) {
    let d = rd_f16(base);
    for (var i = 0u; i < 4u; i++) {
        let w = rd_u32(base + 2u + 4u * i);
        for (var b = 0u; b < 4u; b++) {
            let q = byte_of(w, b);
            sv[4u * i + b] = d * KVALUES_IQ4NL[q & 15u];
            sv[4u * i + b + 16u] = d * KVALUES_IQ4NL[q >> 4u];
        }
    }
}
