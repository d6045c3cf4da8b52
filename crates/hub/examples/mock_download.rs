//! Shows the download progress bar and resume messages against a slow mock hub that cuts the
//! connection once: `cargo run -p torchless-hub --features mock --example mock_download` in a terminal.

use std::time::Duration;

use hub::mock::{content, Behaviour, MockFile, MockHub, MockRepo, TempDir};
use hub::{Hub, HubConfig};

fn main() {
    let size = 8 << 20;
    let repo = MockRepo::new(
        "demo/slow-GGUF",
        vec![MockFile::lfs("slow-Q4_K_M.gguf", content(size, 1))],
    );
    let behaviour = Behaviour {
        cuts: 1,
        cut_after: size / 3,
        chunk_delay: Some(Duration::from_micros(800)),
        ..Default::default()
    };
    let mock = MockHub::start(vec![repo], behaviour);
    let dir = TempDir::new("mock-download");
    let mut cfg = HubConfig::isolated(mock.url(), dir.path());
    cfg.progress = true;
    match Hub::new(cfg).download("demo/slow-GGUF", "slow-Q4_K_M.gguf", "main") {
        Ok(p) => println!("{}", p.display()),
        Err(e) => eprintln!("error: {e}"),
    }
}
