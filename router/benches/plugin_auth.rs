//! Auth plugin costs under the real host: a cached decision through the gate, an uncached call into the
//! plugin, and instantiation from the `InstancePre`.
//!
//! `cargo bench -p sluice --bench plugin_auth` (targets: cached < 2 µs; uncached p99 < 50 µs; instantiation
//! p99 < 50 µs). Prints one line per measurement; results go to BENCHMARKS.md.

use std::time::{Duration, Instant};

use sluice::auth::{AuthGate, Outcome};
use sluice::config::model::{AnonymousAction, BuiltinPlugin, PluginConfig, PluginGrants, PluginSource};
use sluice::plugin::auth::{Action, Credentials, Protocol, Request};
use sluice::plugin::{PluginHost, Plugins};

#[path = "../tests/common/jwt.rs"]
mod jwt;

const SECRET: &str = "bench-secret";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what:<48} n={:<6} p50 {:>7.2} µs  p99 {:>7.2} µs  max {:>8.2} µs",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.last().expect("samples").as_secs_f64() * 1e6,
    );
}

fn plugin_config(name: &str, source: PluginSource, config: serde_json::Value) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        limits: source.default_limits(),
        source,
        config,
        grants: PluginGrants::default(),
        mount: None,
    }
}

fn main() {
    let host = PluginHost::shared(None).expect("engine");
    let example = std::path::Path::new(env!("SLUICE_TEST_PLUGINS")).join("example_allowlist.wasm");
    let wanted = [
        plugin_config("jwt", PluginSource::Builtin(BuiltinPlugin::AuthJwt), serde_json::json!({ "secret": SECRET })),
        plugin_config(
            "example",
            PluginSource::File(example),
            serde_json::json!({ "readers": ["127."], "publish_key": "k" }),
        ),
    ]
    .into_iter()
    .map(|c| (c.name.clone(), c))
    .collect();
    let started = Instant::now();
    let (plugins, _) = Plugins::load(&host, &wanted, &Plugins::default()).expect("plugins load");
    println!(
        "load (compile, link, pre-instantiate, init) of both plugins: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    let token = jwt::hs256(
        serde_json::json!({ "sub": "bench", "exp": jwt::now() + 3600, "sluice": ["read:*"] }),
        SECRET.as_bytes(),
    );
    let request = |route: &str| Request {
        action: Action::Read,
        protocol: Protocol::Whep,
        route: route.into(),
        target: format!("/{route}/whep"),
        query: Vec::new(),
        remote_ip: "127.0.0.1".into(),
        credentials: Credentials::Bearer(token.clone()),
    };
    let jwt = plugins.get("jwt").expect("jwt").plugin.as_auth().expect("auth");
    let example = plugins.get("example").expect("example").plugin.as_auth().expect("auth");

    // Warm up the instance pools and code.
    for i in 0..200 {
        jwt.call(&request(&format!("warm{i}"))).expect("call");
        example.call(&request("warm")).expect("call");
    }

    let n = 20_000;
    report(
        "uncached call, auth-jwt (HS256 verify in wasm)",
        (0..n)
            .map(|i| {
                let r = request(&format!("cam{i}"));
                let t = Instant::now();
                jwt.call(&r).expect("call");
                t.elapsed()
            })
            .collect(),
    );
    report(
        "uncached call, example allowlist (host overhead)",
        (0..n)
            .map(|_| {
                let r = request("cam");
                let t = Instant::now();
                example.call(&r).expect("call");
                t.elapsed()
            })
            .collect(),
    );
    report(
        "instantiation from InstancePre, auth-jwt",
        (0..2_000)
            .map(|_| {
                let t = Instant::now();
                jwt.instantiate_bare().expect("instantiate");
                t.elapsed()
            })
            .collect(),
    );
    report(
        "instantiation from InstancePre, example",
        (0..2_000)
            .map(|_| {
                let t = Instant::now();
                example.instantiate_bare().expect("instantiate");
                t.elapsed()
            })
            .collect(),
    );

    // The cached path as entry points take it: the gate finds the decision without calling the plugin.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let gate = AuthGate::default();
    let cached = runtime.block_on(async {
        let first = gate.check(&plugins, &AnonymousAction::ALL, Some("jwt"), request("lobby")).await;
        assert!(matches!(first, Outcome::Allowed { .. }), "{first:?}");
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let r = request("lobby");
            let t = Instant::now();
            let outcome = gate.check(&plugins, &AnonymousAction::ALL, Some("jwt"), r).await;
            samples.push(t.elapsed());
            assert!(matches!(outcome, Outcome::Allowed { .. }));
        }
        samples
    });
    let calls_before = sluice::plugin::PluginStats::get(&jwt.stats().calls);
    report("cached decision through the gate", cached);
    assert_eq!(sluice::plugin::PluginStats::get(&jwt.stats().calls), calls_before, "no plugin calls when cached");
}
