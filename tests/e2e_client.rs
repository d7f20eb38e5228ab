//! The SDK's account against the real PBX (`tsunagu serve`): it registers
//! with digest, RFC 5626 instance id and RFC 8599 push parameters (the
//! binding the PBX stores says so), a wrong password is reported as such,
//! a network change re-registers over a new flow that replaces the old
//! binding, the PBX reaches the app over its registered flow, and closing
//! removes the binding.

mod common;

use common::phone::{Behaviour, Phone};
use common::{wait_for, Sandbox, Server};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tsunagu_client::{Account, AccountEvent, PushParams, RegEvent, RegistrationConfig};

const PW: &str = "secret-pass-1";
const INSTANCE: &str = "urn:uuid:6f1c2a3e-0000-4000-8000-00000000c1e7";

fn config(user: &str, password: &str, s: &Server) -> RegistrationConfig {
    let mut c = RegistrationConfig::new(user, password, &s.sip_addr().to_string());
    c.expires = 300;
    c.instance_id = Some(INSTANCE.into());
    c.reg_id = Some(1);
    c.push = Some(PushParams { provider: "apns".into(), prid: "devicetoken0123".into(), param: Some("TEAMID.jp.example.city.voip".into()) });
    c
}

async fn next_registration(events: &mut UnboundedReceiver<AccountEvent>) -> RegEvent {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(AccountEvent::Registration(ev))) => return ev,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the account stopped"),
            Err(_) => panic!("no registration event within 10 s"),
        }
    }
}

/// `tsunagu user list` lines of 1001's current bindings.
fn bindings(s: &Server) -> Vec<String> {
    let out = s.cli(&["user", "list"]);
    String::from_utf8_lossy(&out.stdout).lines().skip_while(|l| !l.starts_with("1001")).skip(1).take_while(|l| l.starts_with("  <")).map(str::to_string).collect()
}

#[test]
fn sdk_account_registers_with_push_moves_flows_is_reached_and_unregisters() {
    let sb = Sandbox::new("client");
    let s = Server::start(&sb);
    for e in ["1001", "1002"] {
        s.cli(&["user", "add", e, "--password", PW]);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // A wrong password is reported as an authentication failure.
        let (bad, mut bad_events) = Account::start(s.sip_addr(), config("1001", "not-the-password", &s)).await.unwrap();
        match next_registration(&mut bad_events).await {
            RegEvent::Failed { code, .. } => assert_eq!(code, 403),
            other => panic!("expected a failure, got {other:?}"),
        }
        bad.close(Duration::from_secs(2)).await;

        let (account, mut events) = Account::start(s.sip_addr(), config("1001", PW, &s)).await.unwrap();
        assert_eq!(next_registration(&mut events).await, RegEvent::Registered { expires: 300 });
        // The PBX stored one binding with the instance id and push provider
        // (bindings reach the store in batches, a moment later).
        let first = wait_for("the binding in the store", Duration::from_secs(10), || {
            let b = bindings(&s);
            (b.len() == 1 && b[0].contains(INSTANCE) && b[0].contains("pn-provider=apns")).then(|| b[0].clone())
        });
        assert!(first.contains("pn-prid=devicetoken0123"), "{first}");

        // Wi-Fi -> LTE: a new flow (new source port) replaces the binding.
        account.network_changed();
        assert_eq!(next_registration(&mut events).await, RegEvent::Registered { expires: 300 });
        let moved = wait_for("the binding on the new flow", Duration::from_secs(10), || {
            let b = bindings(&s);
            (b.len() == 1 && b[0] != first).then(|| b[0].clone())
        });
        assert!(moved.contains(INSTANCE), "{moved}");

        // The PBX reaches the app over that flow: the SDK has no calls yet
        // and answers 480, which the caller gets.
        let caller = tokio::task::spawn_blocking({
            let addr = s.sip_addr();
            move || {
                let p = Phone::register(addr, "1002", PW, Behaviour::Busy);
                p.dial("1001", Duration::from_secs(10)).status()
            }
        });
        let status = caller.await.unwrap();
        assert_eq!(status, 480);
        let mut saw_invite = false;
        while let Ok(ev) = events.try_recv() {
            saw_invite |= ev == AccountEvent::Unhandled { method: "INVITE".into() };
        }
        assert!(saw_invite, "the INVITE came to the SDK's flow");

        // Closing removes the binding.
        account.close(Duration::from_secs(5)).await;
        assert_eq!(account.state(), tsunagu_client::RegState::Unregistered);
        wait_for("the binding removed", Duration::from_secs(10), || bindings(&s).is_empty().then_some(()));
    });
}
