fn main() {
    std::process::exit(lxc_snap::main_with_exit_code());
}
