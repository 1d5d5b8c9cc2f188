//! A request path (any UTF-8) through the file server's routing and open beneath the root,
//! and the same bytes resolved as a relative path (`../checks.rs`).
#![no_main]

#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;
#[allow(dead_code)]
#[path = "../../examples/file_server/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../../examples/file_server/request.rs"]
mod request;

use libfuzzer_sys::fuzz_target;

thread_local! {
    // TRUEIO_BACKEND chooses the backend that opens the paths.
    static FIXTURE: checks::Fixture =
        checks::Fixture::new(trueio::Engine::new().expect("an engine"));
}

fuzz_target!(|data: &[u8]| {
    FIXTURE.with(|fx| checks::check_path(fx, data));
});
