//! The web app's built files (web/dist): index.html for every path that
//! is not a file, so the app's own routes load; hashed assets cached for a
//! year. Paths are checked to stay inside the folder.

use super::ApiState;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use std::path::{Component, Path, PathBuf};

const NOT_BUILT: &str = "<!doctype html><html lang=\"ja\"><meta charset=\"utf-8\"><title>Tsunagu</title>\
<p>管理画面はまだビルドされていません。<code>scripts/run.sh</code> で起動するとビルドされます。</p>\
<p>The admin web app is not built yet: start the PBX with <code>scripts/run.sh</code>, which builds it.</p></html>";

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file under `root` a URL path names, if the path is plain (no `..`).
fn file_for(root: &Path, url_path: &str) -> Option<PathBuf> {
    let rel = Path::new(url_path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let p = root.join(rel);
    p.is_file().then_some(p)
}

pub async fn serve(State(state): State<ApiState>, uri: Uri) -> Response {
    let Some(root) = state.settings.web_dir.as_deref() else { return Html(NOT_BUILT).into_response() };
    if uri.path().starts_with("/api/") {
        return super::ApiError::not_found("no such API path").into_response();
    }
    let (file, immutable) = match file_for(root, uri.path()) {
        Some(f) => {
            let hashed = uri.path().starts_with("/assets/");
            (f, hashed)
        }
        None => (root.join("index.html"), false),
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => {
            let cache = if immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
            (
                [
                    (header::CONTENT_TYPE, content_type(&file)),
                    (header::CACHE_CONTROL, cache),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    (header::X_FRAME_OPTIONS, "DENY"),
                    (header::REFERRER_POLICY, "same-origin"),
                ],
                bytes,
            )
                .into_response()
        }
        Err(_) if file.ends_with("index.html") => Html(NOT_BUILT).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "x").unwrap();
        assert!(file_for(dir.path(), "/index.html").is_some());
        assert!(file_for(dir.path(), "/../etc/passwd").is_none());
        assert!(file_for(dir.path(), "/assets/../../x").is_none());
        assert!(file_for(dir.path(), "/missing.js").is_none());
    }
}
