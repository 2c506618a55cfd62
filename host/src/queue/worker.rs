//! A worker: reads jobs from the Redis streams of its class ([`super::class`]) with the
//! consumer group, runs each through the service's pipeline, stores the outcome (first write
//! wins) and only then acknowledges it. While it reads, it advertises its class.
//! An entry whose worker died stays pending; after `queue.claim_idle_ms` without its
//! worker's heartbeat another worker reclaims it (XAUTOCLAIM) and runs it again, until it
//! has been delivered more than `queue.max_deliveries` times: then it fails as `poison_job`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamPendingCountReply, StreamReadReply};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::QueueError;
use super::class::{ADVERTISE_EVERY, WorkerClass};
use super::redis::{GROUP, RedisQueue, unavailable};
use super::wire::{self, RequestRecord};
use crate::jobs::{EventKind, Failure, JobEvent, Outcome, unix_ms};
use crate::pipeline::Stage;
use crate::service::Service;

/// How long a read blocks for new entries.
const READ_BLOCK_MS: u64 = 1000;
/// How often a running job's cancel key is checked besides at each stage.
const CANCEL_POLL: Duration = Duration::from_millis(500);

/// One delivery of a job to this worker.
struct Delivery {
    /// The stream it came from.
    stream: &'static str,
    /// The stream entry's id.
    entry: String,
    /// The job's id.
    job: String,
    /// When the API node enqueued it.
    enqueued_at_ms: Option<u64>,
    /// How often it has been delivered, this time included.
    deliveries: usize,
    /// Whether it was reclaimed from another worker.
    reclaimed: bool,
}

/// Runs jobs from `queue` until the service drains, at most `generation_slots` at once. The
/// jobs themselves run as tracked work of the service, so the drain waits for them. The
/// worker's class comes from what its pipeline can run.
pub async fn run(service: Arc<Service>, queue: Arc<RedisQueue>, slots: usize) {
    let consumer = format!(
        "worker-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let class = WorkerClass::of(&service.pipeline().capabilities());
    let streams: Vec<&'static str> = class.reads().iter().map(|c| c.stream()).collect();
    tracing::info!(%consumer, slots, class = class.name(), "worker reading the job queue");
    let reading = CancellationToken::new();
    let advertising = tokio::spawn(advertise(
        queue.clone(),
        class,
        consumer.clone(),
        reading.clone(),
    ));
    let slots = Arc::new(Semaphore::new(slots.max(1)));
    let claim_idle = Duration::from_millis(queue.config().claim_idle_ms);
    let mut last_claim = Instant::now() - claim_idle;
    let mut blocking: Option<MultiplexedConnection> = None;
    // Entries one read delivered beyond the first (one per stream at most): run next.
    let mut delivered = VecDeque::new();
    while !service.is_draining() {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let delivery = match delivered.pop_front() {
            Some(delivery) => Ok(Some(delivery)),
            None if last_claim.elapsed() >= claim_idle / 4 => {
                last_claim = Instant::now();
                reclaim(&queue, &streams, &consumer, claim_idle).await
            }
            None => Ok(None),
        };
        let delivery = match delivery {
            Ok(Some(delivery)) => Ok(Some(delivery)),
            Ok(None) => read(&queue, &mut blocking, &consumer, &streams, &mut delivered).await,
            Err(error) => Err(error),
        };
        let delivery = match delivery {
            Ok(Some(delivery)) => delivery,
            Ok(None) => continue,
            Err(error) => {
                service.metrics().queue_connected.set(0);
                tracing::warn!(%error, "reading the job queue failed; retrying");
                blocking = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Err(error) = queue.ensure_group().await {
                    tracing::debug!(%error, "the queue is still unreachable");
                }
                continue;
            }
        };
        service.metrics().queue_connected.set(1);
        if service.is_draining() {
            // Read while the drain began: left pending, another worker reclaims it.
            break;
        }
        let m = service.metrics();
        m.queue_deliveries.observe(delivery.deliveries as f64);
        if delivery.reclaimed {
            m.queue_reclaims.inc();
        }
        if let Some(at) = delivery.enqueued_at_ms {
            m.queue_wait_seconds
                .observe(unix_ms().saturating_sub(at) as f64 / 1e3);
        }
        let (service_, queue_, consumer_) = (service.clone(), queue.clone(), consumer.clone());
        let span = tracing::info_span!("job", id = %delivery.job, deliveries = delivery.deliveries);
        service.spawn_tracked(
            async move {
                let _permit = permit;
                let busy = service_.metrics().worker_busy.clone();
                busy.inc();
                let started = Instant::now();
                process(&service_, &queue_, &consumer_, &delivery).await;
                service_
                    .metrics()
                    .worker_busy_seconds
                    .inc_by(started.elapsed().as_secs_f64());
                busy.dec();
            }
            .instrument(span),
        );
    }
    // Entries read but not started are left pending: another worker reclaims them.
    reading.cancel();
    let _ = advertising.await;
    tracing::info!(%consumer, "worker stopped reading the job queue");
}

/// Advertises this worker's class every [`ADVERTISE_EVERY`] until `reading` is canceled, then
/// withdraws it.
async fn advertise(
    queue: Arc<RedisQueue>,
    class: WorkerClass,
    consumer: String,
    reading: CancellationToken,
) {
    let mut tick = tokio::time::interval(ADVERTISE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = reading.cancelled() => break,
        }
        if let Err(error) = queue.advertise(class, &consumer).await {
            tracing::debug!(%error, "advertising the worker failed");
        }
    }
    if let Err(error) = queue.retire(class, &consumer).await {
        tracing::warn!(%error, "withdrawing the worker's advertisement failed; it lapses");
    }
}

