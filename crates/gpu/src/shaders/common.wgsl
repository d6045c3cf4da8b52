// Shared by every matrix kernel: the weight bytes (one binding of whole rows, as u32 words
// because WGSL has no byte type), the 32 decoded values of the current sub-block, and byte
// readers. Block fields of every format sit at even offsets, so f16 fields are one aligned
// half of a word.

struct MatParams {
    rows: u32,       // weight rows in this binding
    k: u32,          // elements per row
    n: u32,          // activation rows (tokens)
    row_bytes: u32,  // bytes per weight row
    x_stride: u32,   // floats between activation rows
    y_stride: u32,   // floats between output rows
    y_off: u32,      // first output column (row offset of this binding in the whole matrix)
    x_off: u32,      // first activation float
    // matvec_id only: output rows per input row, the first matrix of the stack in this
    // binding and how many it holds, the first output row of this dispatch.
    per: u32,
    e0: u32,
    ne: u32,
    i0: u32,
}

@group(0) @binding(0) var<uniform> P: MatParams;
@group(0) @binding(1) var<storage, read> W: array<u32>;

var<private> sv: array<f32, 32>;

fn rd_u8(o: u32) -> u32 {
    return (W[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu;
}

// `o` even.
fn rd_u16(o: u32) -> u32 {
    return (W[o >> 2u] >> ((o & 2u) * 8u)) & 0xffffu;
}

fn rd_u32(o: u32) -> u32 {
    let s = (o & 3u) * 8u;
    let lo = W[o >> 2u];
    if (s == 0u) {
        return lo;
    }
    return (lo >> s) | (W[(o >> 2u) + 1u] << (32u - s));
}

fn rd_f16(o: u32) -> f32 {
    return unpack2x16float(rd_u16(o)).x;
}

fn rd_i8(o: u32) -> f32 {
    return f32(bitcast<i32>(rd_u8(o) << 24u) >> 24u);
}

// Byte `i` (0..3) of word `w`.
fn byte_of(w: u32, i: u32) -> u32 {
    return (w >> (i * 8u)) & 0xffu;
}

var<private> KVALUES_IQ4NL: array<f32, 16> = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                    1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
