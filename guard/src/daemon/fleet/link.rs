//! The NATS side of `--fleet`: one task that keeps the connection
//! (async-nats reconnects by itself), the fleet's two JetStream key-value
//! buckets, and an outbox of what this guard has to say. It knows nothing
//! of the maps: it hands the run loop every entry it sees and writes what
//! the run loop gives it. A session lasts while the connection does; each
//! new one starts by telling the run loop which bans exist now, so a
//! reconnect resynchronises without repeating anything.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, Result, anyhow};
use async_nats::{
    ConnectOptions, Event,
    jetstream::{
        self,
        kv::{Operation, Store},
        stream,
    },
};
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::sync::{mpsc, watch};

use crate::config::FleetSettings;

/// How long a ban may stay in the bucket, whatever its own time says: a
/// week. A member's report lives a minute: a member that stops reporting
/// leaves the list by itself.
const DECISIONS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
const MEMBERS_MAX_AGE: Duration = Duration::from_secs(60);
/// A write that takes longer is retried from the outbox later.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_secs(1);
/// How long a guard waits for a connection before saying it is cut off.
const CONNECT_GRACE: Duration = Duration::from_secs(3);

/// What the run loop asks the link to write.
#[derive(Debug)]
pub enum Out {
    /// A ban of this guard's, under its key; dropped from the outbox once
    /// its time (unix ms) is up.
    Put {
        key: String,
        value: Bytes,
        until_ms: u64,
    },
    /// A ban taken back, or expired.
    Delete { key: String },
    /// This member's report (only the latest one matters).
    Report(Bytes),
}

/// What the link tells the run loop.
#[derive(Debug)]
pub enum In {
    /// Connected, or cut off (with why).
    Link(Result<(), String>),
    /// A new session: the keys of every ban in the bucket now.
    Current(Vec<String>),
    /// A ban put (`Some`) or deleted (`None`).
    Decision { key: String, value: Option<Bytes> },
    /// A member's report.
    Member(Bytes),
    /// Bans of this guard's written to the bucket, and the writes still
    /// waiting (cut off, or failing).
    Flushed { published: u64, pending: usize },
}

/// Starts the link; it runs until the run loop drops its sender.
pub fn spawn(settings: FleetSettings, to_loop: mpsc::Sender<In>) -> mpsc::UnboundedSender<Out> {
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    tokio::spawn(run(settings, out_rx, to_loop));
    out_tx
}

/// The outbox: bans by key (a later write of a key replaces an earlier
/// one), and the latest report.
#[derive(Default)]
struct Outbox {
    writes: BTreeMap<String, Option<(Bytes, u64)>>,
    report: Option<Bytes>,
}

impl Outbox {
    fn add(&mut self, out: Out) {
        match out {
            Out::Put {
                key,
                value,
                until_ms,
            } => {
                self.writes.insert(key, Some((value, until_ms)));
            }
            Out::Delete { key } => {
                self.writes.insert(key, None);
            }
            Out::Report(value) => self.report = Some(value),
        }
    }
}

