//! The server's text log: what a caller sends cannot forge a line of it.

use std::time::Duration;

use crate::berth;

/// A whole log line, as the text format writes one, after a newline.
const FORGED: &str = "2026-01-01T00:00:00Z  INFO forged line";

#[tokio::test]
async fn a_newline_in_a_request_member_does_not_start_a_log_line() {
    let b = berth().await;
    let ecs = b.ecs().await;
    let err = ecs.describe_task_definition().task_definition(format!("web:1\n{FORGED}")).send().await.unwrap_err();
    assert_eq!(testkit::error_code(&err), "ClientException");
    // The query protocol (ELBv2) logs its refusals too.
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&b.sdk_config(&b.key, "us-east-1").await);
    elb.describe_target_groups().names(format!("web\r\n{FORGED}")).send().await.unwrap_err();

    let log = b.data_dir().join("server.log");
    let escaped = format!("\\n{FORGED}");
    // Refusals are logged as they are answered; the file may lag the answer a little.
    let logged = testkit::eventually(Duration::from_secs(10), || {
        let found = std::fs::read_to_string(&log).unwrap_or_default().matches(&escaped).count();
        async move { found >= 2 }
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(logged, "the log does not hold the member, escaped, twice:\n{text}");
    for line in text.lines() {
        assert!(!line.starts_with(FORGED), "a caller forged a log line:\n{text}");
    }
    assert!(text.contains(&format!("web\\r\\n{FORGED}")), "{text}");
}
