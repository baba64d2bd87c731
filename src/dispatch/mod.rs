//! Stage 5: dispatch. Moves stored events to their destinations at a pace
//! the apps can take, in order per entity, with retries and dead letters.
//!
//! Invariants:
//! - Ingest never waits on delivery: dispatch reads the store, never the
//!   request path.
//! - Each destination has its own worker, pacer and HTTP pool; a slow or
//!   failing destination never holds up another.
//! - Delivery state lives in the store ([`crate::store::delivery`]), so a
//!   restart resumes exactly the pending deliveries, lanes rebuilt in order.
//! - Retry decisions are a pure function ([`retry::decide`]).

pub mod outbound;
pub mod pacer;
pub mod retry;
pub mod worker;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;

/// Running destination workers.
pub struct Dispatcher {
    tasks: Vec<(String, JoinHandle<()>)>,
}

impl Dispatcher {
    /// Starts one worker per destination.
    pub fn start(
        config: &Config,
        store: &Store,
        clock: &Clock,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Dispatcher> {
        let mut tasks = Vec::new();
        let late_policy: std::collections::HashMap<_, _> = config
            .sources
            .iter()
            .map(|(name, s)| (name.clone(), s.on_late))
            .collect();
        for (name, dest) in &config.destinations {
            let worker = worker::Worker::new(
                Arc::clone(dest),
                late_policy.clone(),
                store.clone(),
                clock.clone(),
            )?;
            let token = cancel.child_token();
            let dest_name = name.clone();
            let handle = tokio::spawn(async move {
                if let Err(e) = worker.run(token).await {
                    tracing::error!(destination = %dest_name, error = %e, "dispatch worker stopped on a storage error");
                }
            });
            tasks.push((name.clone(), handle));
        }
        Ok(Dispatcher { tasks })
    }

    /// Waits for every worker to finish its drain.
    pub async fn join(self) {
        for (name, task) in self.tasks {
            if task.await.is_err() {
                tracing::error!(destination = %name, "dispatch worker panicked");
            }
        }
    }
}
