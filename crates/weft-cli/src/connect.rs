pub(crate) async fn run(_a: ConnectArgs) -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
#[derive(Debug, clap::Args)]
pub(crate) struct ConnectArgs {
    url: String,
}
