//! WatchEvents through a real crash: replica A is the `checkout` binary as a child process,
//! killed with SIGKILL while writers on both replicas have calls in flight; its consumer
//! resumes on replica B from the last cursor it processed.
use crate::{
    events::{list_all, next_event, watch},
    fixtures::{create, created, line, order, Catalog},
    helpers::{Ctx, TestApp, TestDb},
    lifecycle::{cancel, complete, expire},
    operations::{client_app, Service},
    TestFn,
};
use checkout::pb;
use futures_util::future::join_all;
use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        Mutex,
    },
    time::Duration,
};
use tonic::{codec::Streaming, Code, Status};

pub fn postgres_only() -> Vec<(&'static str, TestFn)> {
    vec![(
        "postgres_only::events_faults::sigkilled_replica_consumer_resumes_on_another",
        |ctx| Box::pin(sigkilled_replica_consumer_resumes_on_another(ctx)),
    )]
}

const WRITERS: usize = 6;
/// Successful writes (creates and ends) before A is killed, and after it on B alone.
const BEFORE_KILL: usize = 60;
const AFTER_KILL: usize = 60;

/// What the writers did, shared by them, the killer and the final assertions.
#[derive(Default)]
struct Tally {
    /// Set just before SIGKILL: a call that started before it was sent to a live A.
    killed: AtomicBool,
    ok_before: AtomicUsize,
    ok_after: AtomicUsize,
    /// Calls to A that started before the kill and failed: the kill hit them in flight.
    cut: Mutex<Vec<Status>>,
}

