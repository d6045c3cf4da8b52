//! Greedy generation on the GPU, next to the CPU backend: the adapter, upload time, prefill
//! and decode speed, and both continuations.
//!
//! `cargo run --release -p torchless-gpu --example greedy -- MODEL.gguf "prompt" [TOKENS]`

use std::sync::Arc;
use std::time::Instant;

use gpu::{BackendKind, GpuDevice, GpuModel};
use models::{KvDtype, Model};

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, prompt, rest @ ..] = &args[..] else {
        return Err("usage: greedy MODEL.gguf PROMPT [TOKENS]".into());
    };
    let n: usize = rest.first().map_or(Ok(16), |s| s.parse())?;
    let file = Arc::new(gguf::GgufFile::open(path)?);
    let tok = tokenizer::Tokenizer::from_gguf(file.metadata())?;
    let model = Model::load(file)?;
    let ids = tok.encode(prompt, true, false)?;

    let dev = GpuDevice::open(BackendKind::Any)?;
    eprintln!("adapter: {}", dev.adapter());
    let t = Instant::now();
    let g = GpuModel::load(&model, dev)?;
    eprintln!(
        "upload: {:.2?}, {} MiB on the device",
        t.elapsed(),
        g.device_bytes() >> 20
    );

    let mut gs = g.new_state(ids.len() + n)?;
    let mut cs = model.new_state(ids.len() + n, KvDtype::F16);
    let (mut gout, mut cout) = (Vec::new(), Vec::new());
    let t = Instant::now();
    let mut gl = g.forward(&mut gs, &ids, 0, false)?;
    eprintln!("gpu prefill {} tokens: {:.2?}", ids.len(), t.elapsed());
    let t = Instant::now();
    for k in 0..n {
        let next = argmax(&gl);
        gout.push(next);
        gl = g.forward(&mut gs, &[next], ids.len() + k, false)?;
    }
    eprintln!("gpu decode: {:.2?}/token", t.elapsed() / n.max(1) as u32);
    let mut cl = model.forward(&mut cs, &ids, 0, false)?;
    for k in 0..n {
        let next = argmax(&cl);
        cout.push(next);
        cl = model.forward(&mut cs, &[next], ids.len() + k, false)?;
    }
    println!("gpu: {}", tok.decode(&gout, false)?);
    println!("cpu: {}", tok.decode(&cout, false)?);
    Ok(())
}
