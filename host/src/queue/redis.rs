//! The Redis side of the queue that API nodes and workers share: its keys, the scripts that
//! change a job atomically, and the API node's operations (enqueue, read, cancel, follow).
//!
//! Keys (`{id}` is the job's id): a stream of jobs per worker class, `likeness:jobs:<class>`
//! (consumer group `workers`; an entry names a job; [`super::class`] says which stream a job
//! goes to), the live workers of each class (`likeness:workers:<class>`), the hash `likeness:job:{id}` (style, request, status, stage, event
//! count), `…:photo` (the upload), `…:events` (a stream of progress events, fields `seq`,
//! `name`, `data`), `…:outcome` (the result, error or cancel, written once: first write wins)
//! and `…:cancel` (set by a cancel; workers check it between stages and diffusion steps).
//! Every key of a job expires: while it waits or runs after [`PENDING_TTL`], once it has
//! finished after the job TTL.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::stream::{self, BoxStream, StreamExt as _};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Client, Script, Value};

use super::QueueError;
use super::class::{ADVERTISED_FOR, WorkerClass};
use super::wire::{self, RequestRecord};
use crate::config::{JobsConfig, QueueConfig};
use crate::jobs::{EventKind, JobEvent, JobStatus, Outcome, Snapshot, WireEvent, unix_ms};

/// The workers' consumer group (of every class's stream).
pub const GROUP: &str = "workers";
/// Finished jobs, counted by the finish script (for the drain rate).
const FINISHED: &str = "likeness:finished";
/// How long the keys of a job that has not finished are kept.
pub const PENDING_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a blocking read waits before it checks again.
const BLOCK_MS: u64 = 1000;
/// How far back the drain rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Redis's clock in milliseconds, for the scripts below (one clock for every node).
const NOW_MS: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
";

/// Queues a job: refuses (-1) when the streams hold their cap, (-2) when the owner has its
/// share; else stores the job, its photo and its `queued` event and adds it to the wanted
/// class's stream (KEYS[6]) when that class has a live worker (KEYS[7]), else to the `cpu`
/// stream (KEYS[1], which every worker reads). Answers 1 (`cpu`) or 2 (the wanted class).
const ENQUEUE: &str = r"
if redis.call('XLEN', KEYS[1]) + redis.call('XLEN', KEYS[6]) >= tonumber(ARGV[7]) then
  return -1
end
if tonumber(redis.call('GET', KEYS[5]) or '0') >= tonumber(ARGV[8]) then return -2 end
local stream, routed = KEYS[1], 1
if KEYS[6] ~= KEYS[1] and redis.call('ZCOUNT', KEYS[7], now_ms(), '+inf') > 0 then
  stream, routed = KEYS[6], 2
end
redis.call('INCR', KEYS[5])
redis.call('PEXPIRE', KEYS[5], ARGV[6])
redis.call('HSET', KEYS[2], 'style', ARGV[3], 'created_at_ms', ARGV[4], 'status', 'queued',
  'request', ARGV[2], 'owner', KEYS[5], 'seq', 1, 'stream', stream)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6])
redis.call('XADD', KEYS[4], '*', 'seq', 1, 'name', 'queued', 'data', ARGV[9])
redis.call('PEXPIRE', KEYS[4], ARGV[6])
redis.call('XADD', stream, '*', 'id', ARGV[1], 'enqueued_at_ms', ARGV[4])
return routed
";

/// Advertises worker ARGV[1] in its class's set (KEYS[1]) for ARGV[2] ms, dropping lapsed
/// advertisements.
const ADVERTISE: &str = r"
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
";

