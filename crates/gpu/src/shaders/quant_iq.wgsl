// The grid formats (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M): 256-element
// super-blocks read 32 elements (sub-block `j`, 0..7) at a time, `base` the super-block's
// first byte. Each value comes from a lattice grid, ggml's own table uploaded once from
// `quant` (`kernels::grid_words`): two words per 8-value entry (IQ2, IQ1: bytes 0..3 in the
// first word), one word per 4-value entry (IQ3). Values as ggml's `dequantize_row_iq*`:
// `((d * ls) * factor) * grid`, the sign applied last; IQ1: `(d * ls) * (grid + delta)`.

@group(0) @binding(5) var<storage, read> GRID: array<u32>;

// ggml's `ksigns_iq2xs`: 7 stored sign bits and an 8th making the count of negatives even.
fn ksign(i: u32) -> u32 {
    return i | ((countOneBits(i) & 1u) << 7u);
}

// Four unsigned grid bytes of word `w` scaled by `db`, signs bits `sh..sh + 3` of `s`, into
// sv[o..o + 4].
fn put4(w: u32, s: u32, sh: u32, db: f32, o: u32) {
    for (var b = 0u; b < 4u; b++) {
        let x = db * f32(byte_of(w, b));
        sv[o + b] = select(x, -x, ((s >> (sh + b)) & 1u) != 0u);
    }
}

// Group `l` (8 values at sv[8l..]) from 8-value entry `g` with sign byte `s`.
fn put_grid8(g: u32, s: u32, db: f32, l: u32) {
    put4(GRID[2u * g], s, 0u, db, 8u * l);
    put4(GRID[2u * g + 1u], s, 4u, db, 8u * l + 4u);
}

// Group `l` from two 4-value entries (IQ3).
fn put_grid4x2(lo: u32, hi: u32, s: u32, db: f32, l: u32) {
    put4(GRID[lo], s, 0u, db, 8u * l);
    put4(GRID[hi], s, 4u, db, 8u * l + 4u);
}

// IQ2_XXS, 66 bytes: d, then per sub-block two words: four 8-bit grid indices; four 7-bit
// sign indices and the 4-bit scale (top nibble). Factor 1/8.
fn load_iq2_xxs(base: u32, j: u32) {
    let idx = rd_u32(base + 2u + 8u * j);
    let sg = rd_u32(base + 6u + 8u * j);
    let db = rd_f16(base) * f32(2u * (sg >> 28u) + 1u) * 0.125;
    for (var l = 0u; l < 4u; l++) {
        put_grid8(byte_of(idx, l), ksign((sg >> (7u * l)) & 127u), db, l);
    }
}

// IQ2_XS, 74 bytes: d, qs[32] (u16: 9-bit grid index, 7-bit sign index), scales[8] (a nibble
// per half sub-block). Factor 1/8.
fn load_iq2_xs(base: u32, j: u32) {
    let d = rd_f16(base);
    let sc = rd_u8(base + 66u + j);
    for (var l = 0u; l < 4u; l++) {
        let q = rd_u16(base + 2u + 2u * (4u * j + l));
        let ls = (sc >> (4u * (l >> 1u))) & 15u;
        let db = d * f32(2u * ls + 1u) * 0.125;
        put_grid8(q & 511u, ksign(q >> 9u), db, l);
    }
}

// IQ2_S, 82 bytes: d, qs[32] (low 8 index bits), signs[32], qh[8] (2 high bits per group),
// scales[8]. Factor 1/8.
fn load_iq2_s(base: u32, j: u32) {
    let d = rd_f16(base);
    let qh = rd_u8(base + 66u + j);
    let sc = rd_u8(base + 74u + j);
    for (var l = 0u; l < 4u; l++) {
        let g = rd_u8(base + 2u + 4u * j + l) | ((qh << (8u - 2u * l)) & 0x300u);
        let ls = (sc >> (4u * (l >> 1u))) & 15u;
        let db = d * f32(2u * ls + 1u) * 0.125;
        put_grid8(g, rd_u8(base + 34u + 4u * j + l), db, l);
    }
}

