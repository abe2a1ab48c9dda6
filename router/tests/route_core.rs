//! The route actor in-process: GOP start, the slow-reader policy, on-demand sources, in-place updates.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sluice::config::model::RouteConfig;
use sluice::media::{Codec, CodecParams, Frame, Track, TrackId};
use sluice::route::actor::RouteSource;
use sluice::route::{ReaderKind, RouteError, SourceEvent, SourceFactory, SourceFeed, spawn_route};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const GOP: i64 = 30;
const WAIT: Duration = Duration::from_secs(10);

fn route_config(extra: &str) -> Arc<RouteConfig> {
    let text = format!("[[route]]\nname = \"r\"\nfrom = \"demo\"\nto = [\"whep\", \"rtsp\"]\n{extra}");
    let table = sluice::config::parse(&text, "t.toml", &|_| None).expect("valid");
    Arc::clone(&table.routes[0])
}

fn track() -> Arc<Track> {
    Arc::new(Track {
        id: TrackId(0),
        codec: Codec::H264,
        clock_rate: 90_000,
        params: CodecParams::None,
        description: "test".into(),
    })
}

fn frame(track: &Arc<Track>, n: i64) -> Frame {
    Frame {
        track: Arc::clone(track),
        pts: n * 3000,
        dts: n * 3000,
        keyframe: n % GOP == 0,
        data: Bytes::from(vec![0u8; 100]),
        received: std::time::Instant::now(),
        wallclock: None,
        forms: Default::default(),
    }
}

/// A source the test drives frame by frame; counts how often the route started it.
#[derive(Debug)]
struct Scripted {
    frames: Mutex<Option<mpsc::Receiver<Frame>>>,
    starts: AtomicUsize,
}

impl Scripted {
    fn new() -> (Arc<Scripted>, mpsc::Sender<Frame>) {
        let (tx, rx) = mpsc::channel(8);
        (Arc::new(Scripted { frames: Mutex::new(Some(rx)), starts: AtomicUsize::new(0) }), tx)
    }
}

impl SourceFactory for Scripted {
    fn start(&self, feed: SourceFeed) -> JoinHandle<()> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let rx = self.frames.lock().expect("lock").take();
        tokio::spawn(async move {
            let Some(mut rx) = rx else { return std::future::pending().await };
            while let Some(f) = rx.recv().await {
                if !feed.send(SourceEvent::Frame(f)).await {
                    return;
                }
            }
        })
    }
}

/// Waits until `probe` (a reader attached before the frames were sent) has seen `n` frames.
async fn wait_frames(probe: &mut sluice::route::RouteReader, n: usize) {
    for _ in 0..n {
        timeout(WAIT, probe.recv()).await.expect("frame in time").expect("route alive");
    }
}

