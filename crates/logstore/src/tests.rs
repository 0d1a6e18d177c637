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
