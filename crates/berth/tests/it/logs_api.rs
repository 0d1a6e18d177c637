//! The CloudWatch Logs API driven by the official `aws-sdk-cloudwatchlogs`: groups,
//! streams, events and their paging tokens, AWS's error codes, retention, tags, and events
//! that survive a restart and `kill -9`.

use aws_sdk_cloudwatchlogs::types::{InputLogEvent, OrderBy};
use aws_sdk_cloudwatchlogs::Client;
use testkit::{error_code, Berth};

use crate::berth;

pub(crate) async fn logs(b: &Berth) -> Client {
    Client::new(&b.sdk_config(&b.env_key(None), "us-east-1").await)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

pub(crate) fn event(ts: i64, m: &str) -> InputLogEvent {
    InputLogEvent::builder().timestamp(ts).message(m).build().unwrap()
}

pub(crate) async fn put(c: &Client, g: &str, s: &str, events: Vec<InputLogEvent>) {
    c.put_log_events().log_group_name(g).log_stream_name(s).set_log_events(Some(events)).send().await.unwrap();
}

async fn messages(c: &Client, g: &str, s: &str) -> Vec<String> {
    let r = c.get_log_events().log_group_name(g).log_stream_name(s).start_from_head(true).send().await.unwrap();
    r.events().iter().map(|e| e.message().unwrap().to_string()).collect()
}

#[tokio::test]
async fn groups_and_streams_are_created_described_and_deleted() {
    let b = berth().await;
    let c = logs(&b).await;
    for g in ["/ecs/web", "/ecs/api", "/other/x"] {
        c.create_log_group().log_group_name(g).send().await.unwrap();
    }
    let e = c.create_log_group().log_group_name("/ecs/web").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceAlreadyExistsException");

    let r = c.describe_log_groups().log_group_name_prefix("/ecs/").send().await.unwrap();
    let names: Vec<_> = r.log_groups().iter().map(|g| g.log_group_name().unwrap()).collect();
    assert_eq!(names, ["/ecs/api", "/ecs/web"]);
    let g = &r.log_groups()[1];
    assert!(g.arn().unwrap().ends_with(":log-group:/ecs/web:*"), "{:?}", g.arn());
    assert_eq!(g.stored_bytes(), Some(0));
    let r = c.describe_log_groups().log_group_name_pattern("OTHER").send().await.unwrap();
    assert_eq!(r.log_groups().len(), 1);

    // Pagination: one group per page, every group exactly once.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let r = c.describe_log_groups().limit(1).set_next_token(token).send().await.unwrap();
        seen.extend(r.log_groups().iter().map(|g| g.log_group_name().unwrap().to_string()));
        token = r.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["/ecs/api", "/ecs/web", "/other/x"]);

    for s in ["b", "a", "c"] {
        c.create_log_stream().log_group_name("/ecs/web").log_stream_name(s).send().await.unwrap();
    }
    let e = c.create_log_stream().log_group_name("/ecs/web").log_stream_name("a").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceAlreadyExistsException");
    let e = c.create_log_stream().log_group_name("/nope").log_stream_name("a").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
    let now = now_ms();
    put(&c, "/ecs/web", "c", vec![event(now - 2000, "c1")]).await;
    put(&c, "/ecs/web", "a", vec![event(now - 1000, "a1")]).await;

    let r = c.describe_log_streams().log_group_name("/ecs/web").send().await.unwrap();
    let names: Vec<_> = r.log_streams().iter().map(|s| s.log_stream_name().unwrap()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let r = c
        .describe_log_streams()
        .log_group_name("/ecs/web")
        .order_by(OrderBy::LastEventTime)
        .descending(true)
        .send()
        .await
        .unwrap();
    let names: Vec<_> = r.log_streams().iter().map(|s| s.log_stream_name().unwrap()).collect();
    assert_eq!(names, ["a", "c", "b"]);
    let a = &r.log_streams()[0];
    assert_eq!(a.last_event_timestamp(), Some(now - 1000));
    let e = c
        .describe_log_streams()
        .log_group_name("/ecs/web")
        .log_stream_name_prefix("a")
        .order_by(OrderBy::LastEventTime)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    let r = c.describe_log_streams().log_group_name("/ecs/web").log_stream_name_prefix("b").send().await.unwrap();
    assert_eq!(r.log_streams().len(), 1);
    let r = c.describe_log_groups().log_group_name_prefix("/ecs/web").send().await.unwrap();
    assert!(r.log_groups()[0].stored_bytes().unwrap() > 0);

    c.delete_log_stream().log_group_name("/ecs/web").log_stream_name("a").send().await.unwrap();
    let e = c.get_log_events().log_group_name("/ecs/web").log_stream_name("a").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
    c.delete_log_group().log_group_name("/ecs/web").send().await.unwrap();
    let e = c.delete_log_group().log_group_name("/ecs/web").send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
    // A group created again under the same name starts empty.
    c.create_log_group().log_group_name("/ecs/web").send().await.unwrap();
    c.create_log_stream().log_group_name("/ecs/web").log_stream_name("c").send().await.unwrap();
    assert!(messages(&c, "/ecs/web", "c").await.is_empty());
}

#[tokio::test]
async fn get_log_events_pages_forward_and_backward_like_aws() {
    let b = berth().await;
    let c = logs(&b).await;
    c.create_log_group().log_group_name("g").send().await.unwrap();
    c.create_log_stream().log_group_name("g").log_stream_name("s").send().await.unwrap();
    let t0 = now_ms() - 60_000;
    put(&c, "g", "s", (0..10).map(|i| event(t0 + i, &format!("m{i}"))).collect()).await;

    // Without startFromHead: the latest events.
    let r = c.get_log_events().log_group_name("g").log_stream_name("s").limit(3).send().await.unwrap();
    let got: Vec<_> = r.events().iter().map(|e| e.message().unwrap()).collect();
    assert_eq!(got, ["m7", "m8", "m9"]);
    let back = r.next_backward_token().unwrap().to_string();
    let r =
        c.get_log_events().log_group_name("g").log_stream_name("s").limit(3).next_token(&back).send().await.unwrap();
    let got: Vec<_> = r.events().iter().map(|e| e.message().unwrap()).collect();
    assert_eq!(got, ["m4", "m5", "m6"]);

    // Forward from the head, to the end; the end's token comes back unchanged.
    let mut token: Option<String> = None;
    let mut all = Vec::new();
    let last_token = loop {
        let r = c
            .get_log_events()
            .log_group_name("g")
            .log_stream_name("s")
            .start_from_head(true)
            .limit(4)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        all.extend(r.events().iter().map(|e| e.message().unwrap().to_string()));
        let next = r.next_forward_token().unwrap().to_string();
        if r.events().is_empty() {
            assert_eq!(Some(&next), token.as_ref(), "a token that finds nothing is answered unchanged");
            break next;
        }
        token = Some(next);
    };
    assert_eq!(all, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
    // New events appear after the end token.
    put(&c, "g", "s", vec![event(t0 + 20, "late")]).await;
    let r = c.get_log_events().log_group_name("g").log_stream_name("s").next_token(&last_token).send().await.unwrap();
    let got: Vec<_> = r.events().iter().map(|e| e.message().unwrap()).collect();
    assert_eq!(got, ["late"]);

    // A time window.
    let r = c
        .get_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .start_time(t0 + 2)
        .end_time(t0 + 5)
        .start_from_head(true)
        .send()
        .await
        .unwrap();
    let got: Vec<_> = r.events().iter().map(|e| e.message().unwrap()).collect();
    assert_eq!(got, ["m2", "m3", "m4"]);
    let e = c.get_log_events().log_group_name("g").log_stream_name("s").next_token("garbage").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
}

#[tokio::test]
async fn put_log_events_applies_aws_batch_rules() {
    let b = berth().await;
    let c = logs(&b).await;
    c.create_log_group().log_group_name("g").send().await.unwrap();
    c.create_log_stream().log_group_name("g").log_stream_name("s").send().await.unwrap();
    let now = now_ms();
    let day = 24 * 3600 * 1000;
    let r = c
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .sequence_token("ignored")
        .log_events(event(now - 15 * day, "too old"))
        .log_events(event(now, "kept"))
        .log_events(event(now + 3 * 3600 * 1000, "too new"))
        .send()
        .await
        .unwrap();
    let info = r.rejected_log_events_info().unwrap();
    assert_eq!(info.too_old_log_event_end_index(), Some(1));
    assert_eq!(info.too_new_log_event_start_index(), Some(2));
    assert_eq!(messages(&c, "g", "s").await, ["kept"]);

    let cases: Vec<(Vec<InputLogEvent>, &str)> = vec![
        (vec![event(now, "b"), event(now - 1, "a")], "InvalidParameterException"),
        (vec![event(now - 2 * day, "a"), event(now, "b")], "InvalidParameterException"),
        (vec![event(now, &"x".repeat(1_048_576))], "InvalidParameterException"),
        ((0..10_001).map(|_| event(now, "x")).collect(), "InvalidParameterException"),
    ];
    for (events, code) in cases {
        let e = c
            .put_log_events()
            .log_group_name("g")
            .log_stream_name("s")
            .set_log_events(Some(events))
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&e), code);
    }
    let e = c
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("nope")
        .log_events(event(now, "x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
    for bad in ["has space", "a:b", ""] {
        let e = c.create_log_group().log_group_name(bad).send().await.unwrap_err();
        assert_eq!(error_code(&e), "InvalidParameterException", "{bad:?}");
    }
    let e = c.create_log_stream().log_group_name("g").log_stream_name("a:b").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    assert_eq!(messages(&c, "g", "s").await, ["kept"]);
    let e = c.start_query().log_group_name("g").query_string("x").start_time(0).end_time(1).send().await.unwrap_err();
    assert_eq!(error_code(&e), "UnsupportedFeatureException");
}

#[tokio::test]
async fn retention_and_tags() {
    let b = berth().await;
    let c = logs(&b).await;
    c.create_log_group().log_group_name("g").tags("team", "web").send().await.unwrap();
    c.create_log_stream().log_group_name("g").log_stream_name("s").send().await.unwrap();
    let now = now_ms();
    let day = 24 * 3600 * 1000;
    put(&c, "g", "s", vec![event(now - 3 * day, "three days old")]).await;
    put(&c, "g", "s", vec![event(now, "fresh")]).await;

    let e = c.put_retention_policy().log_group_name("g").retention_in_days(2).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    c.put_retention_policy().log_group_name("g").retention_in_days(1).send().await.unwrap();
    let r = c.describe_log_groups().send().await.unwrap();
    assert_eq!(r.log_groups()[0].retention_in_days(), Some(1));
    assert_eq!(messages(&c, "g", "s").await, ["fresh"], "expired events are not returned");
    // Events older than the retention are rejected as expired.
    let r = c
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .log_events(event(now - 2 * day, "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.rejected_log_events_info().unwrap().expired_log_event_end_index(), Some(1));
    c.delete_retention_policy().log_group_name("g").send().await.unwrap();
    let r = c.describe_log_groups().send().await.unwrap();
    assert_eq!(r.log_groups()[0].retention_in_days(), None);

    let arn = r.log_groups()[0].log_group_arn().unwrap().to_string();
    c.tag_resource().resource_arn(&arn).tags("env", "prod").send().await.unwrap();
    let t = c.list_tags_for_resource().resource_arn(&arn).send().await.unwrap();
    assert_eq!(t.tags().unwrap().len(), 2);
    c.untag_resource().resource_arn(&arn).tag_keys("team").send().await.unwrap();
    #[allow(deprecated)]
    {
        c.tag_log_group().log_group_name("g").tags("k", "v").send().await.unwrap();
        let t = c.list_tags_log_group().log_group_name("g").send().await.unwrap();
        let mut keys: Vec<_> = t.tags().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["env", "k"]);
        c.untag_log_group().log_group_name("g").tags("k").send().await.unwrap();
    }
    let e = c.tag_resource().resource_arn(&arn).tags("aws:x", "v").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    let other = arn.replace(":log-group:g", ":log-group:nope");
    let e = c.list_tags_for_resource().resource_arn(&other).send().await.unwrap_err();
    assert_eq!(error_code(&e), "ResourceNotFoundException");
}

#[tokio::test]
async fn acknowledged_events_survive_restart_and_kill_9() {
    let mut b = berth().await;
    let c = logs(&b).await;
    c.create_log_group().log_group_name("g").send().await.unwrap();
    c.create_log_stream().log_group_name("g").log_stream_name("s").send().await.unwrap();
    let now = now_ms();
    put(&c, "g", "s", vec![event(now, "one"), event(now + 1, "two")]).await;
    b.restart().await;
    let c = logs(&b).await;
    assert_eq!(messages(&c, "g", "s").await, ["one", "two"]);

    // Writers put batches until the server is killed; every acknowledged batch is there.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (c, acked) = (c.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let m = format!("w{w}-{i}");
                let batch: Vec<_> = (0..20).map(|k| event(now + 10 + i, &format!("{m}-{k}"))).collect();
                let r = c
                    .put_log_events()
                    .log_group_name("g")
                    .log_stream_name("s")
                    .set_log_events(Some(batch))
                    .send()
                    .await;
                if r.is_err() {
                    break;
                }
                acked.lock().unwrap().push(m);
            }
        }));
    }
    assert!(
        testkit::eventually(std::time::Duration::from_secs(30), || {
            let n = acked.lock().unwrap().len();
            async move { n >= 100 }
        })
        .await
    );
    b.kill9();
    for w in writers {
        w.await.unwrap();
    }
    b.restart().await;
    let c = logs(&b).await;
    let mut stored = Vec::new();
    let mut token = None;
    loop {
        let r = c
            .get_log_events()
            .log_group_name("g")
            .log_stream_name("s")
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        if r.events().is_empty() {
            break;
        }
        stored.extend(r.events().iter().map(|e| e.message().unwrap().to_string()));
        token = r.next_forward_token().map(str::to_string);
    }
    let stored: std::collections::HashSet<String> = stored.into_iter().collect();
    for m in acked.lock().unwrap().iter() {
        for k in 0..20 {
            assert!(stored.contains(&format!("{m}-{k}")), "acknowledged event {m}-{k} was lost");
        }
    }
    // A batch is whole or absent: never a part of one.
    for m in stored.iter().filter(|m| m.starts_with('w')) {
        let batch = m.rsplit_once('-').unwrap().0;
        assert!((0..20).all(|k| stored.contains(&format!("{batch}-{k}"))), "batch {batch} is partly stored");
    }
}