/// Reads every frame as it comes, publishing how many it has so far.
fn spawn_fast_reader(
    mut reader: sluice::route::RouteReader,
) -> (tokio::sync::watch::Receiver<usize>, JoinHandle<(Vec<i64>, u64)>) {
    let (count_tx, count_rx) = tokio::sync::watch::channel(0);
    let task = tokio::spawn(async move {
        let mut pts = Vec::new();
        while let Some(f) = reader.recv().await {
            pts.push(f.pts);
            count_tx.send_replace(pts.len());
        }
        (pts, reader.dropped())
    });
    (count_rx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stalled_reader_loses_frames_alone() {
    let (source, tx) = Scripted::new();
    let route = spawn_route(route_config(""), RouteSource::Pull(source));
    let (mut count_a, fast_a) = spawn_fast_reader(route.add_reader(ReaderKind::Whep, None).await.expect("reader"));
    let (mut count_b, fast_b) = spawn_fast_reader(route.add_reader(ReaderKind::Rtsp, None).await.expect("reader"));
    let mut stalled = route.add_reader(ReaderKind::Whep, None).await.expect("reader");

    // Three times the reader queue, in batches the fast readers finish before the next one: they keep up by
    // construction, while the stalled reader reads nothing at all.
    const N: i64 = 3000;
    const BATCH: i64 = 100;
    let t = track();
    for batch in 0..N / BATCH {
        for n in batch * BATCH..(batch + 1) * BATCH {
            tx.send(frame(&t, n)).await.expect("route alive");
        }
        let done = ((batch + 1) * BATCH) as usize;
        timeout(WAIT, count_a.wait_for(|c| *c >= done)).await.expect("fast reader a kept up").expect("a alive");
        timeout(WAIT, count_b.wait_for(|c| *c >= done)).await.expect("fast reader b kept up").expect("b alive");
    }

    let snap = route.snapshot().await.expect("snapshot");
    assert_eq!(snap.frames_in, N as u64, "the source was never held up");
    let lost = stalled.dropped();
    assert!(lost > 0, "the stalled reader overflowed");
    assert_eq!(snap.frames_dropped, lost, "drops are counted on the route, and only the stalled reader's");

    // The stalled reader wakes up: it gets its full queue (the oldest frames, contiguous)...
    let mut got = Vec::new();
    while let Some(f) = stalled.try_recv() {
        got.push(f.pts);
    }
    assert_eq!(got.len() as u64 + lost, N as u64);
    assert_eq!(got, (0..got.len() as i64).map(|n| n * 3000).collect::<Vec<_>>());
    // ...and once it keeps up again, it resumes on the next keyframe, not on a frame it cannot decode.
    for n in N + 1..N + 2 * GOP {
        tx.send(frame(&t, n)).await.expect("route alive");
    }
    let resumed = timeout(WAIT, stalled.recv()).await.expect("frame").expect("reader alive");
    assert!(resumed.keyframe);
    assert_eq!(resumed.pts, (N + GOP) * 3000);
    timeout(WAIT, count_a.wait_for(|c| *c >= (N + 2 * GOP - 1) as usize)).await.expect("a").expect("a");
    timeout(WAIT, count_b.wait_for(|c| *c >= (N + 2 * GOP - 1) as usize)).await.expect("b").expect("b");

    route.stop().await;
    let expected: Vec<i64> = (0..N + 2 * GOP).filter(|n| *n != N).map(|n| n * 3000).collect();
    for fast in [fast_a, fast_b] {
        let (pts, dropped) = timeout(WAIT, fast).await.expect("reader ended with the route").expect("join");
        assert_eq!(pts, expected, "every frame, in order");
        assert_eq!(dropped, 0);
    }
}

#[tokio::test]
async fn a_new_reader_starts_on_the_latest_keyframe() {
    let (source, tx) = Scripted::new();
    let route = spawn_route(route_config(""), RouteSource::Pull(source));
    let mut probe = route.add_reader(ReaderKind::Api, None).await.expect("probe");
    let t = track();
    for n in 0..(GOP + 5) {
        tx.send(frame(&t, n)).await.expect("route alive");
    }
    wait_frames(&mut probe, (GOP + 5) as usize).await;
    let mut reader = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    let first = reader.try_recv().expect("GOP delivered at once, without waiting for the source");
    assert!(first.keyframe);
    assert_eq!(first.pts, GOP * 3000);
    let mut rest = 0;
    while reader.try_recv().is_some() {
        rest += 1;
    }
    assert_eq!(rest, 4);
}

#[tokio::test]
async fn max_readers_and_outputs_are_enforced() {
    let (source, _tx) = Scripted::new();
    let route = spawn_route(route_config("max_readers = 1\n"), RouteSource::Pull(source));
    let reader = route.add_reader(ReaderKind::Whep, None).await.expect("first reader");
    let err = route.add_reader(ReaderKind::Whep, None).await.expect_err("second reader");
    assert_eq!(err, RouteError::TooManyReaders { route: route.name().clone(), max: 1 });
    drop(reader);
    let err = route.add_reader(ReaderKind::Rtmp, None).await.expect_err("rtmp not in `to`");
    assert_eq!(err.to_string(), "route r does not list `rtmp` in `to`");
    route.add_reader(ReaderKind::Whep, None).await.expect("a slot freed up when the reader left");
}

#[tokio::test]
async fn on_demand_source_starts_with_the_first_reader() {
    let (source, _tx) = Scripted::new();
    let route = spawn_route(route_config("on_demand = true\n"), RouteSource::Pull(Arc::clone(&source) as _));
    let snap = route.snapshot().await.expect("snapshot");
    assert_eq!(source.starts.load(Ordering::SeqCst), 0);
    assert_eq!(snap.source_starts, 0);
    let _reader = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    assert_eq!(source.starts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn removing_an_output_ends_only_its_readers() {
    let (source, tx) = Scripted::new();
    let route = spawn_route(route_config(""), RouteSource::Pull(source));
    let mut whep = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    let mut rtsp = route.add_reader(ReaderKind::Rtsp, None).await.expect("reader");
    let table =
        sluice::config::parse("[[route]]\nname = \"r\"\nfrom = \"demo\"\nto = [\"whep\"]\n", "t.toml", &|_| None)
            .expect("valid");
    route.update(Arc::clone(&table.routes[0]), None).await.expect("update");
    assert!(timeout(WAIT, rtsp.recv()).await.expect("ended").is_none(), "rtsp reader ended");
    tx.send(frame(&track(), 0)).await.expect("route alive");
    assert_eq!(timeout(WAIT, whep.recv()).await.expect("frame").expect("whep reader kept").pts, 0);
}

#[tokio::test]
async fn stopping_a_route_ends_its_readers() {
    let (source, _tx) = Scripted::new();
    let route = spawn_route(route_config(""), RouteSource::Pull(source));
    let mut reader = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    route.stop().await;
    assert!(timeout(WAIT, reader.recv()).await.expect("ended").is_none());
    assert!(matches!(route.snapshot().await, Err(RouteError::Ended(_))));
}

#[tokio::test]
async fn a_swapped_source_keeps_readers_and_timestamps_monotonic() {
    let (first, tx1) = Scripted::new();
    let route = spawn_route(route_config(""), RouteSource::Pull(first));
    let mut reader = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    let t = track();
    for n in 0..10 {
        tx1.send(frame(&t, n)).await.expect("route alive");
    }
    let mut pts = Vec::new();
    while pts.len() < 10 {
        pts.push(timeout(WAIT, reader.recv()).await.expect("frame").expect("reader kept").pts);
    }
    // A reload points the route at another source, which starts mid-GOP (frame 5) with its own clock.
    let (second, tx2) = Scripted::new();
    route.update(route_config("max_readers = 9\n"), Some(RouteSource::Pull(second))).await.expect("update");
    for n in 5..GOP + 2 {
        tx2.send(frame(&t, n)).await.expect("route alive");
    }
    // Frames 5..29 reference a keyframe this reader never saw: it resumes at the new source's keyframe (30),
    // placed on the route's clock right after the old source's last frame.
    while pts.len() < 12 {
        pts.push(timeout(WAIT, reader.recv()).await.expect("frame").expect("reader kept").pts);
    }
    let resumed: Vec<i64> = (0..10).map(|n| n * 3000).chain([10 * 3000 + 25 * 3000, 10 * 3000 + 26 * 3000]).collect();
    assert_eq!(pts, resumed, "the new source continues the old clock, from its first keyframe");
    assert_eq!(route.snapshot().await.expect("snapshot").source_starts, 2);
}

#[tokio::test]
async fn a_reader_joining_without_a_cached_gop_starts_on_the_next_keyframe() {
    let (source, tx) = Scripted::new();
    let route = spawn_route(route_config(""), RouteSource::Pull(source));
    let mut reader = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    let t = track();
    // The source starts mid-GOP (a camera connected between keyframes): nothing to cache, nothing to decode.
    for n in 20..GOP + 1 {
        tx.send(frame(&t, n)).await.expect("route alive");
    }
    let first = timeout(WAIT, reader.recv()).await.expect("frame").expect("reader");
    assert!(first.keyframe);
    assert_eq!(first.pts, GOP * 3000);
}

#[tokio::test(start_paused = true)]
async fn an_on_demand_source_stops_after_the_last_reader_lingers_out() {
    let (source, _tx) = Scripted::new();
    let route = spawn_route(route_config("on_demand = true\n"), RouteSource::Pull(Arc::clone(&source) as _));
    let reader = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    assert_eq!(source.starts.load(Ordering::SeqCst), 1);
    drop(reader);
    // Paused time: advancing it fires the route's ticks deterministically.
    tokio::time::advance(sluice::config::model::DEFAULT_IDLE_TIMEOUT / 2).await;
    let snap = route.snapshot().await.expect("snapshot");
    assert_eq!(snap.reader_count, 0);
    assert_ne!(snap.state, sluice::route::RouteState::Unavailable);
    // A reader returning within the linger reuses the running source.
    let reader = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    assert_eq!(source.starts.load(Ordering::SeqCst), 1, "no reconnect for a page reload");
    drop(reader);
    for _ in 0..3 {
        tokio::time::advance(sluice::config::model::DEFAULT_IDLE_TIMEOUT).await;
        route.snapshot().await.expect("snapshot");
    }
    let _reader = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    assert_eq!(source.starts.load(Ordering::SeqCst), 2, "the source stopped after the linger and started again");
}

#[tokio::test(start_paused = true)]
async fn keyframe_requests_reach_the_publisher_rate_limited() {
    let table =
        sluice::config::parse("[[route]]\nname = \"p\"\nfrom = \"whip\"\nto = [\"whep\"]\n", "t.toml", &|_| None)
            .expect("valid");
    let route = spawn_route(Arc::clone(&table.routes[0]), RouteSource::Publish);
    let feed = route.attach_publisher(None, false).await.expect("first publisher");
    assert!(matches!(route.attach_publisher(None, false).await, Err(RouteError::PublisherBusy(_))));
    // Three viewers lose a picture at once: the publisher hears one request now, and one after the interval.
    for _ in 0..3 {
        route.request_keyframe();
    }
    timeout(WAIT, feed.keyframe_requested()).await.expect("a request");
    route.request_keyframe();
    route.snapshot().await.expect("alive"); // the actor has handled everything before this
    assert!(timeout(std::time::Duration::from_millis(1), feed.keyframe_requested()).await.is_err(), "rate-limited");
    tokio::time::advance(sluice::route::actor::KEYFRAME_REQUEST_INTERVAL).await;
    route.request_keyframe();
    timeout(WAIT, feed.keyframe_requested()).await.expect("a later request");
    // The publisher leaving frees the route for the next one.
    drop(feed);
    route.snapshot().await.expect("alive");
    route.attach_publisher(None, false).await.expect("next publisher");
}

/// A publish route with RTMP players whose frames are held `interval`, fed directly through its feed.
async fn rtmp_route(interval: &str) -> (sluice::route::RouteHandle, SourceFeed) {
    let text = format!(
        "[[route]]\nname = \"r\"\nfrom = \"rtmp\"\nto = [\"whep\", \"rtmp\"]\nwrite_interval = \"{interval}\"\n"
    );
    let table = sluice::config::parse(&text, "t.toml", &|_| None).expect("valid");
    let route = spawn_route(Arc::clone(&table.routes[0]), RouteSource::Publish);
    let feed = route.attach_publisher(None, false).await.expect("publisher");
    (route, feed)
}

async fn send(feed: &SourceFeed, t: &Arc<Track>, n: i64) {
    assert!(feed.send(SourceEvent::Frame(frame(t, n))).await, "route alive");
}

/// Everything a reader has queued right now, as frame numbers.
fn queued(reader: &mut sluice::route::RouteReader) -> Vec<i64> {
    std::iter::from_fn(|| reader.try_recv()).map(|f| f.pts / 3000).collect()
}

#[tokio::test(start_paused = true)]
async fn rtmp_players_get_frames_in_bunches_one_interval_apart() {
    let (route, feed) = rtmp_route("100ms").await;
    let mut whep = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    let mut rtmp = route.add_reader(ReaderKind::Rtmp, None).await.expect("reader");
    let t = track();
    let start = tokio::time::Instant::now();
    send(&feed, &t, 0).await;
    send(&feed, &t, 1).await;
    wait_frames(&mut whep, 2).await;
    assert_eq!(start.elapsed(), Duration::ZERO, "other readers get every frame as it comes");
    assert!(queued(&mut rtmp).is_empty(), "held for the bunch");
    // Paused time moves to the next timer once every task waits: the bunch's.
    let first = timeout(WAIT, rtmp.recv()).await.expect("bunch in time").expect("route alive");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(first.pts, 0);
    assert_eq!(queued(&mut rtmp), [1], "the whole bunch at once");
    send(&feed, &t, 2).await;
    wait_frames(&mut whep, 1).await;
    timeout(WAIT, rtmp.recv()).await.expect("next bunch").expect("route alive");
    assert_eq!(start.elapsed(), Duration::from_millis(200), "a bunch starts with its first frame");
}

#[tokio::test(start_paused = true)]
async fn an_rtmp_player_joining_mid_bunch_gets_every_frame_once() {
    let (route, feed) = rtmp_route("100ms").await;
    let mut whep = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    let mut early = route.add_reader(ReaderKind::Rtmp, None).await.expect("reader");
    let t = track();
    for n in 0..3 {
        send(&feed, &t, n).await;
    }
    wait_frames(&mut whep, 3).await;
    // The held frames are in the GOP cache too: the newcomer gets them from it, the others with the bunch now.
    let mut late = route.add_reader(ReaderKind::Rtmp, None).await.expect("reader");
    assert_eq!(queued(&mut early), [0, 1, 2]);
    assert_eq!(queued(&mut late), [0, 1, 2]);
    send(&feed, &t, 3).await;
    for reader in [&mut early, &mut late] {
        let next = timeout(WAIT, reader.recv()).await.expect("next bunch").expect("route alive");
        assert_eq!(next.pts / 3000, 3, "nothing sent twice");
        assert!(queued(reader).is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn turning_rtmp_bunches_off_by_reload_sends_what_was_held() {
    let (route, feed) = rtmp_route("100ms").await;
    let mut whep = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
    let mut rtmp = route.add_reader(ReaderKind::Rtmp, None).await.expect("reader");
    let t = track();
    send(&feed, &t, 0).await;
    wait_frames(&mut whep, 1).await;
    let text = "[[route]]\nname = \"r\"\nfrom = \"rtmp\"\nto = [\"whep\", \"rtmp\"]\nwrite_interval = \"0ms\"\n";
    let table = sluice::config::parse(text, "t.toml", &|_| None).expect("valid");
    route.update(Arc::clone(&table.routes[0]), None).await.expect("update");
    let start = tokio::time::Instant::now();
    assert_eq!(queued(&mut rtmp), [0], "held frames go out with the update");
    send(&feed, &t, 1).await;
    wait_frames(&mut whep, 1).await;
    assert_eq!(queued(&mut rtmp), [1], "and new ones as they come");
    assert_eq!(start.elapsed(), Duration::ZERO);
}
