fn main() {
    let path = std::env::args().nth(1).unwrap();
    let unit = std::env::args().nth(2).unwrap();
    let mb: usize = std::env::args().nth(3).unwrap().parse().unwrap();
    let f = gguf::GgufFile::open(path).unwrap();
    let tok = tokenizer::Tokenizer::from_gguf(f.metadata()).unwrap();
    let text = unit.repeat(mb * 1_000_000 / unit.len());
    let t = std::time::Instant::now();
    let n = tok.encode(&text, false, false).unwrap().len();
    eprintln!("{n} tokens in {:?}", t.elapsed());
}
