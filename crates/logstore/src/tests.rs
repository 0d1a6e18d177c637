use super::*;

fn ev(ts: i64, msg: &str) -> Event {
    Event { timestamp: ts, ingestion_time: ts + 1, message: msg.to_string() }
}

fn all(q: Bound) -> Query {
    Query { start: None, end: None, bound: q, limit: usize::MAX }
}

fn messages(v: &[(Position, Event)]) -> Vec<&str> {
    v.iter().map(|(_, e)| e.message.as_str()).collect()
}

const S: StreamId = StreamId(7);

#[test]
fn events_come_back_in_time_order_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open_with(dir.path(), 64).unwrap();
    store.append(S, &[ev(30, "c"), ev(10, "a")]).unwrap();
    store.append(S, &[ev(20, "b")]).unwrap();
    store.append(S, &[ev(40, "d")]).unwrap();
    assert_eq!(messages(&store.read(S, &all(Bound::Head)).unwrap()), ["a", "b", "c", "d"]);
    let st = store.stats(S).unwrap();
    assert_eq!(
        (st.events, st.first_timestamp, st.last_timestamp, st.last_ingestion_time),
        (4, Some(10), Some(40), Some(41))
    );
    // Several segments, sealed ones with an index file.
    let files = fs::read_dir(dir.path().join(S.to_string())).unwrap().count();
    assert_eq!(files, 3, "two segments and the sealed one's index");
    drop(store);
    let store = LogStore::open_with(dir.path(), 64).unwrap();
    assert_eq!(messages(&store.read(S, &all(Bound::Head)).unwrap()), ["a", "b", "c", "d"]);
    assert_eq!(store.stats(S).unwrap(), st);
}

#[test]
fn time_windows_limits_and_resumable_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open_with(dir.path(), 100).unwrap();
    for i in 0..20 {
        store.append(S, &[ev(i * 10, &format!("m{i}"))]).unwrap();
    }
    let q = Query { start: Some(50), end: Some(120), bound: Bound::Head, limit: 3 };
    let page = store.read(S, &q).unwrap();
    assert_eq!(messages(&page), ["m5", "m6", "m7"]);
    let next = store.read(S, &Query { bound: Bound::After(page[2].0), ..q }).unwrap();
    assert_eq!(messages(&next), ["m8", "m9", "m10"]);
    let last = store.read(S, &Query { bound: Bound::After(next[2].0), ..q }).unwrap();
    assert_eq!(messages(&last), ["m11"]);
    let tail = store.read(S, &Query { bound: Bound::Tail, ..q }).unwrap();
    assert_eq!(messages(&tail), ["m9", "m10", "m11"]);
    let back = store.read(S, &Query { bound: Bound::Before(tail[0].0), ..q }).unwrap();
    assert_eq!(messages(&back), ["m6", "m7", "m8"]);
}

#[test]
fn a_page_skips_segments_that_cannot_change_it_and_is_the_full_reads_page() {
    // Batches out of time order across many small segments, with ties in time.
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open_with(dir.path(), 120).unwrap();
    let mut x: i64 = 7;
    for b in 0..40 {
        x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
        let base = x % 50;
        store
            .append(S, &[ev(base, &format!("{b}a")), ev(base, &format!("{b}b")), ev(base + 3, &format!("{b}c"))])
            .unwrap();
    }
    let full = store.read(S, &all(Bound::Head)).unwrap();
    for limit in [1, 2, 5, 17, 200] {
        let head = store.read(S, &Query { limit, ..all(Bound::Head) }).unwrap();
        assert_eq!(head, full[..limit.min(full.len())], "head, limit {limit}");
        let tail = store.read(S, &Query { limit, ..all(Bound::Tail) }).unwrap();
        assert_eq!(tail, full[full.len().saturating_sub(limit)..], "tail, limit {limit}");
        let from = full[10].0;
        let after = store.read(S, &Query { limit, ..all(Bound::After(from)) }).unwrap();
        assert_eq!(after, full[11..(11 + limit).min(full.len())], "after, limit {limit}");
        let before = store.read(S, &Query { limit, ..all(Bound::Before(full[100].0)) }).unwrap();
        assert_eq!(before, full[100usize.saturating_sub(limit)..100], "before, limit {limit}");
    }
}

