//! The listener: one dedicated connection that `LISTEN`s on the store's
//! channel and turns notifications into [`Notice`]s.
//!
//! `start` connects and subscribes before it returns, so every commit
//! after it is heard. When the connection drops, the task reconnects with
//! a backoff (100 ms doubling to 2 s), subscribes again and sends
//! [`Notice::Reconnected`]: notifications sent while it was away are lost,
//! so every parked waiter must check its process again.
//!
//! A connection can also die without a word (half-open: the server or a
//! middlebox forgot it, and nothing arrives any more). A quiet connection
//! is indistinguishable from a quiet database, so every heartbeat
//! ([`PostgresOptions::listener_heartbeat`](super::PostgresOptions::listener_heartbeat))
//! the task runs a `SELECT 1` on it; one that errors or does not answer
//! before the next beat counts as a dropped connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{Inner, CHANNEL};
use crate::store::Notice;

/// Subscribes, then keeps the subscription on a task of its own.
pub(super) async fn start(
    inner: Arc<Inner>,
    notices: mpsc::UnboundedSender<Notice>,
    heartbeat: Duration,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let first = subscribe(&inner, notices.clone()).await.map_err(|error| format!("LISTEN failed: {error}"))?;
    Ok(tokio::spawn(async move {
        let mut subscription = first;
        loop {
            subscription.until_dead(heartbeat).await;
            if notices.is_closed() {
                return;
            }
            // Closes the connection, if it was only silent.
            drop(subscription);
            let mut backoff = Duration::from_millis(100);
            subscription = loop {
                tokio::time::sleep(backoff).await;
                match subscribe(&inner, notices.clone()).await {
                    Ok(subscription) => break subscription,
                    Err(error) => {
                        tracing::warn!(%error, "the registry's LISTEN connection cannot reconnect yet");
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            };
            tracing::info!("the registry's LISTEN connection is back; every waiter checks again");
            if notices.send(Notice::Reconnected).is_err() {
                return;
            }
        }
    }))
}

/// One subscribed connection: the client, and the task that drives the
/// connection and forwards its notifications. Dropping it (when the
/// listener task is aborted) closes the connection.
struct Subscription {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// Returns when the connection ended, or when it failed a heartbeat.
    async fn until_dead(&mut self, heartbeat: Duration) {
        let mut beats = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut self.driver => return,
                _ = beats.tick() => {
                    match tokio::time::timeout(heartbeat, self.client.simple_query("SELECT 1")).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => {
                            tracing::warn!(%error, "the registry's LISTEN connection failed its heartbeat");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!("the registry's LISTEN connection did not answer its heartbeat");
                            return;
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects and subscribes; the driver forwards notifications until the
/// connection ends.
async fn subscribe(
    inner: &Inner,
    notices: mpsc::UnboundedSender<Notice>,
) -> Result<Subscription, tokio_postgres::Error> {
    let (client, mut connection) = inner.config.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|context| connection.poll_message(context)).await {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    match serde_json::from_str::<Vec<String>>(notification.payload()) {
                        Ok(ids) => {
                            if notices.send(Notice::Changed(ids)).is_err() {
                                return;
                            }
                        }
                        Err(error) => tracing::warn!(%error, "a registry notification is not a list of ids"),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "the registry's LISTEN connection failed");
                    return;
                }
                None => return,
            }
        }
    });
    let subscription = Subscription { client, driver };
    subscription.client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok(subscription)
}
