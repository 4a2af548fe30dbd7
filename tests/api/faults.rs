//! Real faults: a MongoDB server of the test's own, killed and restarted mid-reply.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::helpers::fake_deepseek::{paced, reply_body};
use crate::helpers::{assert_nothing_lost_or_stuck, closed_port, spawn_app_with, text_of};

/// A private nx-27017 (the MongoDB wire-protocol test server), so killing it touches no
/// other test.
struct PrivateMongo {
    child: Option<Child>,
    port: u16,
    data: tempfile::TempDir,
}

fn server_binary() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/nx-27017");
    path.exists().then_some(path)
}

impl PrivateMongo {
    async fn start() -> Option<PrivateMongo> {
        server_binary()?;
        let mut mongo = PrivateMongo { child: None, port: closed_port(), data: tempfile::tempdir().unwrap() };
        mongo.launch().await;
        Some(mongo)
    }

    async fn launch(&mut self) {
        let child = Command::new(server_binary().unwrap())
            .args(["--data-dir", self.data.path().to_str().unwrap(), "--host", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            // Without its own pid file the server refuses to start beside another instance.
            .arg("--pid-file")
            .arg(self.data.path().join("nx.pid"))
            .arg("--log-file")
            .arg(self.data.path().join("nx.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "the private MongoDB test server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn a_reply_that_ends_while_mongodb_is_down_is_stored_when_it_returns_and_only_then_done() {
    let Some(mut mongo) = PrivateMongo::start().await else {
        eprintln!("skipped: needs nx-27017 in .tools/venv; run ./scripts/test.sh");
        return;
    };
    let uri = mongo.uri();
    let app = spawn_app_with(|s| {
        s.mongodb_uri = Some(SecretString::from(uri.clone()));
        s.mongodb_server_selection_timeout_ms = 500;
        s.mongodb_connect_timeout_ms = 500;
    })
    .await;
    let (token, conversation) = app.user_with_conversation("outage").await;
    let pieces: Vec<String> = (0..20).map(|i| format!("第{i}句。")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    app.deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(100)));
    let mut reader = app.stream_message(&token, &conversation, "讲完它").await;
    let start = reader.next().await.unwrap();
    let first = reader.next().await.unwrap();

    // MongoDB dies mid-reply; the reply finishes upstream while it is down. The outage
    // lasts FAULT_OUTAGE_SECS (6 here; run with 80 for the long version).
    let outage_secs: u64 = std::env::var("FAULT_OUTAGE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    mongo.kill();
    let mut during_outage = vec![first];
    let outage = tokio::time::timeout(Duration::from_secs(outage_secs), async {
        while let Some(event) = reader.next().await {
            let terminal = event.name == "done" || event.name == "error";
            during_outage.push(event);
            if terminal {
                break;
            }
        }
    })
    .await;
    mongo.launch().await;
    let (after, _) = reader.all().await;

    assert!(outage.is_err(), "no end was announced while the reply could not be stored: {:?}", during_outage.last());
    let last = after.last().expect("the end arrives once MongoDB is back");
    assert_eq!(last.name, "done", "{:?}", last.data);
    let streamed = format!("{}{}", text_of(&during_outage), text_of(&after));
    assert_eq!(streamed, pieces.concat());
    let reply_id = start.data["assistant_message_id"].as_str().unwrap();
    // The API answers 503 until its storage watcher sees MongoDB again (within a second).
    let mut stored = serde_json::Value::Null;
    for _ in 0..100 {
        let response = app.get_message(&token, &conversation, reply_id).await;
        if response.status() == 200 {
            stored = response.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored["status"], "complete");
    assert_eq!(stored["content"], pieces.concat(), "the whole reply is stored, not the last periodic save");
    let conversation_id = companion_backend::domain::ConversationId::parse(&conversation).unwrap();
    // The app's own database lives on the private server.
    let store: companion_backend::store::DynStore = std::sync::Arc::new(
        companion_backend::store::MongoStore::connect(&mongo.uri(), &app.db_name, &crate::helpers::store_options())
            .await
            .unwrap(),
    );
    assert_nothing_lost_or_stuck(&store, conversation_id, &["讲完它"]).await;
}