// IQ3_XXS, 98 bytes: d, qs[64] (8-bit indices into the 4-value grid), then a word per
// sub-block: four 7-bit sign indices and the 4-bit scale. Factor 1/4.
fn load_iq3_xxs(base: u32, j: u32) {
    let sg = rd_u32(base + 66u + 4u * j);
    let db = rd_f16(base) * f32(2u * (sg >> 28u) + 1u) * 0.25;
    let q = base + 2u + 8u * j;
    for (var l = 0u; l < 4u; l++) {
        let lo = rd_u8(q + 2u * l);
        let hi = rd_u8(q + 2u * l + 1u);
        put_grid4x2(lo, hi, ksign((sg >> (7u * l)) & 127u), db, l);
    }
}

// IQ3_S, 110 bytes: d, qs[64] (low 8 index bits), qh[8] (the 9th bits), signs[32],
// scales[4] (a nibble per sub-block). Factor 1.
fn load_iq3_s(base: u32, j: u32) {
    let qh = rd_u8(base + 66u + j);
    let ls = (rd_u8(base + 106u + (j >> 1u)) >> (4u * (j & 1u))) & 15u;
    let db = rd_f16(base) * f32(2u * ls + 1u);
    let q = base + 2u + 8u * j;
    for (var l = 0u; l < 4u; l++) {
        let lo = rd_u8(q + 2u * l) | ((qh << (8u - 2u * l)) & 256u);
        let hi = rd_u8(q + 2u * l + 1u) | ((qh << (7u - 2u * l)) & 256u);
        put_grid4x2(lo, hi, rd_u8(base + 74u + 4u * j + l), db, l);
    }
}

// Group `l` of an IQ1 type: 8 signed grid bytes of entry `g`, `(dl * (v + delta))`.
fn put_ternary(g: u32, dl: f32, delta: f32, l: u32) {
    for (var h = 0u; h < 2u; h++) {
        let w = GRID[2u * g + h];
        for (var b = 0u; b < 4u; b++) {
            let v = f32(bitcast<i32>(byte_of(w, b) << 24u) >> 24u);
            sv[8u * l + 4u * h + b] = dl * (v + delta);
        }
    }
}

// IQ1_S, 50 bytes: d, qs[32] (low 8 bits of an 11-bit index per group), qh[8] (u16 per
// sub-block: 3 high bits per group, the 3-bit scale at 12, the delta's sign at 15).
fn load_iq1_s(base: u32, j: u32) {
    let qh = rd_u16(base + 34u + 2u * j);
    let dl = rd_f16(base) * f32(2u * ((qh >> 12u) & 7u) + 1u);
    let delta = select(0.125, -0.125, (qh & 0x8000u) != 0u);
    for (var l = 0u; l < 4u; l++) {
        let g = rd_u8(base + 2u + 4u * j + l) | (((qh >> (3u * l)) & 7u) << 8u);
        put_ternary(g, dl, delta, l);
    }
}

// IQ1_M, 56 bytes: qs[32] (low index bits), qh[16] (a nibble per group: 3 high index bits,
// the delta's sign), four u16 of 3-bit half-sub-block scales with d's f16 bits in their top
// nibbles.
fn load_iq1_m(base: u32, j: u32) {
    let s0 = rd_u16(base + 48u);
    let s1 = rd_u16(base + 50u);
    let s2 = rd_u16(base + 52u);
    let s3 = rd_u16(base + 54u);
    let dbits = (s0 >> 12u) | ((s1 >> 8u) & 0xf0u) | ((s2 >> 4u) & 0xf00u) | (s3 & 0xf000u);
    let d = unpack2x16float(dbits).x;
    let sc = rd_u16(base + 48u + 2u * (j >> 1u));
    let shift = 6u * (j & 1u);
    for (var l = 0u; l < 4u; l++) {
        let nib = (rd_u8(base + 32u + 2u * j + (l >> 1u)) >> (4u * (l & 1u))) & 15u;
        let g = rd_u8(base + 4u * j + l) | ((nib & 7u) << 8u);
        let ls = (sc >> (shift + 3u * (l >> 1u))) & 7u;
        let delta = select(0.125, -0.125, (nib & 8u) != 0u);
        put_ternary(g, d * f32(2u * ls + 1u), delta, l);
    }
}