/// Takes over one entry of `streams` idle for `claim_idle` (its worker died or hangs).
async fn reclaim(
    queue: &RedisQueue,
    streams: &[&'static str],
    consumer: &str,
    claim_idle: Duration,
) -> Result<Option<Delivery>, QueueError> {
    let mut conn = queue.conn();
    for &stream in streams {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(claim_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some(entry) = reply.claimed.into_iter().next() else {
            continue;
        };
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(stream)
            .arg(GROUP)
            .arg(&entry.id)
            .arg(&entry.id)
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let deliveries = pending.ids.first().map_or(1, |p| p.times_delivered);
        return Ok(delivery_of(stream, entry.id, &entry.map, deliveries, true));
    }
    Ok(None)
}

/// Waits a moment for a new entry of `streams`, preferring them in their order: with several,
/// each is first asked in turn without waiting, then all at once with the wait. One read of
/// several streams may deliver one entry of each (when they fill at the same moment): the
/// first is answered and the others put in `delivered`.
async fn read(
    queue: &RedisQueue,
    blocking: &mut Option<MultiplexedConnection>,
    consumer: &str,
    streams: &[&'static str],
    delivered: &mut VecDeque<Delivery>,
) -> Result<Option<Delivery>, QueueError> {
    if blocking.is_none() {
        *blocking = Some(queue.dedicated().await?);
    }
    let conn = blocking.as_mut().expect("connected above");
    if streams.len() > 1 {
        for stream in streams {
            let found = read_group(conn, consumer, std::slice::from_ref(stream), None).await?;
            if let Some(first) = found.into_iter().next() {
                return Ok(Some(first));
            }
        }
    }
    let mut found = read_group(conn, consumer, streams, Some(READ_BLOCK_MS)).await?;
    let first = (!found.is_empty()).then(|| found.remove(0));
    delivered.extend(found);
    Ok(first)
}

/// One `XREADGROUP` of new entries of `streams` (at most one each), waiting `block` ms for
/// one when given; the deliveries in the order of `streams`.
async fn read_group(
    conn: &mut MultiplexedConnection,
    consumer: &str,
    streams: &[&'static str],
    block: Option<u64>,
) -> Result<Vec<Delivery>, QueueError> {
    let mut command = redis::cmd("XREADGROUP");
    command
        .arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(1);
    if let Some(ms) = block {
        command.arg("BLOCK").arg(ms);
    }
    let reply: Option<StreamReadReply> = command
        .arg("STREAMS")
        .arg(streams)
        .arg(vec![">"; streams.len()])
        .query_async(conn)
        .await
        .map_err(unavailable)?;
    let mut keys = reply.map(|reply| reply.keys).unwrap_or_default();
    keys.sort_by_key(|key| streams.iter().position(|s| *s == key.key));
    Ok(keys
        .into_iter()
        .flat_map(|key| {
            let stream = streams.iter().copied().find(|s| *s == key.key);
            key.ids
                .into_iter()
                .filter_map(move |entry| delivery_of(stream?, entry.id, &entry.map, 1, false))
        })
        .collect())
}

fn delivery_of(
    stream: &'static str,
    entry: String,
    fields: &HashMap<String, Value>,
    deliveries: usize,
    reclaimed: bool,
) -> Option<Delivery> {
    let text = |name: &str| match fields.get(name)? {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    };
    Some(Delivery {
        job: text("id")?,
        enqueued_at_ms: text("enqueued_at_ms").and_then(|v| v.parse().ok()),
        stream,
        entry,
        deliveries,
        reclaimed,
    })
}

/// Runs one delivered job to its stored outcome, then acknowledges it. When the outcome
/// cannot be stored (Redis is down), the entry is left pending for a reclaim.
async fn process(service: &Arc<Service>, queue: &RedisQueue, consumer: &str, delivery: &Delivery) {
    let outcome = match run_job(service, queue, consumer, delivery).await {
        Ok(Some(outcome)) => outcome,
        Ok(None) => return acknowledge(queue, delivery).await,
        Err(error) => {
            tracing::warn!(%error, "a job could not be read; it stays pending");
            return;
        }
    };
    // The outcome is stored first (retrying while Redis is away), the entry acknowledged
    // after: a crash in between leaves it pending, and its reclaimer finds the outcome.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match queue.finish(&delivery.job, &outcome).await {
            Ok(_) => break,
            Err(error) if Instant::now() < deadline => {
                tracing::warn!(%error, "storing a job's outcome failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => {
                tracing::error!(%error, "storing a job's outcome failed; it stays pending");
                return;
            }
        }
    }
    acknowledge(queue, delivery).await;
}

/// Runs the job; none when there is nothing to run (it expired or already finished).
async fn run_job(
    service: &Arc<Service>,
    queue: &RedisQueue,
    consumer: &str,
    delivery: &Delivery,
) -> Result<Option<Outcome>, QueueError> {
    let Some((request, photo)) = queue.start(&delivery.job).await? else {
        return Ok(None);
    };
    let record: RequestRecord = serde_json::from_str(&request)
        .map_err(|e| QueueError::Unavailable(format!("a stored request is malformed: {e}")))?;
    let style = record.style.clone();
    let max = queue.config().max_deliveries as usize;
    if delivery.deliveries > max {
        tracing::warn!(job = %delivery.job, deliveries = delivery.deliveries, "poison job failed");
        service.metrics().queue_poisoned.inc();
        return Ok(Some(Outcome::Failed(super::poison(
            &style,
            delivery.deliveries - 1,
        ))));
    }
    if let Some(failure) = fleet_mismatch(service, &record) {
        return Ok(Some(Outcome::Failed(failure)));
    }
    let ticket = match service.admission().admit_generation(&style) {
        Ok(ticket) => ticket,
        Err(overloaded) => {
            return Ok(Some(Outcome::Failed(
                crate::server::error::overloaded_failure(service.shed(overloaded), &style),
            )));
        }
    };

    let cancel = service.abort_token().child_token();
    let done = CancellationToken::new();
    let _stop_helpers = done.clone().drop_guard();
    tokio::spawn(heartbeat(
        queue.conn(),
        consumer.to_string(),
        delivery.stream,
        delivery.entry.clone(),
        Duration::from_millis(queue.config().claim_idle_ms) / 3,
        done.clone(),
    ));
    let (stages, forwarded) = mpsc::unbounded_channel::<Stage>();
    let forward = forward_stages(queue, &delivery.job, forwarded, cancel.clone());
    let watch = watch_cancel(queue, &delivery.job, cancel.clone(), done.clone());
    let progress = move |stage: Stage| {
        let _ = stages.send(stage);
    };
    let request = record.into_request(delivery.job.clone(), photo);
    let generation = async {
        let outcome = match queue.config().simulate_work_ms {
            Some(ms) => simulate(ms, &request, &cancel).await,
            None => service
                .generate(request, ticket, &progress, &cancel)
                .await
                .into(),
        };
        drop(progress);
        done.cancel();
        outcome
    };
    let (outcome, (), ()) = tokio::join!(generation, forward, watch);
    Ok(Some(outcome))
}

/// A style digest check for a fleet: the job was planned against the digest serving on its
/// API node; a worker serving a different build of the style says so.
fn fleet_mismatch(service: &Service, record: &RequestRecord) -> Option<Failure> {
    let wanted = record.digest.as_deref()?;
    let status = service.pipeline().registry().status(&record.style)?;
    let here = status.digest.as_deref()?;
    if here == wanted {
        return None;
    }
    Some(crate::server::error::style_mismatch_failure(
        &record.style,
        wanted,
        here,
    ))
}

/// Keeps the entry from looking idle while the job runs: claims it again for this consumer
/// (JUSTID: the delivery count stays) every `period`.
async fn heartbeat(
    mut conn: redis::aio::ConnectionManager,
    consumer: String,
    stream: &'static str,
    entry: String,
    period: Duration,
    done: CancellationToken,
) {
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(50)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = done.cancelled() => return,
        }
        let claimed: redis::RedisResult<Value> = redis::cmd("XCLAIM")
            .arg(stream)
            .arg(GROUP)
            .arg(&consumer)
            .arg(0)
            .arg(&entry)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await;
        if let Err(error) = claimed {
            tracing::debug!(%error, "a heartbeat failed");
        }
    }
}

/// Stores each stage's event in order; a cancel seen there stops the generation.
async fn forward_stages(
    queue: &RedisQueue,
    job: &str,
    mut stages: mpsc::UnboundedReceiver<Stage>,
    cancel: CancellationToken,
) {
    while let Some(stage) = stages.recv().await {
        let event = JobEvent {
            seq: 0,
            kind: EventKind::Stage(stage),
            at_ms: unix_ms(),
        }
        .relayed(job);
        match queue.progress(job, &wire::stage_field(stage), &event).await {
            Ok(true) => {}
            Ok(false) => cancel.cancel(),
            Err(error) => tracing::debug!(%error, "a progress event was not stored"),
        }
    }
}

/// Cancels the generation when the job's cancel key appears (checked every [`CANCEL_POLL`]
/// too, for long stages), until `done`.
async fn watch_cancel(
    queue: &RedisQueue,
    job: &str,
    cancel: CancellationToken,
    done: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(CANCEL_POLL) => {}
            () = done.cancelled() => return,
            () = cancel.cancelled() => return,
        }
        if let Ok(true) = queue.should_stop(job).await {
            cancel.cancel();
            return;
        }
    }
}

/// The benchmark aid (`--simulate-work MS`): a sleep in place of the pipeline, answering a
/// one-pixel image.
async fn simulate(
    ms: u64,
    request: &crate::service::GenerationRequest,
    cancel: &CancellationToken,
) -> Outcome {
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => {}
        () = cancel.cancelled() => return Outcome::Canceled,
    }
    Outcome::Succeeded(Arc::new(crate::server::views::Finished::simulated(
        &request.id,
        &request.style,
        request.format,
        ms,
    )))
}

/// Acknowledges and deletes the entry (its job has its outcome, or nothing to run).
async fn acknowledge(queue: &RedisQueue, delivery: &Delivery) {
    let acked: redis::RedisResult<()> = redis::pipe()
        .cmd("XACK")
        .arg(delivery.stream)
        .arg(GROUP)
        .arg(&delivery.entry)
        .ignore()
        .cmd("XDEL")
        .arg(delivery.stream)
        .arg(&delivery.entry)
        .ignore()
        .query_async(&mut queue.conn())
        .await;
    if let Err(error) = acked {
        tracing::warn!(%error, "acknowledging a job failed; a reclaim will find its outcome");
    }
}
