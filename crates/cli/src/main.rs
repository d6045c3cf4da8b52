fn main() {
    println!("torchless");
}