#[test]
fn a_torn_tail_is_cut_off_on_open_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    store.append(S, &[ev(1, "kept"), ev(2, "kept too")]).unwrap();
    let good = store.stats(S).unwrap().stored_bytes;
    drop(store);
    // A crash in the middle of the next append: half a frame on disk.
    let seg = segment_path(&dir.path().join(S.to_string()), 0);
    let frame = encode_frame(&[ev(3, "never acknowledged"), ev(4, "x")]).unwrap();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&frame[..frame.len() - 5]).unwrap();
    drop(f);
    let store = LogStore::open(dir.path()).unwrap();
    assert_eq!(messages(&store.read(S, &all(Bound::Head)).unwrap()), ["kept", "kept too"]);
    assert_eq!(fs::metadata(&seg).unwrap().len(), good);
    store.append(S, &[ev(5, "after")]).unwrap();
    drop(store);
    let store = LogStore::open(dir.path()).unwrap();
    assert_eq!(messages(&store.read(S, &all(Bound::Head)).unwrap()), ["kept", "kept too", "after"]);
}

#[test]
fn a_corrupted_frame_hides_it_and_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    store.append(S, &[ev(1, "a")]).unwrap();
    store.append(S, &[ev(2, "b")]).unwrap();
    drop(store);
    let seg = segment_path(&dir.path().join(S.to_string()), 0);
    let mut data = fs::read(&seg).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    fs::write(&seg, data).unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    assert_eq!(messages(&store.read(S, &all(Bound::Head)).unwrap()), ["a"]);
}

#[test]
fn retention_drops_whole_old_segments_and_delete_removes_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open_with(dir.path(), 10).unwrap();
    for i in 0..5 {
        store.append(S, &[ev(i, "x")]).unwrap();
    }
    let before = store.stats(S).unwrap().stored_bytes;
    let freed = store.drop_before(S, 3).unwrap();
    assert!(freed > 0 && freed < before);
    let left = store.read(S, &all(Bound::Head)).unwrap();
    assert_eq!(left.iter().map(|(_, e)| e.timestamp).collect::<Vec<_>>(), [3, 4]);
    store.append(S, &[ev(9, "y")]).unwrap();
    store.delete_stream(S).unwrap();
    assert!(!dir.path().join(S.to_string()).exists());
    assert_eq!(store.stats(S).unwrap(), Stats::default());
}

#[test]
fn stream_ids_round_trip() {
    let id = StreamId(0xdead_beef);
    assert_eq!(StreamId::parse(&id.to_string()), Some(id));
    assert_eq!(StreamId::parse("../etc"), None);
}

/// A stream of `frames` frames of 50 events each, timestamps rising but out of order
/// inside a frame; every 97th message holds "needle".
fn filled(store: &LogStore, frames: i64) {
    for f in 0..frames {
        let batch: Vec<Event> = (0..50)
            .map(|i| {
                let n = f * 50 + i;
                let ts = f * 1000 + (i * 37) % 50 * 20;
                let msg = format!(
                    "GET /item/{n} 200 {}{}",
                    "x".repeat((n % 40) as usize),
                    if n % 97 == 0 { " needle" } else { "" }
                );
                ev(ts, &msg)
            })
            .collect();
        store.append(S, &batch).unwrap();
    }
}

/// What a scan must answer: a full read, filtered.
fn expected(store: &LogStore, scan: &Scan<'_>, keep: impl Fn(&str) -> bool) -> Vec<(Position, Event)> {
    let q = Query { start: scan.start, end: scan.end, bound: Bound::Head, limit: usize::MAX };
    let mut all = store.read(S, &q).unwrap();
    all.retain(|(p, e)| keep(&e.message) && scan.after.is_none_or(|a| *p > a));
    all.truncate(scan.limit);
    all
}

#[test]
fn a_scan_answers_what_a_full_read_then_filter_answers() {
    let dir = tempfile::tempdir().unwrap();
    // Several sealed segments, each of several blocks.
    let store = LogStore::open_with(dir.path(), 300_000).unwrap();
    filled(&store, 400);
    let has = |m: &str| m.contains("needle");
    let windows = [(None, None), (Some(100_000), Some(130_000)), (Some(5_500), Some(5_501)), (Some(1 << 40), None)];
    for (start, end) in windows {
        for limit in [usize::MAX, 7, 1, 0] {
            for required in [&["needle"][..], &[], &["needle", "GET"]] {
                let scan = Scan { start, end, after: None, limit, required };
                let (got, _) = store.scan(S, &scan, &mut |m| has(m)).unwrap();
                assert_eq!(got, expected(&store, &scan, has), "{start:?}..{end:?} limit {limit} {required:?}");
                // Paging on from the last one finds the rest, in order.
                if let Some((last, _)) = got.last() {
                    let next = Scan { after: Some(*last), limit: usize::MAX, ..scan };
                    let (rest, _) = store.scan(S, &next, &mut |m| has(m)).unwrap();
                    assert_eq!(rest, expected(&store, &next, has));
                }
            }
        }
    }
    // Without literals every event of the window is offered.
    let scan = Scan { start: Some(2_000), end: Some(4_000), after: None, limit: usize::MAX, required: &[] };
    let (got, stats) = store.scan(S, &scan, &mut |_| true).unwrap();
    assert_eq!(got.len(), 100);
    assert_eq!(stats.events_checked, 100);
}

