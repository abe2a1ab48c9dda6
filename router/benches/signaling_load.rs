//! Signaling under load, Sluice side by side with Node's socket.io server (`web/bench/signaling-anchor.mjs`, the
//! same protocols): both pinned to core 0, the same load generator (`web/bench/signaling-load.mjs`: the npm
//! socket.io-client and ws, on core 1). Three scenarios, alternating servers run by run:
//! - relay: rooms of 4, every client signalling its neighbour (`signal {to, data}` relayed as `signal {from,
//!   data}`) at a fixed rate: messages relayed per second of server CPU, and delivery latency;
//! - chat: one chatter to 1,000 live viewers over plain WebSocket: deliveries per second of server CPU, p99;
//! - idle: resident memory per idle Socket.IO connection.
//!
//! Run: `cargo bench -p sluice --bench signaling_load -- [RUNS]` (needs `web/node_modules`: the test command
//! installs them).

mod support;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::Router;

fn web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

/// A server under test: its address and process, and what keeps it running.
struct Server {
    base: String,
    pid: u32,
    _keep: Box<dyn std::any::Any>,
}

fn sluice() -> Server {
    let router = Router::start(
        "[plugins.rooms]\nsource = \"builtin:signal-rooms\"\nmount = \"/socket.io/\"\n\n\
         [plugins.live]\nsource = \"builtin:signal-live\"\nmount = \"/ws/live\"\n\
         config = { route = \"live\", chat_per_10s = 100000 }\n\n\
         [[route]]\nname = \"live\"\nfrom = \"whip\"\nto = [\"whep\"]\n",
    );
    Server { base: format!("http://{}", router.http), pid: router.child.id(), _keep: Box::new(router) }
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_anchor() -> Server {
    let mut child = Command::new("taskset")
        .args(["-c", "0", "node", "bench/signaling-anchor.mjs"])
        .current_dir(web())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Node anchor (node, web/node_modules)");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read the anchor's port");
    let port = line.trim().strip_prefix("listening ").expect("the anchor says where it listens").to_string();
    let pid = child.id();
    Server { base: format!("http://127.0.0.1:{port}"), pid, _keep: Box::new(Node(child)) }
}

/// One load run against `server`; its JSON result.
fn load(server: &Server, args: &[&str]) -> serde_json::Value {
    let out = Command::new("taskset")
        .args(["-c", "1", "node", "bench/signaling-load.mjs", &server.base, &server.pid.to_string()])
        .args(args)
        .current_dir(web())
        .output()
        .expect("run the load generator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "load generator failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON result")
}

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2);
    let scenarios: [(&str, &[&str], &str); 3] = [
        ("relay: 100 rooms of 4, 40 signals/s per client", &["relay", "100", "40", "10"], "per_core_s"),
        ("chat: 1 chatter, 20 chats/s, 1,000 viewers", &["chat", "1000", "20", "10"], "per_core_s"),
        ("idle: 2,000 Socket.IO connections", &["idle", "2000"], "kb_per_connection"),
    ];
    for (title, args, key) in scenarios {
        println!("## {title}");
        let mut ratios = Vec::new();
        for run in 0..runs {
            // Alternating which server goes first, so drift on the machine hits both alike.
            let order: [&str; 2] = if run % 2 == 0 { ["sluice", "node"] } else { ["node", "sluice"] };
            let mut values = std::collections::HashMap::new();
            for name in order {
                let server = if name == "sluice" { sluice() } else { node_anchor() };
                let result = load(&server, args);
                println!("{name:6} {result}");
                values.insert(name, result[key].as_f64().unwrap_or(f64::NAN));
            }
            ratios.push(values["sluice"] / values["node"]);
        }
        ratios.sort_by(f64::total_cmp);
        println!("{key} sluice/node per run: {ratios:.2?}, median {:.2}\n", ratios[ratios.len() / 2]);
    }
}
