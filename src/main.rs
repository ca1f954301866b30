//! The `sockbench` binary: everything lives in the library.

fn main() {
    std::process::exit(sockbench::main_with_args(std::env::args_os()));
}
