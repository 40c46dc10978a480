//! PUBLISH (any header flags) and PUBACK, PUBREC, PUBREL, PUBCOMP bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fbroker_fuzz::decode_family(data, &[3, 3, 3, 3, 4, 5, 6, 7]);
});
