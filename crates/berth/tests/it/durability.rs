//! Durability: every acknowledged write survives `kill -9`, and SIGTERM shuts down cleanly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::types::ContainerDefinition;

use crate::berth;

pub fn container() -> ContainerDefinition {
    ContainerDefinition::builder().name("web").image("simplehttp:latest").memory(64).build()
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_at_any_moment() {
    let mut b = berth().await;
    writes_survive_kill_9(&mut b).await;
}

/// Writers hammer `b`, which is killed with SIGKILL mid-flight and restarted: every
/// acknowledged write must be there, and revision numbers continue without reuse. Shared
/// by every store (SQLite here, PostgreSQL in `postgres.rs`).
pub async fn writes_survive_kill_9(b: &mut testkit::Berth) {
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("before").send().await.unwrap();

    // Writers hammer the server; it is killed while they are mid-flight. Every write that
    // was acknowledged must be there after the restart.
    let acked: Arc<Mutex<BTreeMap<String, Vec<i32>>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..8 {
        let ecs = ecs.clone();
        let acked = acked.clone();
        let count = count.clone();
        writers.push(tokio::spawn(async move {
            let family = format!("fam{w}");
            loop {
                match ecs.register_task_definition().family(&family).container_definitions(container()).send().await {
                    Ok(r) => {
                        let rev = r.task_definition().unwrap().revision();
                        acked.lock().unwrap().entry(family.clone()).or_default().push(rev);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        eprintln!(
                            "writer {w} stopped (expected once the server is killed): {}",
                            aws_sdk_ecs::error::DisplayErrorContext(&e)
                        );
                        break;
                    }
                }
            }
        }));
    }
    assert!(
        testkit::eventually(Duration::from_secs(30), || {
            let n = count.load(Ordering::SeqCst);
            async move { n >= 200 }
        })
        .await,
        "writes did not progress"
    );
    b.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    b.restart().await;
    let ecs = b.ecs().await;
    let d = ecs.describe_clusters().clusters("before").send().await.unwrap();
    assert_eq!(d.clusters().len(), 1);
    let mut total = 0;
    for (family, revisions) in &acked {
        let max = *revisions.iter().max().unwrap();
        // Revisions are handed out in order, so every acknowledged one is at most `max`
        // and all of 1..=max must be present.
        let listed = ecs.list_task_definitions().family_prefix(family).max_results(100).send().await.unwrap();
        let mut arns: Vec<String> = listed.task_definition_arns().to_vec();
        let mut token = listed.next_token().map(str::to_string);
        while let Some(t) = token {
            let page = ecs.list_task_definitions().family_prefix(family).next_token(t).send().await.unwrap();
            arns.extend(page.task_definition_arns().iter().cloned());
            token = page.next_token().map(str::to_string);
        }
        for rev in revisions {
            assert!(
                arns.iter().any(|a| a.ends_with(&format!("/{family}:{rev}"))),
                "{family}:{rev} was acknowledged but is gone"
            );
        }
        assert!(arns.len() as i32 >= max, "{family}: holes below the highest acknowledged revision");
        total += revisions.len();
        // The next revision continues after everything stored, never reusing a number.
        let next =
            ecs.register_task_definition().family(family).container_definitions(container()).send().await.unwrap();
        assert_eq!(next.task_definition().unwrap().revision(), arns.len() as i32 + 1);
    }
    assert!(total >= 200);
}

#[tokio::test]
async fn state_is_rebuilt_after_restart() {
    let mut b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    ecs.register_task_definition().family("web").container_definitions(container()).send().await.unwrap();
    ecs.register_task_definition().family("web").container_definitions(container()).send().await.unwrap();
    ecs.deregister_task_definition().task_definition("web:1").send().await.unwrap();
    ecs.put_account_setting_default()
        .name(aws_sdk_ecs::types::SettingName::ContainerInsights)
        .value("enabled")
        .send()
        .await
        .unwrap();
    b.restart().await;
    let ecs = b.ecs().await;
    assert_eq!(ecs.list_clusters().send().await.unwrap().cluster_arns().len(), 1);
    let td = ecs.describe_task_definition().task_definition("web:1").send().await.unwrap();
    assert_eq!(td.task_definition().unwrap().status().unwrap().as_str(), "INACTIVE");
    let latest = ecs.describe_task_definition().task_definition("web").send().await.unwrap();
    assert_eq!(latest.task_definition().unwrap().revision(), 2);
    let s = ecs
        .list_account_settings()
        .name(aws_sdk_ecs::types::SettingName::ContainerInsights)
        .effective_settings(true)
        .send()
        .await
        .unwrap();
    assert_eq!(s.settings()[0].value(), Some("enabled"));
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let mut b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    assert!(b.terminate(), "berth did not exit with status 0 on SIGTERM");
    b.restart().await;
    assert_eq!(b.ecs().await.list_clusters().send().await.unwrap().cluster_arns().len(), 1);
}