async fn run(
    settings: FleetSettings,
    mut out: mpsc::UnboundedReceiver<Out>,
    to_loop: mpsc::Sender<In>,
) {
    let (state_tx, mut state) = watch::channel(false);
    let client = match connect(&settings, state_tx).await {
        Ok(client) => client,
        Err(e) => {
            let _ = to_loop.send(In::Link(Err(format!("{e:#}")))).await;
            return;
        }
    };
    let js = jetstream::new(client);
    let mut outbox = Outbox::default();
    loop {
        // Until connected, the outbox only fills. async-nats retries on
        // its own and says nothing of a server it cannot reach: after a
        // grace period the run loop hears that it is cut off.
        let grace = tokio::time::sleep(CONNECT_GRACE);
        tokio::pin!(grace);
        let mut told = false;
        while !*state.borrow_and_update() {
            tokio::select! {
                changed = state.changed() => if changed.is_err() { return },
                () = &mut grace, if !told => {
                    told = true;
                    let why = format!("no connection within {}s; retrying", CONNECT_GRACE.as_secs());
                    if to_loop.send(In::Link(Err(why))).await.is_err() {
                        return;
                    }
                }
                o = out.recv() => match o {
                    Some(o) => {
                        outbox.add(o);
                        let pending = outbox.writes.len();
                        if to_loop.send(In::Flushed { published: 0, pending }).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
            }
        }
        let ended = session(&settings, &js, &mut out, &mut outbox, &to_loop, &mut state).await;
        match ended {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                let _ = to_loop.send(In::Link(Err(format!("{e:#}")))).await;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn connect(s: &FleetSettings, state: watch::Sender<bool>) -> Result<async_nats::Client> {
    let mut opts = ConnectOptions::new()
        .name(format!("guard {}", s.member))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis(250 * u64::try_from(attempt.min(8)).unwrap_or(8))
        })
        .event_callback(move |event| {
            let state = state.clone();
            async move {
                match event {
                    Event::Connected => {
                        state.send_replace(true);
                    }
                    Event::Disconnected | Event::Closed => {
                        state.send_replace(false);
                    }
                    _ => {}
                }
            }
        });
    if let Some(creds) = &s.creds {
        opts = opts
            .credentials_file(creds)
            .await
            .with_context(|| format!("reading the NATS credentials {}", creds.display()))?;
    }
    if let Some(ca) = &s.tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &s.tls_client {
        opts = opts
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    opts.connect(s.server.as_str())
        .await
        .with_context(|| format!("connecting to {}", s.server))
}

/// Opens a bucket, creating it if it is not there. Created as the
/// key-value layout's stream directly: async-nats' `create_key_value`
/// first reads account fields that nats-server 2.9 (Debian's) does not
/// send, and the stream is all a bucket is.
async fn bucket(js: &jetstream::Context, name: String, max_age: Duration) -> Result<Store> {
    if let Ok(store) = js.get_key_value(name.clone()).await {
        return Ok(store);
    }
    js.create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the key-value bucket {name}"))?;
    js.get_key_value(name.clone())
        .await
        .with_context(|| format!("opening the key-value bucket {name}"))
}

/// One connected session. `Ok(true)`: the run loop is gone; `Ok(false)`:
/// the connection dropped.
async fn session(
    s: &FleetSettings,
    js: &jetstream::Context,
    out: &mut mpsc::UnboundedReceiver<Out>,
    outbox: &mut Outbox,
    to_loop: &mpsc::Sender<In>,
    state: &mut watch::Receiver<bool>,
) -> Result<bool> {
    let decisions = bucket(js, format!("{}-decisions", s.bucket), DECISIONS_MAX_AGE).await?;
    let members = bucket(js, format!("{}-members", s.bucket), MEMBERS_MAX_AGE).await?;
    let current: Vec<String> = decisions
        .keys()
        .await
        .context("listing the fleet's bans")?
        .try_collect()
        .await
        .context("listing the fleet's bans")?;
    let mut bans = decisions
        .watch_with_history(">")
        .await
        .context("watching the fleet's bans")?;
    let mut reports = members
        .watch_with_history(">")
        .await
        .context("watching the fleet's members")?;
    if to_loop.send(In::Current(current)).await.is_err()
        || to_loop.send(In::Link(Ok(()))).await.is_err()
    {
        return Ok(true);
    }
    flush(s, &decisions, &members, outbox, to_loop).await;
    let mut retry = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return Ok(true);
                }
                if !*state.borrow_and_update() {
                    let _ = to_loop.send(In::Link(Err("the connection dropped".into()))).await;
                    return Ok(false);
                }
            }
            o = out.recv() => {
                let Some(o) = o else { return Ok(true) };
                outbox.add(o);
                while let Ok(o) = out.try_recv() {
                    outbox.add(o);
                }
                flush(s, &decisions, &members, outbox, to_loop).await;
            }
            entry = bans.next() => {
                let entry = entry
                    .ok_or_else(|| anyhow!("the watch of the fleet's bans ended"))?
                    .context("watching the fleet's bans")?;
                let value = (entry.operation == Operation::Put).then_some(entry.value);
                if to_loop.send(In::Decision { key: entry.key, value }).await.is_err() {
                    return Ok(true);
                }
            }
            entry = reports.next() => {
                let entry = entry
                    .ok_or_else(|| anyhow!("the watch of the fleet's members ended"))?
                    .context("watching the fleet's members")?;
                if entry.operation == Operation::Put
                    && to_loop.send(In::Member(entry.value)).await.is_err()
                {
                    return Ok(true);
                }
            }
            _ = retry.tick(), if !outbox.writes.is_empty() || outbox.report.is_some() => {
                flush(s, &decisions, &members, outbox, to_loop).await;
            }
        }
    }
}

/// Writes what the outbox holds, all at once: each write waits for the
/// server's acknowledgement, and a burst of bans one after another would
/// queue each behind the last one's round trip. What fails stays for the
/// next try; bans whose time is up are not written.
async fn flush(
    s: &FleetSettings,
    decisions: &Store,
    members: &Store,
    outbox: &mut Outbox,
    to_loop: &mpsc::Sender<In>,
) {
    let now = crate::host::clock::unix_now_ms();
    let writes: Vec<(String, Option<(Bytes, u64)>)> = std::mem::take(&mut outbox.writes)
        .into_iter()
        .filter(|(_, w)| w.as_ref().is_none_or(|(_, until)| *until > now))
        .collect();
    let done = futures_util::future::join_all(writes.iter().map(|(key, write)| async move {
        match write {
            Some((value, _)) => {
                tokio::time::timeout(WRITE_TIMEOUT, decisions.put(key, value.clone()))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            None => tokio::time::timeout(WRITE_TIMEOUT, decisions.delete(key))
                .await
                .is_ok_and(|r| r.is_ok()),
        }
    }))
    .await;
    let mut published = 0;
    for ((key, write), written) in writes.into_iter().zip(done) {
        if written {
            published += u64::from(write.is_some());
        } else {
            outbox.writes.insert(key, write);
        }
    }
    if let Some(report) = outbox.report.take()
        && !matches!(
            tokio::time::timeout(WRITE_TIMEOUT, members.put(&s.member, report.clone())).await,
            Ok(Ok(_))
        )
    {
        outbox.report = Some(report);
    }
    let pending = outbox.writes.len();
    let _ = to_loop.send(In::Flushed { published, pending }).await;
}
