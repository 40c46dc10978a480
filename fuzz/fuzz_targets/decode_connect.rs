//! CONNECT and CONNACK bodies, under any connection version (CONNECT
//! itself is self-describing).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fbroker_fuzz::decode_family(data, &[1, 1, 1, 2]);
});
