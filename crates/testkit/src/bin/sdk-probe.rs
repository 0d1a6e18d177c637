//! A program for task containers: asks STS who it is with the official AWS SDK for Rust
//! and its default credential chain, unchanged, and prints the caller's ARN. In a task
//! with a task role the chain finds `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` and fetches
//! the role's credentials from `169.254.170.2`, as every SDK does on ECS; the endpoint
//! and region come from `AWS_ENDPOINT_URL` and `AWS_REGION` in the task definition.
//! Tests run it in a container (`testkit::images::sdk_probe_image`).

use std::process::ExitCode;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sts = aws_sdk_sts::Client::new(&config);
    // The task endpoint may learn the task's credentials a moment after the container
    // starts; a real application would retry as well.
    let mut last = String::new();
    for _ in 0..50 {
        match sts.get_caller_identity().send().await {
            Ok(me) => {
                #[allow(clippy::print_stdout)]
                {
                    println!("{}", me.arn().unwrap_or_default());
                }
                return ExitCode::SUCCESS;
            }
            Err(e) => last = aws_sdk_sts::error::DisplayErrorContext(&e).to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("sdk-probe: GetCallerIdentity failed: {last}");
    ExitCode::FAILURE
}