impl Tally {
    /// Runs one write on A or B; only a call on A that the kill overtook may fail.
    async fn write<T>(
        &self,
        on_a: bool,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Option<T> {
        let result = call.await;
        let killed = self.killed.load(SeqCst);
        match result {
            Ok(v) => {
                let count = if killed && !on_a {
                    &self.ok_after
                } else {
                    &self.ok_before
                };
                count.fetch_add(1, SeqCst);
                Some(v)
            }
            Err(s) if on_a && killed => {
                self.cut.lock().unwrap().push(s);
                None
            }
            Err(s) => panic!("a write failed without a kill to blame (on A: {on_a}): {s:?}"),
        }
    }
}

/// One writer: rounds of create on one replica and complete/cancel/expire on the other,
/// alternating; A stops being chosen once it is killed. Returns when B has taken enough
/// writes after the kill.
async fn writer(w: usize, a: &TestApp, b: &TestApp, c: &Catalog, tally: &Tally) {
    let mut r = 0;
    while tally.ok_after.load(SeqCst) < AFTER_KILL {
        let pick = |i: usize| {
            let on_a = i % 2 == 0 && !tally.killed.load(SeqCst);
            (on_a, if on_a { a } else { b })
        };
        let (on_a, x) = pick(w + r);
        let req = order(vec![line(&c.widget, 1)], "USD");
        let made = tally.write(on_a, create(x, c, req)).await;
        let Some(session) = made.and_then(|r| r.into_inner().session) else {
            r += 1;
            continue;
        };
        let (on_a, y) = pick(w + r + 1);
        let id = &session.id;
        match (w + r) % 3 {
            0 => tally.write(on_a, complete(y, id, "pay")).await,
            1 => tally.write(on_a, cancel(y, id)).await,
            _ => tally.write(on_a, expire(y, c, id)).await,
        };
        r += 1;
    }
}

/// The consumer: follows A until its stream breaks, then resumes on B after the last
/// event it processed; returns when it holds `expected` events (known once the writers
/// are done), with what it saw, the error that broke A's stream, and B's stream.
async fn consume(
    mut stream: Streaming<pb::Event>,
    b: &TestApp,
    key: &str,
    tally: &Tally,
    seen: &Mutex<Vec<pb::Event>>,
    mut expected: tokio::sync::watch::Receiver<usize>,
) -> (Status, Streaming<pb::Event>) {
    let mut broke = None;
    while seen.lock().unwrap().len() < *expected.borrow() {
        let next = tokio::select! {
            next = tokio::time::timeout(Duration::from_secs(20), stream.message()) => next,
            _ = expected.changed() => continue,
        };
        match next.expect("the consumer stalled for 20 s") {
            Ok(Some(e)) => seen.lock().unwrap().push(e),
            end => {
                // Only A's stream may break, and only because A was killed.
                assert!(broke.is_none(), "B's stream broke too: {end:?}");
                assert!(
                    tally.killed.load(SeqCst),
                    "A's stream broke before the kill"
                );
                let error = end.expect_err("A's stream ends with an error, not cleanly");
                let last = seen.lock().unwrap().last().map(|e| e.cursor.clone());
                let cursor = last.expect("the kill waits for the consumer's first events");
                stream = watch(b, key, &cursor, &[]).await.expect("resume on B");
                broke = Some(error);
            }
        }
    }
    (broke.expect("A's stream broke"), stream)
}

/// Writers create and end sessions through replica A (a child process) and replica B at
/// once; a consumer watches on A. A is killed with SIGKILL mid-writes; the consumer resumes
/// on B from its last cursor. At the end it holds every event of the store exactly once,
/// in ListEvents' order, whichever of the writes the kill cut short committed.
pub async fn sigkilled_replica_consumer_resumes_on_another(ctx: Ctx) {
    let db = TestDb::create(&ctx).await;
    let token = format!("pt_{}", checkout::domain::ids::random_base62(40));
    let mut svc = Service::start(&db, &token, &[]);
    let a = client_app(db.clone(), &svc, &token).await;
    let b = a.replica().await;
    let c = crate::fixtures::catalog(&b).await;
    let key = c.shop.test_key.clone();
    // From "now", before any event: every event of the store is one the consumer must see.
    let stream = watch(&a, &key, "", &[]).await.unwrap();
    let tally = Tally::default();
    let seen = Mutex::new(Vec::new());
    let (expect, expected) = tokio::sync::watch::channel(usize::MAX);
    let writers = async {
        join_all((0..WRITERS).map(|w| writer(w, &a, &b, &c, &tally))).await;
        // Writers done: what the store holds is the truth the consumer must end with.
        expect.send_replace(list_all(&b, &key, "").await.len());
    };
    let killer = async {
        while tally.ok_before.load(SeqCst) < BEFORE_KILL || seen.lock().unwrap().len() < 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tally.killed.store(true, SeqCst);
        svc.sigkill();
    };
    let consumer = consume(stream, &b, &key, &tally, &seen, expected);
    let ((), (), (broke, mut stream)) = tokio::join!(writers, killer, consumer);

    let cut = tally.cut.lock().unwrap().clone();
    assert!(
        !cut.is_empty(),
        "the kill hit no call in flight on A ({} writes before it)",
        tally.ok_before.load(SeqCst)
    );
    for s in cut.iter().chain([&broke]) {
        assert!(
            matches!(s.code(), Code::Unavailable | Code::Unknown),
            "a transport error: {s:?}"
        );
    }
    assert!(
        tally.ok_after.load(SeqCst) >= AFTER_KILL,
        "B went on after the kill"
    );
    let truth = list_all(&b, &key, "").await;
    let seen: Vec<_> = seen
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|e| e.cursor)
        .collect();
    let truth: Vec<_> = truth.into_iter().map(|e| e.cursor).collect();
    assert_eq!(seen, truth, "every event once, in ListEvents' order");
    // Nothing else was queued for the consumer: the next event is the next one written.
    let last = created(&b, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    assert_eq!(next_event(&mut stream).await.session_id, last.id);
    eprintln!(
        "sigkill: {} writes before, {} after, {} cut in flight ({:?}); consumer broke with {:?}, saw {}",
        tally.ok_before.load(SeqCst),
        tally.ok_after.load(SeqCst),
        cut.len(),
        cut.iter().map(|s| (s.code(), s.message())).collect::<Vec<_>>(),
        (broke.code(), broke.message()),
        seen.len()
    );
}
