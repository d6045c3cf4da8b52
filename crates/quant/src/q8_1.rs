//! Placeholder: being written.

pub fn dequantize(_src: &[u8], _dst: &mut [f32]) {
    unimplemented!()
}

pub fn quantize(_src: &[f32], _dst: &mut [u8]) {
    unimplemented!()
}
