//! The SDK's foreign-language bindings (bindings/ffi, uniffi) used the way
//! an app uses them, against the real PBX (`tsunagu demo`) and a real phone
//! (baresip, answering by itself): Kotlin on the JVM and Python each
//! register, call baresip's extension, see the call connect, hang up, see
//! it end and shut down; Python also takes a call from baresip, answered
//! from inside its listener (the façade's event thread), until baresip
//! hangs up. The bindings are generated here, in a temporary directory,
//! from the built library with the uniffi-bindgen of the same uniffi
//! version (library mode), never committed.
//!
//! Needs `libtsunagu_ffi.so` and `uniffi-bindgen` in the target directory
//! of the `tsunagu` binary: `cargo test --workspace --no-run` builds both
//! (for the ffi crate's own tests), as scripts/test.sh does. The Kotlin
//! test also needs `java`, Debian's libjna-java and the Kotlin compiler
//! from npm (bindings/ffi/tests/kotlin, `npm ci`); the Python test needs
//! pytest. scripts/setup.sh installs all of them.

mod common;

use common::baresip::{Account, AnswerMode, Baresip};
use common::{require_tool, tail, Sandbox, Server};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const JNA_JAR: &str = "/usr/share/java/jna.jar";
const LIB: &str = "libtsunagu_ffi.so";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the server package sits in the repository").to_path_buf()
}

/// `uniffi-bindgen`, built for the ffi crate's own tests into the same
/// target directory as the `tsunagu` binary under test.
fn bindgen() -> PathBuf {
    let p = Path::new(common::TSUNAGU).with_file_name("uniffi-bindgen");
    assert!(p.exists(), "{} is missing: build the tests first (`cargo test --workspace --no-run`, as scripts/test.sh does)", p.display());
    p
}

/// The ffi crate's cdylib. `cargo test` leaves it in `deps/` (a cdylib's
/// file name has no hash); `cargo build` also links it one level up, where
/// a later test build does not refresh it: the newer of the two is the one
/// built from the current source.
fn ffi_lib() -> PathBuf {
    let dir = Path::new(common::TSUNAGU).parent().unwrap();
    [dir.join("deps").join(LIB), dir.join(LIB)]
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("{LIB} is missing in {}: build the tests first (`cargo test --workspace --no-run`, as scripts/test.sh does)", dir.display()))
}

/// A child in its own process group, killed with everything it started
/// (the kotlinc script starts a JVM) when the test ends first.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on the process group this test created.
            unsafe {
                libc::kill(-(self.0.id() as i32), libc::SIGKILL);
            }
        }
        let _ = self.0.wait();
    }
}

/// Starts `cmd` in its own process group with its output in `log`.
fn spawn_logged(what: &str, cmd: &mut Command, log: &Path) -> Group {
    let out = File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
    Group(child)
}

