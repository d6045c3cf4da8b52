//! Reproducible noise for the synthetic-model examples.

/// xorshift64*: fast, reproducible, and good enough for weights nobody reads as text.
pub struct Noise(pub u64);

impl Noise {
    /// Roughly N(0, std^2) from the sum of four uniforms, so activations stay finite.
    pub fn next(&mut self, std: f32) -> f32 {
        let mut s = 0.0f32;
        for _ in 0..4 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let u = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32;
            s += u - 0.5;
        }
        // The sum of four U(-0.5, 0.5) has variance 1/3.
        s * std * 3f32.sqrt()
    }
}
