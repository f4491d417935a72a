//! The Redis backend, for a pair: every key under `portico:acme:`. The lock is `SET NX PX`
//! (taken only when free, gone when its lease runs out, so a holder that dies frees it), and
//! it is extended or released only by its owner, each checked and done in one Lua script.

use super::{Storage, StorageError, StorageResult};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::OnceCell;

const PREFIX: &str = "portico:acme:";

/// Each call's bound: a storage that does not answer is an error, not a stalled task.
const TIMEOUT: Duration = Duration::from_secs(3);

/// KEYS[1]: the lock; ARGV: owner, lease in milliseconds. 1 when extended.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// KEYS[1]: the lock; ARGV[1]: owner. 1 when deleted.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

pub struct RedisStorage {
    client: redis::Client,
    /// Made on first use, inside the runtime the manager runs on; it reconnects by itself.
    connection: OnceCell<ConnectionManager>,
    renew: redis::Script,
    unlock: redis::Script,
}

impl RedisStorage {
    pub fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("storage.redis.url: {e}"))?;
        Ok(RedisStorage {
            client,
            connection: OnceCell::new(),
            renew: redis::Script::new(RENEW),
            unlock: redis::Script::new(UNLOCK),
        })
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let manager = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await?;
        // A clone shares the one multiplexed connection.
        Ok(manager.clone())
    }

    /// Runs `call` on a connection within [`TIMEOUT`], with Redis's error made ours.
    async fn run<T, F, Fut>(&self, what: &str, call: F) -> StorageResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let connection = self.connection().await?;
            call(connection).await
        };
        match tokio::time::timeout(TIMEOUT, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StorageError(format!("{}: {what}: {e}", self.describe()))),
            Err(_) => Err(StorageError(format!(
                "{}: {what}: no answer within {TIMEOUT:?}",
                self.describe()
            ))),
        }
    }
}

fn key(k: &str) -> String {
    format!("{PREFIX}{k}")
}

#[async_trait]
impl Storage for RedisStorage {
    async fn get(&self, k: &str) -> StorageResult<Option<Vec<u8>>> {
        self.run("GET", |mut c| async move {
            redis::cmd("GET").arg(key(k)).query_async(&mut c).await
        })
        .await
    }

    async fn put(&self, k: &str, value: &[u8], ttl: Option<Duration>) -> StorageResult<()> {
        self.run("SET", |mut c| async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key(k)).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
            }
            cmd.query_async(&mut c).await
        })
        .await
    }

    async fn delete(&self, k: &str) -> StorageResult<()> {
        self.run("DEL", |mut c| async move {
            redis::cmd("DEL").arg(key(k)).query_async(&mut c).await
        })
        .await
    }

    async fn try_lock(&self, name: &str, owner: &str, lease: Duration) -> StorageResult<bool> {
        let lock = key(&format!("locks:{name}"));
        self.run("SET NX", |mut c| async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(&lock)
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg(lease.as_millis().max(1) as u64)
                .query_async(&mut c)
                .await?;
            if set.is_some() {
                return Ok(true);
            }
            // Already ours (taken again before releasing): extend it.
            let renewed: i64 = self
                .renew
                .key(&lock)
                .arg(owner)
                .arg(lease.as_millis().max(1) as u64)
                .invoke_async(&mut c)
                .await?;
            Ok(renewed == 1)
        })
        .await
    }

    async fn renew_lock(&self, name: &str, owner: &str, lease: Duration) -> StorageResult<bool> {
        let lock = key(&format!("locks:{name}"));
        self.run("renew lock", |mut c| async move {
            let renewed: i64 = self
                .renew
                .key(&lock)
                .arg(owner)
                .arg(lease.as_millis().max(1) as u64)
                .invoke_async(&mut c)
                .await?;
            Ok(renewed == 1)
        })
        .await
    }

    async fn unlock(&self, name: &str, owner: &str) -> StorageResult<()> {
        let lock = key(&format!("locks:{name}"));
        self.run("unlock", |mut c| async move {
            let _: i64 = self
                .unlock
                .key(&lock)
                .arg(owner)
                .invoke_async(&mut c)
                .await?;
            Ok(())
        })
        .await
    }

    fn describe(&self) -> String {
        // The address only: the URL may carry a password.
        format!("redis at {}", self.client.get_connection_info().addr())
    }
}
