//! The admin web app in a real browser against a running PBX: headless
//! Chromium (Debian `chromium`, driven by playwright-core from
//! web/node_modules) runs web/tests/browser.mjs, which signs in with TOTP
//! (enrolment, new password, then password + code), adds a user through
//! the form and registers it at once with SIPp, imports a users CSV with
//! two bad rows (a dry run names rows 3 and 5; nothing is stored), exports
//! call logs as CSV, switches to English and back, uses the app at 768 px
//! (menu button, keyboard focus), and adds business hours (a schedule with
//! its "now" column, a DID routed to it) and turns disaster mode on and off
//! (the banner in two tabs, the second updated by the live events), and
//! makes an API token on the admin's own page that works from outside the
//! browser until it is revoked there; then makes an announcement from text
//! (espeak-ng) and one by upload, plays one in the page, builds a voice menu
//! on it, sees a menu that enters itself refused with the loop named, and
//! routes a DID to the menu.
//!
//! Needs the built app (web/dist, from scripts/setup.sh), node, chromium
//! and sipp; fails with a clear message when one is missing.

mod common;

use common::{cli, require_tool, run_bounded, sipp_file, Sandbox, Server};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The browser script's own steps wait at most 15 s each; this bounds the whole run.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn admin_web_app_in_a_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let web = root.join("web");
    let dist = web.join("dist");
    assert!(dist.join("index.html").is_file(), "{} is missing: run scripts/setup.sh: it builds the web app", dist.join("index.html").display());
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules/playwright-core is missing: run scripts/setup.sh: it builds the web app (npm ci in web/)"
    );
    let node = require_tool("node", "nodejs");
    require_tool("sipp", "sip-tester");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).is_file(), "{chromium} is missing (needed by this end-to-end test). Install it with: apt-get install -y chromium");

    let sb = Sandbox::new("web");
    let dist_str = dist.to_string_lossy().into_owned();
    let server = Server::start_with_env(&sb, &[("TSUNAGU_HTTP_WEB_DIR", dist_str.as_str())]);

    // The first admin, from the command line: its one-time password.
    let out = cli(&server.data, &["admin", "add", "root", "--role", "system"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let otp = text.lines().find_map(|l| l.strip_prefix("one-time password: ")).unwrap_or_else(|| panic!("no one-time password in {text:?}")).trim().to_string();

    let work = sb.file("browser");
    std::fs::create_dir_all(&work).unwrap();
    let out = run_bounded(
        Command::new(node)
            .current_dir(&web)
            .arg("tests/browser.mjs")
            .env("TSUNAGU_URL", format!("http://{}", server.http_addr()))
            .env("TSUNAGU_ADMIN", "root")
            .env("TSUNAGU_OTP", &otp)
            .env("TSUNAGU_SIP", server.sip_addr().to_string())
            .env("TSUNAGU_SIPP_SCENARIO", sipp_file("register_auth.xml"))
            .env("TSUNAGU_WORK", &work)
            .env("CHROMIUM", &chromium),
        BROWSER_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "web/tests/browser.mjs failed ({}); files in {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log (tail)\n{}",
        out.status,
        work.display(),
        common::tail(&server.log, 40)
    );
    // The steps it reports, so a green run shows what was checked.
    for step in ["a. signed in with TOTP", "b. SIPp registered", "c. rows 3 and 5 named", "d. downloaded", "e. English and back", "f. the menu opens the nav", "g. disaster mode on: banner shown in both tabs", "g. disaster mode off: the banner is gone", "200 with the token, 401 after revoking it in the UI", "i. the loop was refused", "i. announcement, voice menu and loop checked; the DID routes to the menu", "all browser steps passed"] {
        assert!(stdout.contains(step), "the browser run did not report {step:?}:\n{stdout}");
    }
    println!("{stdout}");
}
