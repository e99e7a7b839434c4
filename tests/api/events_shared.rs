//! Many WatchEvents streams of one feed: streams at the same position share one read of each
//! new page (src/feed.rs, `TailRead`). Whatever they share, each stream must still get
//! exactly its own part of the feed, in order: its filter, from its own starting point.
use crate::{
    events::{list_all, next_event, watch},
    fixtures::{catalog, created, line, order, Catalog},
    helpers::{Ctx, TestApp},
    lifecycle::{cancel, complete},
};
use checkout::{pb, pb::EventType};
use futures_util::future::join_all;

fn paid(c: &Catalog) -> pb::CreateSessionRequest {
    order(vec![line(&c.widget, 1)], "USD")
}

const WRITERS: usize = 4;
const ROUNDS: usize = 10;
/// Streams from now: all types, and completions only.
const FROM_NOW: usize = 24;
const COMPLETIONS_ONLY: usize = 8;

/// 40 streams (from now with no filter, from now with a type filter, from each cursor of
/// the history) while 4 writers create and end sessions concurrently: each stream's events
/// are exactly ListEvents' truth from its starting point, filtered, in order, nothing twice.
pub async fn many_streams_share_reads_and_each_gets_its_own_events(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let key = c.shop.test_key.clone();
    for _ in 0..4 {
        let s = created(&app, &c, paid(&c)).await;
        cancel(&app, &s.id).await.unwrap();
    }
    let history = list_all(&app, &key, "").await;
    assert_eq!(history.len(), 8);
    // (stream, its cursor, its filter); a stream's position is taken when the call returns.
    let mut streams = Vec::new();
    for i in 0..FROM_NOW + COMPLETIONS_ONLY {
        let types = match i < FROM_NOW {
            true => vec![],
            false => vec![EventType::SessionCompleted],
        };
        let stream = watch(&app, &key, "", &types).await.unwrap();
        streams.push((stream, None, types));
    }
    for e in &history {
        let stream = watch(&app, &key, &e.cursor, &[]).await.unwrap();
        streams.push((stream, Some(e.cursor.clone()), vec![]));
    }
    let writers = (0..WRITERS).map(|w| {
        let (app, c) = (&app, &c);
        async move {
            for r in 0..ROUNDS {
                let s = created(app, c, paid(c)).await;
                match (w + r) % 2 {
                    0 => drop(complete(app, &s.id, "pay").await.unwrap()),
                    _ => drop(cancel(app, &s.id).await.unwrap()),
                }
            }
        }
    });
    let new = WRITERS * ROUNDS * 2;
    let completions = WRITERS * ROUNDS / 2;
    let consumers = streams.into_iter().map(|(mut stream, cursor, types)| {
        let want = match (&cursor, types.is_empty()) {
            (None, true) => new,
            (None, false) => completions,
            (Some(c), _) => new + history.iter().skip_while(|e| &e.cursor != c).count() - 1,
        };
        async move {
            let mut got = Vec::with_capacity(want);
            while got.len() < want {
                got.push(next_event(&mut stream).await);
            }
            (got, cursor, types)
        }
    });
    let (_, seen) = tokio::join!(join_all(writers), join_all(consumers));
    let truth = list_all(&app, &key, "").await;
    assert_eq!(truth.len(), history.len() + new);
    for (got, cursor, types) in seen {
        let start = match &cursor {
            None => history.len(),
            Some(c) => truth.iter().position(|e| &e.cursor == c).unwrap() + 1,
        };
        let expected: Vec<&str> = truth[start..]
            .iter()
            .filter(|e| types.is_empty() || types.contains(&e.r#type()))
            .map(|e| e.cursor.as_str())
            .collect();
        let got: Vec<&str> = got.iter().map(|e| e.cursor.as_str()).collect();
        assert_eq!(got, expected, "from {cursor:?}, types {types:?}");
    }
}
