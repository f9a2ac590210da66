fn main() {
    std::process::exit(peapod::cli::main());
}
