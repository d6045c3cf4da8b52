// Formats with 256-element super-blocks, read 32 elements (sub-block `j`, 0..7) at a time.
// `base` is the super-block's first byte.

// The 6-bit scale and min `j` (0..7) of Q4_K/Q5_K (ggml's get_scale_min_k4); `sc` is the
// offset of the 12 scale bytes.
fn scale_min_k4(sc: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(rd_u8(sc + j) & 63u), f32(rd_u8(sc + j + 4u) & 63u));
    }
    let a = rd_u8(sc + j + 4u);
    let s = (a & 15u) | ((rd_u8(sc + j - 4u) >> 6u) << 4u);
    let m = (a >> 4u) | ((rd_u8(sc + j) >> 6u) << 4u);
    return vec2<f32>(f32(s), f32(m));
}

// Q4_K, 144 bytes: d, dmin, scales[12], qs[128]; sub-block j takes the low (even j) or high
// nibbles of qs[32 * (j / 2)..][..32]: value = d * sc * q - dmin * m.
fn load_q4_k(base: u32, j: u32) {
    let sm = scale_min_k4(base + 4u, j);
    let d = rd_f16(base) * sm.x;
    let m = rd_f16(base + 2u) * sm.y;
    let shift = (j & 1u) * 4u;
    let q0 = base + 16u + 32u * (j >> 1u);
    for (var i = 0u; i < 8u; i++) {
        let w = W[(q0 >> 2u) + i] >> shift;
        for (var b = 0u; b < 4u; b++) {
            sv[4u * i + b] = d * f32(byte_of(w, b) & 15u) - m;
        }
    }
}

// Q5_K, 176 bytes: d, dmin, scales[12], qh[32], qs[128]: Q4_K's nibbles plus bit j of qh[l].
fn load_q5_k(base: u32, j: u32) {
    let sm = scale_min_k4(base + 4u, j);
    let d = rd_f16(base) * sm.x;
    let m = rd_f16(base + 2u) * sm.y;
    let shift = (j & 1u) * 4u;
    let q0 = base + 48u + 32u * (j >> 1u);
    for (var i = 0u; i < 8u; i++) {
        let w = W[(q0 >> 2u) + i] >> shift;
        let h = W[((base + 16u) >> 2u) + i] >> j;
        for (var b = 0u; b < 4u; b++) {
            let q = (byte_of(w, b) & 15u) | ((byte_of(h, b) & 1u) << 4u);
            sv[4u * i + b] = d * f32(q) - m;
        }
    }
}

// Q6_K, 210 bytes: ql[128], qh[64], scales[16] (i8), d. Sub-block j: half n = j / 4,
// quarter r = j % 4 (ggml's q1..q4): ql[64n + 32(r & 1) + l], nibble r / 2, qh[32n + l] bits
// 2r..2r+1, scale sc[8n + 2r + l / 16].
fn load_q6_k(base: u32, j: u32) {
    let n = j >> 2u;
    let r = j & 3u;
    let d = rd_f16(base + 208u);
    let ql = base + 64u * n + 32u * (r & 1u);
    let qh = base + 128u + 32u * n;
    let lsh = (r >> 1u) * 4u;
    let hsh = 2u * r;
    let s0 = d * rd_i8(base + 192u + 8u * n + 2u * r);
    let s1 = d * rd_i8(base + 192u + 8u * n + 2u * r + 1u);
    for (var i = 0u; i < 8u; i++) {
        let w = rd_u32(ql + 4u * i) >> lsh;
        let h = rd_u32(qh + 4u * i) >> hsh;
        let s = select(s1, s0, i < 4u);
        for (var b = 0u; b < 4u; b++) {
            let q = (byte_of(w, b) & 15u) | ((byte_of(h, b) & 3u) << 4u);
            sv[4u * i + b] = s * (f32(q) - 32.0);
        }
    }
}

// The 6-bit signed scale `g` (0..15) of Q3_K: low nibble from scales[g % 8] (high nibble for
// g >= 8), two high bits from scales[8 + g % 4] at 2 * (g / 4); minus 32.
fn q3_k_scale(sc: u32, g: u32) -> f32 {
    let lo = select(rd_u8(sc + g - 8u) >> 4u, rd_u8(sc + g) & 15u, g < 8u);
    let hi = (rd_u8(sc + 8u + (g & 3u)) >> (2u * (g >> 2u))) & 3u;
    return f32(lo | (hi << 4u)) - 32.0;
}

