//! Chat endpoints of the test app.
use std::time::Duration;

use serde_json::{json, Value};

use super::app::TestApp;
use super::sse_client::EventReader;

impl TestApp {
    pub async fn create_conversation(&self, token: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url("/api/conversations")).bearer_auth(token).json(body).send().await.unwrap()
    }

    /// A fresh user with a conversation with the default persona: (token, conversation id).
    pub async fn user_with_conversation(&self, name: &str) -> (String, String) {
        self.user_with_persona(name, None).await
    }

    pub async fn user_with_persona(&self, name: &str, persona: Option<&str>) -> (String, String) {
        let (token, _) = self.login_as(&format!("o_{name}")).await;
        let body = match persona {
            Some(id) => json!({"persona_id": id}),
            None => json!({}),
        };
        let response = self.create_conversation(&token, &body).await;
        assert_eq!(response.status(), 201);
        let conversation: Value = response.json().await.unwrap();
        (token, conversation["id"].as_str().unwrap().to_string())
    }

    pub async fn list_conversations(&self, token: &str, query: &str) -> reqwest::Response {
        self.client.get(self.url(&format!("/api/conversations{query}"))).bearer_auth(token).send().await.unwrap()
    }

    pub async fn conversation(
        &self,
        method: reqwest::Method,
        token: &str,
        id: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(&format!("/api/conversations/{id}"))).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    pub async fn send_message(&self, token: &str, conversation: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/conversations/{conversation}/messages")))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Sends `content` with streaming and returns a reader of the reply's events.
    pub async fn stream_message(&self, token: &str, conversation: &str, content: &str) -> EventReader {
        let response = self.send_message(token, conversation, &json!({"content": content})).await;
        assert_eq!(response.status(), 200, "send failed: {:?}", response.text().await);
        EventReader::new(response)
    }

    pub async fn list_messages(&self, token: &str, conversation: &str, query: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/conversations/{conversation}/messages{query}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn messages(&self, token: &str, conversation: &str) -> Vec<Value> {
        let body: Value = self.list_messages(token, conversation, "?limit=100").await.json().await.unwrap();
        body["items"].as_array().unwrap().clone()
    }

    pub async fn get_message(&self, token: &str, conversation: &str, message: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/conversations/{conversation}/messages/{message}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn reattach(&self, token: &str, conversation: &str, message: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/conversations/{conversation}/messages/{message}/stream")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Polls a message until it leaves `streaming` (what a callContainer client does).
    pub async fn wait_until_final(&self, token: &str, conversation: &str, message: &str) -> Value {
        for _ in 0..200 {
            let body: Value = self.get_message(token, conversation, message).await.json().await.unwrap();
            if body["status"] != "streaming" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("message {message} never finished");
    }
}

impl TestApp {
    /// A session for `openid` made directly in the store, for tests where WeChat is down.
    pub async fn store_user_token(&self, openid: &str) -> (String, String) {
        let user =
            self.store.find_or_create_user(&companion_backend::domain::OpenId::parse(openid).unwrap()).await.unwrap();
        let keys = companion_backend::auth::JwtKeys::new(
            &secrecy::SecretString::from(super::TEST_JWT_SECRET),
            None,
            "companion-backend",
            "companion-miniprogram",
            3600,
        );
        (keys.issue(user.id, user.session_version, None).unwrap().token, user.id.to_string())
    }
}
