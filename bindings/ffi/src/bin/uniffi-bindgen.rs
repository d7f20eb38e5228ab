//! uniffi's command-line generator, pinned to the uniffi version the
//! library is built with: `uniffi-bindgen generate --library
//! target/debug/libtsunagu_ffi.so --language kotlin --out-dir OUT`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