/// Per class (KEYS: its stream, then its workers' set, for each class): the stream's length,
/// its pending entries and the live workers.
const STATS: &str = r"
local now, out = now_ms(), {}
for i = 1, #KEYS, 2 do
  local ok, pending = pcall(redis.call, 'XPENDING', KEYS[i], 'workers')
  out[#out + 1] = redis.call('XLEN', KEYS[i])
  out[#out + 1] = (ok and pending[1]) or 0
  out[#out + 1] = redis.call('ZCOUNT', KEYS[i + 1], now, '+inf')
end
return out
";

/// Takes a job to run: none (nil) when it is gone or has finished; else its request and
/// photo, recording when it was first taken.
const START: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[3]) == 1 then return false end
redis.call('HSETNX', KEYS[1], 'started_at_ms', ARGV[1])
local request = redis.call('HGET', KEYS[1], 'request')
local photo = redis.call('GET', KEYS[2])
if not request or not photo then return false end
return {request, photo}
";

/// Records a stage: -1 when the job has finished (nothing recorded), -2 when it is
/// canceled, else the event's seq.
const PROGRESS: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'stage', ARGV[1])
redis.call('XADD', KEYS[2], '*', 'seq', seq, 'name', ARGV[2], 'data', ARGV[3])
if redis.call('EXISTS', KEYS[4]) == 1 then return -2 end
return seq
";

/// Finishes a job once (0 when it had already finished or is gone): stores the outcome, adds
/// the last event, lets every key expire after the job TTL and frees the owner's share.
const FINISH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'finished_at_ms', ARGV[6])
redis.call('XADD', KEYS[2], '*', 'seq', seq, 'name', ARGV[4], 'data', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[4])
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('PEXPIRE', KEYS[5], ARGV[2]) end
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and redis.call('DECR', owner) <= 0 then redis.call('DEL', owner) end
redis.call('INCR', KEYS[6])
return 1
";

/// The keys of job `id`.
pub struct JobKeys {
    /// The job's hash.
    pub hash: String,
    /// Its photo.
    pub photo: String,
    /// Its events.
    pub events: String,
    /// Its outcome.
    pub outcome: String,
    /// Its cancel flag.
    pub cancel: String,
}

impl JobKeys {
    /// The keys of job `id`.
    pub fn of(id: &str) -> JobKeys {
        let hash = format!("likeness:job:{id}");
        JobKeys {
            photo: format!("{hash}:photo"),
            events: format!("{hash}:events"),
            outcome: format!("{hash}:outcome"),
            cancel: format!("{hash}:cancel"),
            hash,
        }
    }
}

/// One class's queue, as last seen.
#[derive(Debug, Clone, Copy)]
pub struct ClassStats {
    /// Jobs in its stream (waiting or running).
    pub length: usize,
    /// Of those, delivered to a worker and not yet acknowledged.
    pub pending: usize,
    /// Its live workers (advertised and not lapsed).
    pub workers: usize,
}

/// A connection to the shared queue.
pub struct RedisQueue {
    client: Client,
    conn: ConnectionManager,
    config: QueueConfig,
    ttl: Duration,
    finish: Script,
    progress: Script,
    enqueue: Script,
    start: Script,
    advertise: Script,
    stats: Script,
    /// Samples of the finished-jobs counter, for the drain rate.
    drained: Mutex<VecDeque<(Instant, u64)>>,
}

impl RedisQueue {
    /// Connects to `config.url` (retrying for a few seconds while Redis starts) and makes sure
    /// the stream and its consumer group exist.
    pub async fn connect(config: &QueueConfig, jobs: &JobsConfig) -> anyhow::Result<RedisQueue> {
        let url = config
            .url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("no queue URL"))?;
        let client = Client::open(url)?;
        let manager = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let mut tries = 0;
        let conn = loop {
            match client
                .get_connection_manager_with_config(manager.clone())
                .await
            {
                Ok(conn) => break conn,
                Err(error) if tries < 20 => {
                    tries += 1;
                    tracing::warn!(%error, "waiting for the Redis queue");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => return Err(anyhow::anyhow!("connecting to {url}: {error}")),
            }
        };
        let queue = RedisQueue {
            client,
            conn,
            config: config.clone(),
            ttl: jobs.ttl(),
            finish: Script::new(FINISH),
            progress: Script::new(PROGRESS),
            enqueue: Script::new(&format!("{NOW_MS}{ENQUEUE}")),
            start: Script::new(START),
            advertise: Script::new(&format!("{NOW_MS}{ADVERTISE}")),
            stats: Script::new(&format!("{NOW_MS}{STATS}")),
            drained: Mutex::default(),
        };
        queue.ensure_group().await?;
        Ok(queue)
    }

