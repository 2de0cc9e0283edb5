fn main() -> std::process::ExitCode {
    fusec::cli::run()
}
