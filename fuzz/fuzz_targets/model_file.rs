//! The model-file loader on arbitrary bytes. The first byte chooses the mode: even, the input is
//! the whole file; odd, the rest is a list of 5-byte edits (a 4-byte position and a byte to XOR
//! in) applied to a valid model file built at startup, so that libFuzzer starts deep inside the
//! format without a corpus. A file that loads must predict with the right shape; a panic (or an
//! allocation past libFuzzer's `-rss_limit_mb`) is the failure reported.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nets::{Kind, LayerSpec, ModelOptions, Network};
use std::path::PathBuf;
use std::sync::OnceLock;

/// A valid model file with parametric activations and a tied layer.
fn good() -> &'static [u8] {
    static GOOD: OnceLock<Vec<u8>> = OnceLock::new();
    GOOD.get_or_init(|| {
        let net = Network::new(
            Kind::Autoencoder,
            vec![
                LayerSpec::input(3),
                LayerSpec::dense(2).activation("prelu"),
                LayerSpec::tied().partner("hid1"),
            ],
            ModelOptions::default(),
        )
        .expect("a valid model");
        let path = scratch().with_extension("good");
        net.save(&path).expect("saves");
        std::fs::read(&path).expect("reads back")
    })
}

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("theanets-fuzz-{}.model", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let bytes = match data.split_first() {
        Some((mode, edits)) if mode % 2 == 1 => {
            let mut file = good().to_vec();
            for e in edits.chunks_exact(5) {
                let at = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize % file.len();
                file[at] ^= e[4];
            }
            file
        }
        Some((_, rest)) => rest.to_vec(),
        None => Vec::new(),
    };
    let path = scratch();
    std::fs::write(&path, &bytes).expect("writes the scratch file");
    if let Ok(net) = Network::load(&path) {
        let x = nets::tape::Tensor::zeros(&[2, net.input_size()]);
        if let Ok(y) = net.predict_raw(&x) {
            assert_eq!(y.shape(), &[2, net.output_size()]);
        }
    }
});
