//! Plain numeric kernels over slices (being written).
