//! Helpers shared by the file tests (`files.rs`, `file_alloc.rs`, `experiment.rs`): hand-made
//! MessagePack documents for damaged-file cases.

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
