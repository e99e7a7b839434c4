//! WatchEvents and the feed under load: replay then live without a seam, concurrent writers
//! on two replicas with consumers that disconnect and resume, and a listener connection
//! killed under a watcher. The slow consumer at full size and a SIGKILLed replica:
//! events_memory.rs and events_faults.rs.
use crate::{
    events::{list, list_all, next_event, watch},
    fixtures::{catalog, created, line, order, Catalog},
    helpers::{Ctx, TestApp},
    lifecycle::{cancel, complete, expire},
    TestFn,
};
use checkout::{db::Backend, pb, pb::EventType};
use futures_util::future::join_all;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

fn paid(c: &Catalog) -> pb::CreateSessionRequest {
    order(vec![line(&c.widget, 1)], "USD")
}

fn cursors(events: &[pb::Event]) -> Vec<String> {
    events.iter().map(|e| e.cursor.clone()).collect()
}

pub fn postgres_only() -> Vec<(&'static str, TestFn)> {
    vec![(
        "postgres_only::events_live::watch_survives_listener_kill_and_replica_loss",
        |ctx| Box::pin(watch_survives_listener_kill_and_replica_loss(ctx)),
    )]
}

/// With a cursor, WatchEvents replays what is after it and goes on live: every event once,
/// in order. With none it starts now; a type filter applies to both parts.
pub async fn watch_replays_then_continues_live(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let key = &c.shop.test_key;
    for _ in 0..3 {
        let s = created(&app, &c, paid(&c)).await;
        cancel(&app, &s.id).await.unwrap();
    }
    let history = list_all(&app, key, "").await;
    assert_eq!(history.len(), 6);
    let mut from_cursor = watch(&app, key, &history[1].cursor, &[]).await.unwrap();
    let mut from_now = watch(&app, key, "", &[]).await.unwrap();
    let mut cancels = watch(&app, key, "", &[EventType::SessionCancelled])
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 2..6 {
        got.push(next_event(&mut from_cursor).await);
    }
    // Live now: new events follow the replayed ones with nothing missed or repeated.
    let mut live = Vec::new();
    for _ in 0..4 {
        let s = created(&app, &c, paid(&c)).await;
        live.push(s.id.clone());
        cancel(&app, &s.id).await.unwrap();
    }
    for _ in 0..8 {
        got.push(next_event(&mut from_cursor).await);
    }
    let truth = list_all(&app, key, "").await;
    assert_eq!(truth.len(), 14);
    assert_eq!(cursors(&got), cursors(&truth[2..]));
    // From now: only the live ones.
    let mut now = Vec::new();
    for _ in 0..8 {
        now.push(next_event(&mut from_now).await);
    }
    assert_eq!(cursors(&now), cursors(&truth[6..]));
    for id in &live {
        let e = next_event(&mut cancels).await;
        assert_eq!(
            (e.r#type(), &e.session_id),
            (EventType::SessionCancelled, id)
        );
    }
    // One more event is the next message: nothing was sent twice before it.
    let last = created(&app, &c, paid(&c)).await;
    assert_eq!(next_event(&mut from_cursor).await.session_id, last.id);
    assert_eq!(next_event(&mut from_now).await.session_id, last.id);
}

/// The two apps writers and consumers use: two replicas on PostgreSQL; on SQLite (one
/// embedded database, one server) the same server twice.
async fn two_apps(ctx: &Ctx) -> (TestApp, Option<TestApp>) {
    let a = TestApp::spawn(ctx).await;
    let b = match ctx.backend {
        Backend::Postgres => Some(a.replica().await),
        Backend::Sqlite => None,
    };
    (a, b)
}

const WRITERS: usize = 8;
const ROUNDS: usize = 15;
const CONSUMERS: usize = 4;

/// 8 writers create and end sessions concurrently through two replicas while 4 consumers
/// read with ListEvents and WatchEvents, disconnecting at random and resuming from random
/// earlier cursors of theirs. Every consumer ends with every event exactly once, in the
/// one order ListEvents gives at the end. (Positions taken from a sequence instead of the
/// counter fail this within seconds on PostgreSQL: a replay shows an event a reader skipped.)
pub async fn concurrent_writers_and_resuming_consumers(ctx: Ctx) {
    let (a, b) = two_apps(&ctx).await;
    let apps: Vec<&TestApp> = [Some(&a), b.as_ref()].into_iter().flatten().collect();
    let c = catalog(&a).await;
    let key = c.shop.test_key.clone();
    if ctx.backend == Backend::Postgres {
        commit_late(&a).await;
    }
    // One task, many requests in flight: the server sees them all at once.
    let writers = (0..WRITERS).map(|w| {
        let (x, y) = (apps[w % apps.len()], apps[(w + 1) % apps.len()]);
        let c = &c;
        async move {
            for r in 0..ROUNDS {
                let s = created(x, c, paid(c)).await;
                match (w + r) % 3 {
                    0 => drop(complete(y, &s.id, "pay").await.unwrap()),
                    1 => drop(cancel(y, &s.id).await.unwrap()),
                    _ => drop(expire(y, c, &s.id).await.unwrap()),
                }
            }
        }
    });
    let total = WRITERS * ROUNDS * 2;
    let consumers = (0..CONSUMERS).map(|i| consume(i as u64, &apps, &key, total));
    let (_, seen) = tokio::join!(join_all(writers), join_all(consumers));
    let truth = list_all(&a, &key, "").await;
    assert_eq!(truth.len(), total);
    for record in seen {
        assert_eq!(
            record,
            cursors(&truth),
            "every event once, in the feed's order"
        );
    }
}

/// Makes every transaction that writes an event wait 0–20 ms after the event's insert and
/// before its COMMIT, so that concurrent writers' commits interleave widely: with positions
/// taken from a sequence, readers would then see later positions before earlier ones commit.
async fn commit_late(app: &TestApp) {
    app.sql(
        "CREATE FUNCTION test_commit_late() RETURNS trigger AS $$ \
         BEGIN PERFORM pg_sleep(random() * 0.02); RETURN NULL; END; $$ LANGUAGE plpgsql",
    )
    .await;
    app.sql(
        "CREATE TRIGGER test_commit_late AFTER INSERT ON feed_events \
         FOR EACH ROW EXECUTE FUNCTION test_commit_late()",
    )
    .await;
}

/// What a consumer holds: the cursors it processed, in order. After a rewind, what it had
/// read past the rewind point is kept aside and every event read again must match it: a
/// reader that skipped an event (one that committed after a later position was visible)
/// would see it appear in the replay, and fail there.
struct Record {
    consumer: u64,
    seen: Vec<String>,
    replay: VecDeque<String>,
}

impl Record {
    fn push(&mut self, cursor: String) {
        if let Some(expected) = self.replay.pop_front() {
            assert_eq!(
                cursor,
                expected,
                "consumer {}: a replay differs from the first read at {}",
                self.consumer,
                self.seen.len()
            );
        }
        self.seen.push(cursor);
    }

    fn rewind(&mut self, keep: usize) {
        let mut replay: VecDeque<String> = self.seen.drain(keep..).collect();
        replay.extend(self.replay.drain(..));
        self.replay = replay;
    }
}

/// One consumer: reads until it holds `total` events, switching between ListEvents and
/// WatchEvents, dropping streams at random and sometimes rewinding to an earlier cursor.
async fn consume(seed: u64, apps: &[&TestApp], key: &str, total: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut record = Record {
        consumer: seed,
        seen: Vec::new(),
        replay: VecDeque::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while record.seen.len() < total {
        let at = record.seen.len();
        assert!(Instant::now() < deadline, "consumer {seed} stalled at {at}");
        if at > 0 && rng.random_ratio(1, 8) {
            record.rewind(rng.random_range(0..at));
        }
        let cursor = record.seen.last().cloned().unwrap_or_default();
        let app = apps[rng.random_range(0..apps.len())];
        if cursor.is_empty() || rng.random_bool(0.5) {
            let size = rng.random_range(1..=50);
            let page = list(app, key, "test", &cursor, size, &[])
                .await
                .expect("list");
            if page.events.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for e in page.events {
                record.push(e.cursor);
            }
        } else {
            let mut stream = watch(app, key, &cursor, &[]).await.expect("watch");
            for _ in 0..rng.random_range(1..=40) {
                let next = tokio::time::timeout(Duration::from_millis(500), stream.message());
                match next.await {
                    Ok(Ok(Some(e))) => record.push(e.cursor),
                    Ok(other) => panic!("stream ended: {other:?}"),
                    Err(_) => break, // nothing new yet: disconnect and come back
                }
            }
        }
    }
    record.seen
}

/// A watcher on replica A follows events written on B through a killed listener
/// connection; when A goes away, the consumer resumes on B from its last cursor.
async fn watch_survives_listener_kill_and_replica_loss(ctx: Ctx) {
    let a = TestApp::spawn(&ctx).await;
    let b = a.replica().await;
    let c = catalog(&a).await;
    let key = &c.shop.test_key;
    let mut stream = watch(&a, key, "", &[]).await.unwrap();
    let first = created(&b, &c, paid(&c)).await;
    assert_eq!(next_event(&mut stream).await.session_id, first.id);
    let db = a.db.url.rsplit('/').next().unwrap().to_owned();
    a.sql(&format!(
        "DO $$ BEGIN IF (SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = '{db}' AND application_name = '{}') < 2 THEN RAISE EXCEPTION 'no listeners'; END IF; END $$",
        checkout::workers::LISTENER_APPLICATION_NAME
    ))
    .await;
    // Within next_event's 10 s, well before the streams' 30 s safety poll: the reconnected
    // listener (or its resync) delivers it.
    let second = created(&b, &c, paid(&c)).await;
    let e = next_event(&mut stream).await;
    assert_eq!(e.session_id, second.id);
    // A disappears; the consumer resumes on B after the last event it processed.
    drop(a);
    let third = created(&b, &c, paid(&c)).await;
    let mut resumed = watch(&b, key, &e.cursor, &[]).await.unwrap();
    assert_eq!(next_event(&mut resumed).await.session_id, third.id);
    let fourth = created(&b, &c, paid(&c)).await;
    assert_eq!(next_event(&mut resumed).await.session_id, fourth.id);
}

/// On shutdown a WatchEvents stream ends with UNAVAILABLE, promptly: the consumer resumes
/// from its last cursor on another replica.
pub async fn watch_ends_unavailable_on_shutdown(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let mut stream = watch(&app, &c.shop.test_key, "", &[]).await.unwrap();
    let s = created(&app, &c, paid(&c)).await;
    assert_eq!(next_event(&mut stream).await.session_id, s.id);
    let stopping = tokio::spawn(app.stop(Duration::from_secs(10)));
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream ends within 10 s");
    assert_eq!(end.unwrap_err().code(), tonic::Code::Unavailable);
    stopping.await.unwrap();
}
