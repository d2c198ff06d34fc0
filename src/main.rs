use clap::Parser;

fn main() -> std::process::ExitCode {
    floatip::cli::Cli::parse().run()
}