#[tokio::test]
async fn filter_log_events_interleaves_streams_and_matches_terms_and_phrases() {
    let b = berth().await;
    let c = logs(&b).await;
    c.create_log_group().log_group_name("/ecs/web").send().await.unwrap();
    for s in ["ecs/web/1", "ecs/web/2", "other"] {
        c.create_log_stream().log_group_name("/ecs/web").log_stream_name(s).send().await.unwrap();
    }
    let t = now_ms() - 10_000;
    put(
        &c,
        "/ecs/web",
        "ecs/web/1",
        vec![event(t, "ERROR disk full"), event(t + 2, "INFO ok"), event(t + 4, "ERROR timeout")],
    )
    .await;
    put(&c, "/ecs/web", "ecs/web/2", vec![event(t + 1, "ERROR disk full again"), event(t + 3, "WARN slow")]).await;
    put(&c, "/ecs/web", "other", vec![event(t + 5, "ERROR elsewhere")]).await;

    let filter = |pattern: &str| {
        c.filter_log_events().log_group_name("/ecs/web").filter_pattern(pattern).log_stream_name_prefix("ecs/web/")
    };
    let r = filter("ERROR").send().await.unwrap();
    let got: Vec<_> = r.events().iter().map(|e| (e.log_stream_name().unwrap(), e.message().unwrap())).collect();
    assert_eq!(
        got,
        [("ecs/web/1", "ERROR disk full"), ("ecs/web/2", "ERROR disk full again"), ("ecs/web/1", "ERROR timeout")]
    );
    let r = filter("\"disk full\" -again").send().await.unwrap();
    assert_eq!(r.events().len(), 1);
    let r = filter("?WARN ?timeout").send().await.unwrap();
    assert_eq!(r.events().len(), 2);

    // Paging through every event of the group, two at a time, in time order.
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let r = c.filter_log_events().log_group_name("/ecs/web").limit(2).set_next_token(token).send().await.unwrap();
        all.extend(r.events().iter().map(|e| e.timestamp().unwrap() - t));
        token = r.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(all, [0, 1, 2, 3, 4, 5]);

    let e = filter("\"unclosed").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
    let e = c
        .filter_log_events()
        .log_group_name("/ecs/web")
        .log_stream_names("other")
        .log_stream_name_prefix("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
}

#[tokio::test]
async fn filter_log_events_takes_json_and_space_delimited_patterns() {
    let b = berth().await;
    let c = logs(&b).await;
    c.create_log_group().log_group_name("/app").send().await.unwrap();
    c.create_log_stream().log_group_name("/app").log_stream_name("s").send().await.unwrap();
    let t = now_ms() - 10_000;
    let lines = [
        r#"{"level": "error", "latency": 250, "user": {"id": 7}}"#,
        r#"{"level": "error", "latency": 20}"#,
        r#"{"level": "info", "latency": 900}"#,
        r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 404 2326"#,
        r#"127.0.0.1 - alice [10/Oct/2000:13:56:01 -0700] "GET /b.gif HTTP/1.0" 200 512"#,
        "not json at all",
    ];
    put(&c, "/app", "s", lines.iter().enumerate().map(|(i, m)| event(t + i as i64, m)).collect()).await;
    let matched = async |pattern: &str| -> Vec<String> {
        let r = c.filter_log_events().log_group_name("/app").filter_pattern(pattern).send().await.unwrap();
        r.events().iter().map(|e| e.message().unwrap().to_string()).collect()
    };
    assert_eq!(matched(r#"{ $.level = "error" && $.latency > 100 }"#).await, [lines[0]]);
    assert_eq!(matched("{ $.user.id = 7 || $.latency >= 900 }").await, [lines[0], lines[2]]);
    assert_eq!(matched("[ip, identity, user, timestamp, request, status_code = 4*, bytes]").await, [lines[3]]);
    assert_eq!(matched("[..., status_code = 200, bytes < 1000]").await, [lines[4]]);
    let e = c.filter_log_events().log_group_name("/app").filter_pattern("{ $.level = }").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterException");
}

#[tokio::test]
async fn get_log_events_answers_at_most_one_megabyte() {
    let b = berth().await;
    let c = logs(&b).await;
    c.create_log_group().log_group_name("g").send().await.unwrap();
    c.create_log_stream().log_group_name("g").log_stream_name("s").send().await.unwrap();
    let t = now_ms() - 1000;
    let big = "x".repeat(600_000);
    put(&c, "g", "s", vec![event(t, &big)]).await;
    put(&c, "g", "s", vec![event(t + 1, &big)]).await;
    let r = c.get_log_events().log_group_name("g").log_stream_name("s").start_from_head(true).send().await.unwrap();
    assert_eq!(r.events().len(), 1);
    assert_eq!(r.events()[0].timestamp(), Some(t));
    let next = r.next_forward_token().unwrap();
    let r = c.get_log_events().log_group_name("g").log_stream_name("s").next_token(next).send().await.unwrap();
    assert_eq!(r.events().iter().map(|e| e.timestamp().unwrap()).collect::<Vec<_>>(), [t + 1]);
}
