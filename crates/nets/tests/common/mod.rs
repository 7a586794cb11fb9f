//! Helpers shared by the file tests (`files.rs`, `file_alloc.rs`, `experiment.rs`): a scratch
//! folder, a custom layer to register, and hand-made MessagePack documents for damaged-file cases.

// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

use nets::layers::Feedforward;
use std::path::PathBuf;

/// An empty folder for one test: `nets-{suite}-{pid}-{test}` under the temp dir.
pub fn scratch(suite: &str, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nets-{suite}-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A custom layer for registries: a tanh feedforward layer seeded from its context's stream.
pub fn plain_layer(ctx: &nets::LayerContext) -> nets::Result<Box<dyn nets::Layer>> {
    let seed = ctx.rng.lock().unwrap().next_u64();
    let layer = Feedforward::new(
        &ctx.name,
        ctx.size,
        &ctx.inputs,
        "tanh",
        &Default::default(),
        &Default::default(),
        seed,
    )?;
    Ok(Box::new(layer))
}

/// A file envelope `{format, version: 1, payload}` as a MessagePack map, with `payload` as a
/// `bin 32`, written byte by byte so a test can damage any field.
pub fn envelope(format: &str, payload: &[u8]) -> Vec<u8> {
    assert!(format.len() < 32, "a fixstr holds at most 31 bytes");
    let mut out = vec![0x83, 0xa6];
    out.extend(b"format");
    out.push(0xa0 | format.len() as u8);
    out.extend(format.as_bytes());
    out.push(0xa7);
    out.extend(b"version");
    out.push(1);
    out.push(0xa7);
    out.extend(b"payload");
    out.push(0xc6);
    out.extend((payload.len() as u32).to_be_bytes());
    out.extend(payload);
    out
}
