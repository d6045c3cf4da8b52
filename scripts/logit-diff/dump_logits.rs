//! dump_logits MODEL TOKENS.txt OUT.bin [f16|f32]
use std::io::Write;
use std::sync::Arc;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut file = gguf::GgufFile::open(&a[1]).unwrap();
    file.load_into_memory(|_, _| {}).unwrap();
    let model = models::Model::load(Arc::new(file)).unwrap();
    let toks: Vec<u32> = std::fs::read_to_string(&a[2]).unwrap().split_whitespace().map(|t| t.parse().unwrap()).collect();
    let kv = if a.get(4).map(|s| s.as_str()) == Some("f32") { models::KvDtype::F32 } else { models::KvDtype::F16 };
    let mut st = model.new_state(toks.len(), kv);
    struct Dump;
    impl models::ActivationObserver for Dump {
        fn observe(&mut self, i: models::MatmulInput<'_>) {
            let name = match i.expert { Some((e, _)) => format!("{}.e{e}", i.weight), None => i.weight.to_string() };
            let mut o = std::fs::File::create(format!("{}/{name}.bin", std::env::var("ODIR").unwrap_or("/tmp/pp/ours".into()))).unwrap();
            for x in &i.rows[..] { o.write_all(&x.to_le_bytes()).unwrap(); }
        }
    }
    if std::env::var("DUMP").is_ok() { st.set_observer(Some(Box::new(Dump))); }
    let mut o = std::fs::File::create(&a[3]).unwrap();
    if std::env::var("SEQ").is_ok() {
        for (i, t) in toks.iter().enumerate() {
            std::env::set_var("ODIR", format!("/tmp/pp/oseq/{i}"));
            std::fs::create_dir_all(format!("/tmp/pp/oseq/{i}")).unwrap();
            let l = model.forward(&mut st, &[*t], i, false).unwrap();
            for x in l { o.write_all(&x.to_le_bytes()).unwrap(); }
        }
        return;
    }
    let l = model.forward(&mut st, &toks, 0, true).unwrap();
    for x in l { o.write_all(&x.to_le_bytes()).unwrap(); }
}
