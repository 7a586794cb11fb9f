//! The custom highway layer of `examples/custom_layer.rs` builds, is gradient-checked, and trains
//! inside a classifier on the digits data.

#[path = "../examples/custom_layer.rs"]
#[allow(dead_code)]
mod example;

#[test]
fn the_highway_example_trains_and_checks() {
    example::main().unwrap();
}
