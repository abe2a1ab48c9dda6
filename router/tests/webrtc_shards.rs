//! WebRTC peers spread over two shards: str0m viewers (the load bench's generator, each viewer its own loopback
//! address, so the kernel spreads their flows over the shards' sockets by its hash) all connect and receive a
//! WHIP publisher's stream without gaps, the router places them evenly, and datagrams that reached the wrong
//! shard's socket were passed on to their owner. The Chromium side of this is web/tests/shards.test.mjs.

#[path = "../benches/support/mod.rs"]
mod support;

use std::time::Duration;

use support::{Generator, Router, clip, split_frames};

const VIEWERS: usize = 16;

#[test]
fn viewers_split_over_two_shards_and_all_play() {
    let frames = split_frames(&std::fs::read(clip()).expect("read clip"));
    let router = Router::start_with_shards(2, "[[route]]\nname = \"bench\"\nfrom = \"whip\"\nto = [\"whep\"]\n");
    let mut load = Generator::new(router.http.clone());
    load.publish(&frames);
    load.add_viewers("/bench/whep", VIEWERS);
    load.wait_connected(Duration::from_secs(20));
    assert!(load.viewers.iter().all(|v| v.connected), "every viewer connects");
    let (loss, _, mbps, _) = load.measure(&router);
    assert_eq!(load.viewers_receiving(), VIEWERS, "every viewer receives the stream");
    // A debug build on a shared CI core: a little loss is the machine; a shard losing its peers' packets is not.
    assert!(loss < 0.05, "loss {:.2}% over {VIEWERS} viewers ({mbps:.1} Mbit/s)", loss * 100.0);

    let route: serde_json::Value = serde_json::from_str(&router.get("/v1/routes/bench")).expect("route json");
    let sessions = route["webrtc_sessions"].as_array().expect("sessions");
    let viewers_on = |shard: u64| {
        sessions.iter().filter(|s| s["role"] == "viewer" && s["shard"] == shard && s["connected"] == true).count()
    };
    assert_eq!((viewers_on(0), viewers_on(1)), (VIEWERS / 2, VIEWERS / 2), "placed evenly: {sessions:#?}");

    let metrics = router.get("/metrics");
    let value = |name: &str, shard: usize| -> f64 {
        let prefix = format!("sluice_{name}{{shard=\"{shard}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok()).unwrap_or(-1.0)
    };
    // Sessions per shard: the publisher is on one of them too.
    let counts = (value("webrtc_shard_sessions", 0), value("webrtc_shard_sessions", 1));
    assert!(counts == (9.0, 8.0) || counts == (8.0, 9.0), "{counts:?}");
    // Seventeen flows all hashed to their owner's socket would be a 1 in 2^17 chance.
    let forwarded =
        value("webrtc_shard_datagrams_forwarded_total", 0) + value("webrtc_shard_datagrams_forwarded_total", 1);
    println!("shards: sessions {counts:?}, {forwarded} datagrams passed between shards, loss {:.3}%", loss * 100.0);
    assert!(forwarded > 0.0, "no datagram was passed between shards:\n{metrics}");
    assert_eq!(value("webrtc_shard_forward_drops_total", 0) + value("webrtc_shard_forward_drops_total", 1), 0.0);
}
