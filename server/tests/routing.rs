//! The dial plan against a real SQLite store: what a dialled number means,
//! how each ring-group strategy orders its members, forwarding chains and
//! loop detection. No sockets; ringing itself is shown end to end in
//! tests/e2e_*.rs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tsunagu_server::calls::Presence;
use tsunagu_server::config::{SecurityConfig, SipConfig};
use tsunagu_server::registrar::Registrar;
use tsunagu_server::routing::{parse_dialled, resolve, Resolution, RingTarget};
use tsunagu_server::store::{CallerIdChoice, Dest, RingGroup, SqliteStore, Store, Strategy, User};
use tsunagu_sip::digest::StoredCredentials;

struct World {
    store: Arc<SqliteStore>,
    registrar: Arc<Registrar>,
    presence: Presence,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path(), "tsunagu").await.unwrap());
    for ext in ["1001", "1002", "1003", "1004"] {
        store.add_user(User { extension: ext.into(), name: ext.into(), credentials: StoredCredentials::from_password(ext, "tsunagu", "pw-123456") }).await.unwrap();
    }
    let (registrar, _rx) = Registrar::new(SipConfig::default(), SecurityConfig::default(), "tsunagu".into(), store.clone()).await.unwrap();
    World { store, registrar, presence: Presence::default(), _dir: dir }
}

fn group(number: &str, strategy: Strategy, members: &[&str]) -> RingGroup {
    RingGroup {
        number: number.into(),
        name: String::new(),
        strategy,
        members: members.iter().map(|m| Dest::parse(m).unwrap()).collect(),
        member_timeout_secs: 5,
        timeout_secs: 30,
        overflow: Some(Dest::User("1004".into())),
        skip_busy: false,
        rr_next: 0,
    }
}

async fn ring(w: &World, dest: Dest) -> Resolution {
    resolve(&w.store, &w.registrar, &w.presence, &dest, &mut HashSet::new()).await.unwrap()
}

fn order(r: &Resolution) -> Vec<Vec<RingTarget>> {
    match r {
        Resolution::Ring(h) => h.steps.iter().map(|s| s.targets.clone()).collect(),
        other => panic!("expected ringing, got {other:?}"),
    }
}

fn ext(e: &str) -> RingTarget {
    RingTarget::Ext(e.into())
}

#[tokio::test]
async fn dialled_numbers_mean_extensions_groups_outside_and_emergency() {
    let w = world().await;
    w.store.put_ring_group(&group("3000", Strategy::Simultaneous, &["1001", "1002"])).await.unwrap();
    let d = |s: &'static str| {
        let w = &w;
        async move { parse_dialled(&w.store, &w.registrar, s).await.unwrap() }
    };
    assert_eq!(d("1002").await.dest, Some(Dest::User("1002".into())));
    assert_eq!(d("3000").await.dest, Some(Dest::Group("3000".into())));
    // Outside line prefix 0, then Japanese numbering.
    assert_eq!(d("00312345678").await.dest, Some(Dest::Number("0312345678".into())));
    assert_eq!(d("009012345678").await.dest, Some(Dest::Number("09012345678".into())));
    assert_eq!(d("00120123456").await.dest, Some(Dest::Number("0120123456".into())));
    assert_eq!(d("0031234567").await.dest, None, "too short for 0AB-J");
    assert_eq!(d("0010123456789").await.dest, None, "international is not allowed");
    // Emergency numbers always, with or without the prefix.
    for e in ["110", "118", "119", "0110", "0119"] {
        let want = e.trim_start_matches('0');
        assert_eq!(d(e).await.dest, Some(Dest::Number(want.into())), "{e}");
    }
    // Per-call caller ID and privacy prefixes.
    let main = d("*8100312345678").await;
    assert_eq!((main.caller_id, main.dest), (Some(CallerIdChoice::Main), Some(Dest::Number("0312345678".into()))));
    let own = d("*82009012345678").await;
    assert_eq!(own.caller_id, Some(CallerIdChoice::Own));
    let hidden = d("01840312345678").await;
    assert_eq!((hidden.withhold, hidden.dest), (Some(true), Some(Dest::Number("0312345678".into()))));
    assert_eq!(d("01860312345678").await.withhold, Some(false));
    assert_eq!(d("9999").await.dest, None);
    // Prefixes are settings, read at each call.
    w.store.set_setting("outside_prefix", "9").await.unwrap();
    assert_eq!(d("90312345678").await.dest, Some(Dest::Number("0312345678".into())));
    assert_eq!(d("00312345678").await.dest, None);
}

