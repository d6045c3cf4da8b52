//! Placeholder: being written.

pub fn dequantize(_src: &[u8], _dst: &mut [f32]) {
    unimplemented!()
}

pub fn quantize(_src: &[f32], _dst: &mut [u8]) {
    unimplemented!()
}

pub fn vec_dot(_n: usize, _w: &[u8], _x: &[u8]) -> f32 {
    unimplemented!()
}
