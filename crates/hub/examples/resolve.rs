//! Prints the local path `hub::resolve_model` gives for a MODEL argument (none: the default
//! model), downloading as needed: `cargo run -p torchless-hub --example resolve -- [MODEL]`.

fn main() -> std::process::ExitCode {
    let spec = std::env::args().nth(1);
    match hub::resolve_model(spec.as_deref()) {
        Ok(path) => {
            println!("{}", path.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