#[tokio::test]
async fn group_strategies_order_their_members() {
    let w = world().await;
    w.store.put_ring_group(&group("3000", Strategy::Simultaneous, &["1001", "1002", "09012345678"])).await.unwrap();
    w.store.put_ring_group(&group("3001", Strategy::Sequential, &["1001", "1002", "1003"])).await.unwrap();
    w.store.put_ring_group(&group("3002", Strategy::RoundRobin, &["1001", "1002", "1003"])).await.unwrap();
    w.store.put_ring_group(&group("3003", Strategy::LongestIdle, &["1001", "1002", "1003"])).await.unwrap();

    let all = ring(&w, Dest::Group("3000".into())).await;
    assert_eq!(order(&all), vec![vec![ext("1001"), ext("1002"), RingTarget::External("09012345678".into())]]);
    let Resolution::Ring(h) = &all else { unreachable!() };
    assert_eq!(h.overall, Some(Duration::from_secs(30)));
    assert_eq!(h.on_no_answer, Some(Dest::User("1004".into())));

    let seq = ring(&w, Dest::Group("3001".into())).await;
    assert_eq!(order(&seq), vec![vec![ext("1001")], vec![ext("1002")], vec![ext("1003")]]);
    let Resolution::Ring(h) = &seq else { unreachable!() };
    assert!(h.steps.iter().all(|s| s.timeout == Some(Duration::from_secs(5))));

    // Round robin starts one further at each call, and wraps.
    let mut firsts = Vec::new();
    for _ in 0..4 {
        firsts.push(order(&ring(&w, Dest::Group("3002".into())).await)[0][0].clone());
    }
    assert_eq!(firsts, vec![ext("1001"), ext("1002"), ext("1003"), ext("1001")]);

    // Longest idle: never called first (in list order), then oldest end.
    w.presence.begin("1001");
    w.presence.end("1001");
    std::thread::sleep(Duration::from_millis(5));
    w.presence.begin("1003");
    w.presence.end("1003");
    assert_eq!(order(&ring(&w, Dest::Group("3003".into())).await), vec![vec![ext("1002")], vec![ext("1001")], vec![ext("1003")]]);
}

#[tokio::test]
async fn forwarding_chains_are_followed_and_loops_stopped() {
    let w = world().await;
    let mut s = w.store.user_settings("1001").await.unwrap();
    s.fwd_always = Some(Dest::User("1002".into()));
    w.store.set_user_settings(&s).await.unwrap();
    // 1002 is not registered: its unregistered forward applies.
    let mut s2 = w.store.user_settings("1002").await.unwrap();
    s2.fwd_unregistered = Some(Dest::Group("3001".into()));
    w.store.set_user_settings(&s2).await.unwrap();
    w.store.put_ring_group(&group("3001", Strategy::Sequential, &["1003"])).await.unwrap();
    assert_eq!(order(&ring(&w, Dest::User("1001".into())).await), vec![vec![ext("1003")]]);

    // Not registered and no forward: 480.
    assert_eq!(ring(&w, Dest::User("1003".into())).await, Resolution::Reject(480, "Temporarily Unavailable"));

    // 1002 forwards back to 1001: a loop, stopped with 482.
    s2.fwd_unregistered = None;
    s2.fwd_always = Some(Dest::Any("1001".into()));
    w.store.set_user_settings(&s2).await.unwrap();
    assert_eq!(ring(&w, Dest::User("1001".into())).await, Resolution::Reject(482, "Loop Detected"));

    // Unknown numbers.
    assert_eq!(ring(&w, Dest::Any("5555".into())).await, Resolution::Reject(404, "Not Found"));
    assert_eq!(ring(&w, Dest::Group("5555".into())).await, Resolution::Reject(404, "Not Found"));
}

#[tokio::test]
async fn outside_numbers_ring_through_the_trunk() {
    let w = world().await;
    assert_eq!(order(&ring(&w, Dest::Number("0312345678".into())).await), vec![vec![RingTarget::External("0312345678".into())]]);
}

#[tokio::test]
async fn configuration_errors_are_refused_with_a_message() {
    let w = world().await;
    let mut g = group("1001", Strategy::Simultaneous, &["1002"]);
    assert!(w.store.put_ring_group(&g).await.unwrap_err().to_string().contains("already an extension"));
    g.number = "3000".into();
    g.members.clear();
    assert!(w.store.put_ring_group(&g).await.is_err());
    assert!(Dest::parse("bogus:1").is_err());
    assert!(Dest::parse("user:12a").is_err());
    assert!(Strategy::parse("random").is_err());
    assert!(w.store.set_setting("nope", "1").await.is_err());
    let mut s = w.store.user_settings("9999").await.unwrap();
    s.fwd_always = Some(Dest::User("1001".into()));
    assert!(w.store.set_user_settings(&s).await.is_err(), "settings for an unknown extension");
}