    /// Creates each class's stream and its consumer group unless they exist (after a Redis
    /// restart without persistence they are gone: workers call this again when a read fails).
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        for class in WorkerClass::ALL {
            let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(class.stream())
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut self.conn())
                .await;
            match created {
                Ok(_) => {}
                Err(error) if error.code() == Some("BUSYGROUP") => {}
                Err(error) => return Err(unavailable(error)),
            }
        }
        Ok(())
    }

    /// The shared, self-reconnecting connection.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A connection of its own, for blocking reads.
    pub async fn dedicated(&self) -> Result<MultiplexedConnection, QueueError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_millis(BLOCK_MS * 3)));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unavailable)
    }

    /// The queue's settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// How long finished jobs are kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether Redis answers now.
    pub async fn ping(&self) -> bool {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await
            .is_ok()
    }

    /// Each class's queue now, in the order of [`WorkerClass::ALL`].
    pub async fn stats(&self) -> Result<Vec<(WorkerClass, ClassStats)>, QueueError> {
        let mut invocation = self.stats.prepare_invoke();
        for class in WorkerClass::ALL {
            invocation.key(class.stream()).key(class.workers());
        }
        let numbers: Vec<usize> = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(WorkerClass::ALL
            .into_iter()
            .zip(numbers.chunks_exact(3))
            .map(|(class, n)| {
                let stats = ClassStats {
                    length: n[0],
                    pending: n[1],
                    workers: n[2],
                };
                (class, stats)
            })
            .collect())
    }

    /// Advertises worker `consumer` as live in `class` for [`ADVERTISED_FOR`].
    pub async fn advertise(&self, class: WorkerClass, consumer: &str) -> Result<(), QueueError> {
        self.advertise
            .key(class.workers())
            .arg(consumer)
            .arg(ADVERTISED_FOR.as_millis() as u64)
            .invoke_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    /// Withdraws worker `consumer`'s advertisement (it stops reading).
    pub async fn retire(&self, class: WorkerClass, consumer: &str) -> Result<(), QueueError> {
        redis::cmd("ZREM")
            .arg(class.workers())
            .arg(consumer)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    /// Queues job `id` of `owner` (a hashed API key; its share is `per_key`) for a worker of
    /// class `wanted` when one is live, else for any worker.
    pub async fn enqueue(
        &self,
        id: &str,
        record: &RequestRecord,
        photo: &[u8],
        owner: &str,
        per_key: usize,
        wanted: WorkerClass,
    ) -> Result<Snapshot, QueueError> {
        let keys = JobKeys::of(id);
        let created_at_ms = unix_ms();
        let queued = JobEvent {
            seq: 1,
            kind: EventKind::Queued,
            at_ms: created_at_ms,
        }
        .relayed(id);
        let request = serde_json::to_string(record).expect("a request serialises");
        let answer: i64 = self
            .enqueue
            .key(WorkerClass::Cpu.stream())
            .key(&keys.hash)
            .key(&keys.photo)
            .key(&keys.events)
            .key(format!("likeness:owner:{owner}"))
            .key(wanted.stream())
            .key(wanted.workers())
            .arg(id)
            .arg(request)
            .arg(&record.style)
            .arg(created_at_ms)
            .arg(photo)
            .arg(PENDING_TTL.as_millis() as u64)
            .arg(self.config.max_length)
            .arg(per_key)
            .arg(queued.data)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match answer {
            -1 => Err(QueueError::Full {
                retry_after: self.retry_after().await,
            }),
            -2 => Err(QueueError::KeyFull {
                retry_after: self.retry_after().await,
            }),
            _ => Ok(Snapshot {
                id: id.to_string(),
                style_id: record.style.clone(),
                created_at_ms,
                status: JobStatus::Queued,
                stage: None,
                outcome: None,
                finished_at_ms: None,
            }),
        }
    }

    /// When a refused client should retry: the time the queue takes to drain at the rate
    /// observed over the last minute (5 s while no rate is known yet), 1 to 60 s.
    async fn retry_after(&self) -> Duration {
        let mut conn = self.conn();
        let counts: redis::RedisResult<(Option<u64>, usize, usize)> = redis::pipe()
            .cmd("GET")
            .arg(FINISHED)
            .cmd("XLEN")
            .arg(WorkerClass::Cpu.stream())
            .cmd("XLEN")
            .arg(WorkerClass::Diffusion.stream())
            .query_async(&mut conn)
            .await;
        let Ok((finished, cpu, diffusion)) = counts else {
            return Duration::from_secs(5);
        };
        let length = cpu + diffusion;
        let now = Instant::now();
        let mut samples = self.drained.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back((now, finished.unwrap_or(0)));
        while samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            samples.pop_front();
        }
        let (first_at, first) = samples[0];
        let elapsed = now.duration_since(first_at).as_secs_f64();
        let done = finished.unwrap_or(0).saturating_sub(first) as f64;
        if elapsed < 1.0 || done <= 0.0 {
            return Duration::from_secs(5);
        }
        let seconds = length as f64 / (done / elapsed);
        Duration::from_secs_f64(seconds.clamp(1.0, 60.0))
    }

    /// The job `id` now, or none when it is unknown or expired.
    pub async fn snapshot(&self, id: &str) -> Result<Option<Snapshot>, QueueError> {
        let keys = JobKeys::of(id);
        let (fields, outcome): (HashMap<String, String>, Option<Vec<u8>>) = redis::pipe()
            .cmd("HGETALL")
            .arg(&keys.hash)
            .cmd("GET")
            .arg(&keys.outcome)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let Some(style_id) = fields.get("style").cloned() else {
            return Ok(None);
        };
        let outcome = outcome
            .map(|bytes| wire::decode_outcome(&bytes))
            .transpose()
            .map_err(QueueError::Unavailable)?;
        let status = match &outcome {
            Some(Outcome::Succeeded(_)) => JobStatus::Succeeded,
            Some(Outcome::Failed(_)) => JobStatus::Failed,
            Some(Outcome::Canceled) => JobStatus::Canceled,
            None if fields.get("status").map(String::as_str) == Some("running") => {
                JobStatus::Running
            }
            None => JobStatus::Queued,
        };
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
        Ok(Some(Snapshot {
            id: id.to_string(),
            style_id,
            created_at_ms: number("created_at_ms").unwrap_or(0),
            status,
            stage: fields.get("stage").and_then(|s| wire::parse_stage(s)),
            finished_at_ms: outcome.as_ref().and(number("finished_at_ms")),
            outcome,
        }))
    }

    /// Ends job `id` with `outcome` unless it has ended already; returns whether this call
    /// ended it.
    pub async fn finish(&self, id: &str, outcome: &Outcome) -> Result<bool, QueueError> {
        let keys = JobKeys::of(id);
        let at_ms = unix_ms();
        let kind = match outcome {
            Outcome::Succeeded(finished) => EventKind::Succeeded {
                method: finished.view.method.clone(),
                reason: finished.view.reason.clone(),
            },
            Outcome::Failed(failure) => EventKind::Failed(failure.clone()),
            Outcome::Canceled => EventKind::Canceled,
        };
        let status = match outcome {
            Outcome::Succeeded(_) => JobStatus::Succeeded,
            Outcome::Failed(_) => JobStatus::Failed,
            Outcome::Canceled => JobStatus::Canceled,
        };
        let event = JobEvent {
            seq: 0,
            kind,
            at_ms,
        }
        .relayed(id);
        let ended: i64 = self
            .finish
            .key(&keys.hash)
            .key(&keys.events)
            .key(&keys.outcome)
            .key(&keys.photo)
            .key(&keys.cancel)
            .key(FINISHED)
            .arg(wire::encode_outcome(outcome))
            .arg(self.ttl.as_millis().max(1) as u64)
            .arg(status.as_str())
            .arg(event.name)
            .arg(event.data)
            .arg(at_ms)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(ended == 1)
    }

    /// Takes job `id` to run (one round trip): its request and photo, or none when there is
    /// nothing to run (it expired or has finished).
    pub async fn start(&self, id: &str) -> Result<Option<(String, Vec<u8>)>, QueueError> {
        let keys = JobKeys::of(id);
        self.start
            .key(&keys.hash)
            .key(&keys.photo)
            .key(&keys.outcome)
            .arg(unix_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    /// Records that job `id` entered a stage (its stored form `stage`, its event `event`);
    /// returns whether the job should go on (false: it was canceled or has finished).
    pub async fn progress(
        &self,
        id: &str,
        stage: &str,
        event: &WireEvent,
    ) -> Result<bool, QueueError> {
        let keys = JobKeys::of(id);
        let answer: i64 = self
            .progress
            .key(&keys.hash)
            .key(&keys.events)
            .key(&keys.outcome)
            .key(&keys.cancel)
            .arg(stage)
            .arg(&event.name)
            .arg(&event.data)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(answer > 0)
    }

    /// Whether job `id` was asked to stop (canceled, or finished elsewhere).
    pub async fn should_stop(&self, id: &str) -> Result<bool, QueueError> {
        let keys = JobKeys::of(id);
        let found: u32 = redis::cmd("EXISTS")
            .arg(&keys.cancel)
            .arg(&keys.outcome)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(found > 0)
    }

    /// Cancels job `id` (a no-op once it has finished): sets its cancel key for the worker and
    /// ends it as canceled at once.
    pub async fn cancel(&self, id: &str) -> Result<(), QueueError> {
        let keys = JobKeys::of(id);
        let _: () = redis::cmd("SET")
            .arg(&keys.cancel)
            .arg(1)
            .arg("PX")
            .arg(self.ttl.as_millis().max(1) as u64)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        self.finish(id, &Outcome::Canceled).await.map(|_| ())
    }

    /// Deletes finished job `id`, its result with it.
    pub async fn remove(&self, id: &str) -> Result<(), QueueError> {
        let keys = JobKeys::of(id);
        redis::cmd("DEL")
            .arg(&keys.hash)
            .arg(&keys.events)
            .arg(&keys.outcome)
            .arg(&keys.cancel)
            .arg(&keys.photo)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    /// Job `id`'s events after the first `after`, as they come, ending after the last one
    /// (or when the job expires).
    pub fn follow(&self, id: &str, after: usize) -> BoxStream<'static, WireEvent> {
        let follower = Follower {
            client: self.client.clone(),
            blocking: None,
            conn: self.conn(),
            keys: JobKeys::of(id),
            after,
            last_id: "0".to_string(),
            done: false,
        };
        stream::unfold(follower, |mut follower| async move {
            let events = follower.next_batch().await?;
            Some((stream::iter(events), follower))
        })
        .flatten()
        .boxed()
    }
}

/// Reads one job's event stream with a blocking connection of its own.
struct Follower {
    client: Client,
    blocking: Option<MultiplexedConnection>,
    conn: ConnectionManager,
    keys: JobKeys,
    /// The last seq handed out.
    after: usize,
    /// The stream id read up to.
    last_id: String,
    done: bool,
}

impl Follower {
    /// The next events (none: the stream has ended), waiting for them; while Redis is
    /// unreachable it keeps trying.
    async fn next_batch(&mut self) -> Option<Vec<WireEvent>> {
        if self.done {
            return None;
        }
        loop {
            let Some(conn) = self.blocking.as_mut() else {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_millis(BLOCK_MS * 3)));
                match self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
                    Ok(connection) => self.blocking = Some(connection),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
                continue;
            };
            let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.keys.events)
                .arg(&self.last_id)
                .query_async(conn)
                .await;
            let Ok(reply) = reply else {
                self.blocking = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let entries: Vec<_> = reply
                .into_iter()
                .flat_map(|reply| reply.keys)
                .flat_map(|key| key.ids)
                .collect();
            if let Some(last) = entries.last() {
                self.last_id = last.id.clone();
            }
            let events: Vec<WireEvent> = entries
                .iter()
                .filter_map(|entry| {
                    let text = |name: &str| match entry.map.get(name)? {
                        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
                        Value::SimpleString(text) => Some(text.clone()),
                        Value::Int(n) => Some(n.to_string()),
                        _ => None,
                    };
                    Some(WireEvent {
                        seq: text("seq")?.parse().ok()?,
                        name: text("name")?,
                        data: text("data")?,
                    })
                })
                .filter(|event| event.seq > self.after)
                .collect();
            if events.is_empty() {
                if entries.is_empty() {
                    let exists: redis::RedisResult<u32> = redis::cmd("EXISTS")
                        .arg(&self.keys.hash)
                        .query_async(&mut self.conn)
                        .await;
                    if exists == Ok(0) {
                        return None;
                    }
                }
                continue;
            }
            self.after = events.last().map_or(self.after, |e| e.seq);
            self.done = events.iter().any(WireEvent::is_last);
            return Some(events);
        }
    }
}

/// A Redis failure as the queue's.
pub fn unavailable(error: redis::RedisError) -> QueueError {
    QueueError::Unavailable(error.to_string())
}
