//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fbroker_fuzz::decode_family(data, &[8, 9, 10, 11]);
});