#[test]
fn a_scan_reads_only_the_blocks_of_its_window_and_stops_after_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    filled(&store, 400);
    let stored = store.stats(S).unwrap().stored_bytes;
    let has = |m: &str| m.contains("needle");
    let whole = Scan { start: None, end: None, after: None, limit: usize::MAX, required: &["needle"] };
    let (all, stats) = store.scan(S, &whole, &mut |m| has(m)).unwrap();
    assert_eq!(stats.bytes_read, stored);
    assert_eq!(stats.events_checked, all.len() as u64, "only messages holding the literal are offered");
    // A tenth of the time range reads little more than a tenth of the bytes.
    let window = Scan { start: Some(200_000), end: Some(240_000), ..whole };
    let (got, stats) = store.scan(S, &window, &mut |m| has(m)).unwrap();
    assert_eq!(got, expected(&store, &window, has));
    assert!(!got.is_empty());
    assert!(stats.blocks_skipped > 0 && stats.bytes_read < stored / 5, "{stats:?} of {stored}");
    // The first page stops once no later block can hold an earlier event.
    let page = Scan { limit: 5, ..whole };
    let (got, stats) = store.scan(S, &page, &mut |m| has(m)).unwrap();
    assert_eq!(got, all[..5]);
    assert!(stats.bytes_read < stored / 5, "{stats:?} of {stored}");
}

#[test]
fn a_literal_found_in_an_event_header_is_no_match_and_hides_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    // 0x6261 is "ab" in little-endian bytes: the literal appears in these headers.
    store.append(S, &[ev(0x6261, "xx"), ev(0x6262, "zab"), ev(0x6261_0000, "ab!"), ev(0x6263, "b")]).unwrap();
    let scan = Scan { start: None, end: None, after: None, limit: usize::MAX, required: &["ab"] };
    let (got, stats) = store.scan(S, &scan, &mut |m| m.contains("ab")).unwrap();
    assert_eq!(messages(&got), ["zab", "ab!"]);
    assert_eq!(stats.events_checked, 2);
}

#[test]
fn a_damaged_missing_or_old_index_is_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open_with(dir.path(), 300_000).unwrap();
    filled(&store, 200);
    let want = store.read(S, &all(Bound::Head)).unwrap();
    let stats = store.stats(S).unwrap();
    drop(store);
    let sdir = dir.path().join(S.to_string());
    let idx = index::path(&sdir, 0);
    let good = fs::read_to_string(&idx).unwrap();
    let len = fs::metadata(segment_path(&sdir, 0)).unwrap().len();
    assert!(good.lines().count() > 3, "the sealed segment has several blocks:\n{good}");
    // A block's range changed (it would hide events from a window), its checksum left.
    let second = good.lines().nth(2).unwrap();
    let mut fields: Vec<String> = second.split(' ').map(str::to_string).collect();
    fields[4] = "0".into();
    let damaged = good.replace(second, &fields.join(" "));
    let v1 = format!("v1 {} {} {} {} {}\n", len, 1, 0, 0, 0);
    for bad in [Some(damaged), Some(v1), Some(good.replace("v2", "v3")), Some(String::new()), None] {
        match &bad {
            Some(text) => fs::write(&idx, text).unwrap(),
            None => fs::remove_file(&idx).unwrap(),
        }
        assert!(index::read(&sdir, 0, len).is_none());
        let store = LogStore::open_with(dir.path(), 300_000).unwrap();
        assert_eq!(store.read(S, &all(Bound::Head)).unwrap(), want);
        assert_eq!(store.stats(S).unwrap(), stats);
        let window = Scan { start: Some(20_000), end: Some(60_000), after: None, limit: usize::MAX, required: &[] };
        let (got, _) = store.scan(S, &window, &mut |_| true).unwrap();
        assert_eq!(got, expected(&store, &window, |_| true));
        // Rebuilt and written again, as it was.
        assert_eq!(fs::read_to_string(&idx).unwrap(), good);
    }
    // An index of another length than its segment (the segment was cut) is not used.
    assert!(index::read(&sdir, 0, len - 1).is_none());
}
