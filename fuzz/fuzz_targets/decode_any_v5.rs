//! Raw bytes as a stream of MQTT 5.0 packets.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fbroker_fuzz::decode_all(data, fbroker_codec::ProtocolVersion::V5);
});
