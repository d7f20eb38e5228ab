//! The `tsunagu` command.

fn main() -> std::process::ExitCode {
    tsunagu_server::cli::main()
}
