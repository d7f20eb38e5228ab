//! The crate's own uniffi-bindgen (the same uniffi version as the
//! scaffolding) reads the built library in library mode and writes Kotlin
//! and Python that carry the whole façade. No PBX here: the bindings are
//! driven against one in tests/e2e_bindings.rs.
//!
//! Being an integration test of this package also makes `cargo test
//! --workspace --no-run` build `libtsunagu_ffi.so` and `uniffi-bindgen`, in
//! the same build (same profile and features) as everything else, which
//! is where tests/e2e_bindings.rs finds them.

use std::path::Path;
use std::process::Command;

fn generate(language: &str, out: &Path) {
    let bindgen = Path::new(env!("CARGO_BIN_EXE_uniffi-bindgen"));
    // The cdylib of this test build: `cargo test` leaves it in deps/ (no
    // hash in a cdylib's name) and does not link it one level up.
    let lib = bindgen.with_file_name("deps").join("libtsunagu_ffi.so");
    assert!(lib.exists(), "{} was not built", lib.display());
    let output = Command::new(bindgen)
        .args(["generate", "--library"])
        .arg(&lib)
        .args(["--language", language, "--no-format", "--metadata-no-deps", "--out-dir"])
        .arg(out)
        // Library mode looks up the crates' uniffi.toml with `cargo
        // metadata`; only workspace members export anything.
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run uniffi-bindgen");
    assert!(output.status.success(), "uniffi-bindgen {language}: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
}

#[test]
fn bindgen_writes_kotlin_and_python_with_the_whole_facade() {
    let dir = tempfile::tempdir().unwrap();
    generate("kotlin", dir.path());
    generate("python", dir.path());
    let kotlin = std::fs::read_to_string(dir.path().join("uniffi/tsunagu_ffi/tsunagu_ffi.kt")).unwrap();
    let python = std::fs::read_to_string(dir.path().join("tsunagu_ffi.py")).unwrap();
    for name in ["class Phone", "class Account", "class Call", "interface PhoneListener", "sealed class PhoneEvent", "sealed class PhoneException", "data class AccountConfig", "sealed class AudioSpec"] {
        assert!(kotlin.contains(name), "the Kotlin has no {name}");
    }
    for name in ["fun `addAccount`", "fun `setListener`", "fun `networkChanged`", "fun `shutdown`", "fun `dial`", "fun `answer`", "fun `hangup`", "fun `hold`", "fun `mute`", "fun `sendDtmf`", "fun `reject`"] {
        assert!(kotlin.contains(name), "the Kotlin has no {name}");
    }
    for name in ["class Phone", "class Account", "class Call", "class PhoneListener", "class PhoneEvent", "class PhoneError", "def add_account", "def set_listener", "def send_dtmf"] {
        assert!(python.contains(name), "the Python has no {name}");
    }
}