/// Waits (bounded) for the process to exit; on timeout kills it and
/// panics with the end of its log.
fn wait_exit(what: &str, mut g: Group, timeout: Duration, log: &Path) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = g.0.try_wait().unwrap() {
            return st;
        }
        if Instant::now() >= deadline {
            drop(g);
            panic!("{what} did not finish within {timeout:?}; its output:\n{}", tail(log, 80));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `cmd` to its end with its output in `log`, at most `timeout`.
fn run_logged(what: &str, cmd: &mut Command, timeout: Duration, log: &Path) -> ExitStatus {
    let g = spawn_logged(what, cmd, log);
    wait_exit(what, g, timeout, log)
}

/// Waits until the running program writes `marker` to its log; panics if
/// it exits first or `timeout` passes.
fn wait_marker(what: &str, g: &mut Group, log: &Path, marker: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(log).unwrap_or_default().contains(marker) {
            return;
        }
        if let Some(st) = g.0.try_wait().unwrap() {
            panic!("{what} exited ({st}) before {marker}; its output:\n{}", tail(log, 120));
        }
        assert!(Instant::now() < deadline, "{what}: no {marker} within {timeout:?}; its output:\n{}", tail(log, 120));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_ok(what: &str, st: ExitStatus, log: &Path) {
    assert!(st.success(), "{what} failed ({st}); its output:\n{}", tail(log, 120));
}

/// `uniffi-bindgen generate --library` for `language` into a new directory.
fn generate(sb: &Sandbox, language: &str) -> PathBuf {
    let out = sb.file(&format!("gen-{language}"));
    std::fs::create_dir_all(&out).unwrap();
    let log = sb.file(&format!("bindgen-{language}.log"));
    let st = run_logged(
        "uniffi-bindgen",
        Command::new(bindgen())
            .args(["generate", "--library"])
            .arg(ffi_lib())
            .args(["--language", language, "--no-format", "--metadata-no-deps", "--out-dir"])
            .arg(&out)
            // Library mode reads the crates' uniffi.toml through `cargo
            // metadata`, run in the workspace; only its members export.
            .current_dir(repo_root()),
        Duration::from_secs(120),
        &log,
    );
    assert_ok("uniffi-bindgen", st, &log);
    out
}

/// The PBX with its demo organisation and baresip registered on the second
/// extension, answering every call by itself. The first extension is the
/// bindings' own.
struct Pbx {
    server: Server,
    callee: Baresip,
    user: (String, String),
    callee_ext: String,
}

fn pbx(sb: &Sandbox) -> Pbx {
    let (server, creds) = Server::start_demo(sb);
    let user = creds[0].clone();
    let (callee_ext, callee_pw) = creds[1].clone();
    let mut callee = Baresip::builder(sb, "callee")
        .account(Account::new(&callee_ext, &callee_pw, server.sip_addr()))
        .answer(AnswerMode::Auto)
        .codecs(&["PCMU"])
        .tone(1000.0)
        .start();
    callee.registered(Duration::from_secs(15));
    Pbx { server, callee, user, callee_ext }
}

impl Pbx {
    fn env(&self, cmd: &mut Command, sb: &Sandbox) {
        cmd.env("TSUNAGU_SERVER", self.server.sip_addr().to_string())
            .env("TSUNAGU_USER", &self.user.0)
            .env("TSUNAGU_PASSWORD", &self.user.1)
            .env("TSUNAGU_CALLEE", &self.callee_ext)
            .env("TSUNAGU_TMP", sb.path());
    }

    /// What the bindings did, seen from the far end: the call was
    /// answered and then hung up.
    fn assert_callee_saw_a_call(&mut self) {
        self.callee.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
        self.callee.wait_event("CALL_CLOSED", Duration::from_secs(5));
    }
}

#[test]
fn kotlin_bindings_register_call_baresip_and_hang_up() {
    let java = require_tool("java", "openjdk-17-jdk-headless");
    assert!(Path::new(JNA_JAR).exists(), "{JNA_JAR} is missing: apt-get install -y libjna-java (scripts/setup.sh does)");
    let kotlinc = repo_root().join("bindings/ffi/tests/kotlin/node_modules/kotlin-compiler/bin/kotlinc");
    assert!(kotlinc.exists(), "{} is missing: run `npm ci` in bindings/ffi/tests/kotlin (scripts/setup.sh does)", kotlinc.display());
    let sb = Sandbox::new("bindings-kotlin");

    // Generate and compile first: the PBX and baresip start once the
    // program is ready to run (baresip's life is bounded).
    let gen = generate(&sb, "kotlin");
    let source = gen.join("uniffi/tsunagu_ffi/tsunagu_ffi.kt");
    assert!(source.exists(), "uniffi-bindgen wrote no {}", source.display());
    let jar = sb.file("bindings-test.jar");
    let log = sb.file("kotlinc.log");
    let st = run_logged(
        "kotlinc",
        Command::new(&kotlinc)
            .args(["-nowarn", "-include-runtime", "-cp", JNA_JAR, "-d"])
            .arg(&jar)
            .arg(&source)
            .arg(repo_root().join("bindings/ffi/tests/kotlin/Main.kt"))
            .current_dir(sb.path()),
        Duration::from_secs(400),
        &log,
    );
    assert_ok("kotlinc", st, &log);

    let mut p = pbx(&sb);
    let log = sb.file("kotlin-test.log");
    let lib_dir = ffi_lib().parent().unwrap().to_path_buf();
    let mut cmd = Command::new(java);
    cmd.arg(format!("-Djna.library.path={}", lib_dir.display()))
        .arg("-cp")
        .arg(format!("{}:{JNA_JAR}", jar.display()))
        .arg("MainKt")
        .current_dir(sb.path());
    p.env(&mut cmd, &sb);
    let st = run_logged("the Kotlin test program", &mut cmd, Duration::from_secs(90), &log);
    assert_ok("the Kotlin test program", st, &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // Shown with --nocapture (cargo keeps it otherwise).
    println!("the Kotlin test program said:\n{text}");
    assert!(text.contains("kotlin bindings: ok"), "{text}");
    p.assert_callee_saw_a_call();
    p.server.assert_running("after the Kotlin test");
}

#[test]
fn python_bindings_call_baresip_and_take_its_call() {
    let python = require_tool("python3", "python3");
    let probe = Command::new(&python).args(["-c", "import pytest"]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(probe.success(), "pytest is missing for {}: python3 -m pip install pytest (scripts/setup.sh does)", python.display());
    let sb = Sandbox::new("bindings-python");

    // The generated module loads the library from its own directory; the
    // test is copied beside it so nothing is written into the tree.
    let gen = generate(&sb, "python");
    assert!(gen.join("tsunagu_ffi.py").exists(), "uniffi-bindgen wrote no tsunagu_ffi.py in {}", gen.display());
    std::fs::copy(ffi_lib(), gen.join(LIB)).unwrap();
    let test = gen.join("test_bindings.py");
    std::fs::copy(repo_root().join("bindings/ffi/tests/python/test_bindings.py"), &test).unwrap();

    let mut p = pbx(&sb);
    let log = sb.file("pytest.log");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pytest", "-v", "-s", "-p", "no:cacheprovider"])
        .arg(&test)
        .current_dir(&gen)
        .env("PYTHONPATH", &gen)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    // No pytest-timeout plugin is assumed: this side bounds every wait.
    p.env(&mut cmd, &sb);
    let mut g = spawn_logged("pytest", &mut cmd, &log);

    // The first two tests call baresip (WAV files, then the shell's own
    // audio device); the third waits for baresip's call, answers it from
    // its listener, and sees baresip hang up.
    wait_marker("pytest", &mut g, &log, "READY-FOR-CALL", Duration::from_secs(60));
    p.assert_callee_saw_a_call();
    p.callee.dial(&format!("sip:{}@{}", p.user.0, p.server.sip_addr()));
    p.callee.wait_event("CALL_ESTABLISHED", Duration::from_secs(15));
    wait_marker("pytest", &mut g, &log, "CONNECTED-INCOMING", Duration::from_secs(20));
    p.callee.hangup();
    p.callee.wait_event("CALL_CLOSED", Duration::from_secs(10));

    let st = wait_exit("pytest", g, Duration::from_secs(60), &log);
    assert_ok("pytest", st, &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    println!("pytest said:\n{text}");
    assert!(text.contains("3 passed"), "{text}");
    p.server.assert_running("after the Python test");
}
