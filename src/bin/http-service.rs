//! The HTTP service example (`examples/09_http_service.rs`) as a bin target, so that
//! `tests/http_service.rs` can start it with `CARGO_BIN_EXE_http-service` and signal it.
//! The example file is the readable version; this only calls its `main`.

#[path = "../../examples/09_http_service.rs"]
mod service;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    service::main()
}