// Q3_K, 110 bytes: hmask[32], qs[64], scales[12], d. Element 32j + l: two bits of
// qs[32 (j / 4) + l] at 2 (j % 4), minus 4 unless bit j of hmask[l] is set.
fn load_q3_k(base: u32, j: u32) {
    let d = rd_f16(base + 108u);
    let s0 = d * q3_k_scale(base + 96u, 2u * j);
    let s1 = d * q3_k_scale(base + 96u, 2u * j + 1u);
    let q0 = base + 32u + 32u * (j >> 2u);
    let sh = 2u * (j & 3u);
    for (var i = 0u; i < 8u; i++) {
        let w = rd_u32(q0 + 4u * i) >> sh;
        let h = rd_u32(base + 4u * i) >> j;
        let s = select(s1, s0, i < 4u);
        for (var b = 0u; b < 4u; b++) {
            let q = f32(byte_of(w, b) & 3u) - select(4.0, 0.0, (byte_of(h, b) & 1u) != 0u);
            sv[4u * i + b] = s * q;
        }
    }
}

// Q2_K, 84 bytes: scales[16] (scale | min << 4), qs[64], d, dmin. Element 32j + l: two bits
// of qs[32 (j / 4) + l] at 2 (j % 4); value = d * sc * q - dmin * m.
fn load_q2_k(base: u32, j: u32) {
    let d = rd_f16(base + 80u);
    let dmin = rd_f16(base + 82u);
    let a = rd_u8(base + 2u * j);
    let b1 = rd_u8(base + 2u * j + 1u);
    let d0 = d * f32(a & 15u);
    let m0 = dmin * f32(a >> 4u);
    let d1 = d * f32(b1 & 15u);
    let m1 = dmin * f32(b1 >> 4u);
    let q0 = base + 16u + 32u * (j >> 2u);
    let sh = 2u * (j & 3u);
    for (var i = 0u; i < 8u; i++) {
        let w = W[(q0 >> 2u) + i] >> sh;
        let dd = select(d1, d0, i < 4u);
        let mm = select(m1, m0, i < 4u);
        for (var b = 0u; b < 4u; b++) {
            sv[4u * i + b] = dd * f32(byte_of(w, b) & 3u) - mm;
        }
    }
}

// IQ4_XS, 136 bytes: d, scales_h (u16), scales_l[4], qs[128]: group j's 6-bit scale minus
// 32, codes qs[16j..][..16] low nibbles then high nibbles, through KVALUES.
fn load_iq4_xs(base: u32, j: u32) {
    let lo = (rd_u8(base + 4u + (j >> 1u)) >> (4u * (j & 1u))) & 15u;
    let hi = (rd_u16(base + 2u) >> (2u * j)) & 3u;
    let dl = rd_f16(base) * (f32(lo | (hi << 4u)) - 32.0);
    let q0 = base + 8u + 16u * j;
    for (var i = 0u; i < 4u; i++) {
        let w = W[(q0 >> 2u) + i];
        for (var b = 0u; b < 4u; b++) {
            let q = byte_of(w, b);
            sv[4u * i + b] = dl * KVALUES_IQ4NL[q & 15u];
            sv[4u * i + b + 16u] = dl * KVALUES_IQ4NL[q >> 4u];
        }
    }
}

// TQ2_0, 66 bytes: qs[64], d. Element 32j + l: bit pair j % 4 of qs[32 (j / 4) + l], a code
// 0..2 for -1, 0, +1, times d.
fn load_tq2_0(base: u32, j: u32) {
    let d = rd_f16(base + 64u);
    let q0 = base + 32u * (j >> 2u);
    let sh = 2u * (j & 3u);
    for (var i = 0u; i < 8u; i++) {
        let w = rd_u32(q0 + 4u * i) >> sh;
        for (var b = 0u; b < 4u; b++) {
            sv[4u * i + b] = (f32(byte_of(w, b) & 3u) - 1.0) * d;
        }
    }
}

// Trit n (0..4) of a TQ1_0 byte: the top two bits of (byte * 3^n mod 256) * 3.
fn trit(byte: u32, n: u32) -> f32 {
    var p = 1u;
    for (var i = 0u; i < n; i++) {
        p *= 3u;
    }
    return f32((((byte * p) & 0xffu) * 3u) >> 8u);
}

// TQ1_0, 54 bytes: 5 trits per byte in qs[0..32] (element n*32 + m at byte m, trit n) and
// qs[32..48] (element 160 + n*16 + m), 4 per byte in qh[48..52] (element 240 + n*4 + j),
// then d: value (trit - 1) * d.
fn load_tq1_0(base: u32, j: u32) {
    let d = rd_f16(base + 52u);
    for (var l = 0u; l < 32u; l++) {
        let e = 32u * j + l;
        var t = 0.0;
        if (e < 160u) {
            t = trit(rd_u8(base + l), j);
        } else if (e < 240u) {
            t = trit(rd_u8(base + 32u + (e - 160u) % 16u), (e - 160u) / 16u);
        } else {
            t = trit(rd_u8(base + 48u + (e - 240u) % 4u), (e - 240u) / 4u);
        }
        sv[l] = (t - 1.0) * d;
    }
}
