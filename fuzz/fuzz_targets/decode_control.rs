//! PINGREQ, PINGRESP, DISCONNECT and AUTH bodies (AUTH under 3.x must be
//! refused, not crash).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fbroker_fuzz::decode_family(data, &[12, 13, 14, 15]);
});
