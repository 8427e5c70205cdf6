//! A client `Connection` fed arbitrary bytes in chunks whose sizes come from
//! the input, with local sends, closes and partial writes interleaved; see
//! `weft_fuzz::session` for the contract checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_proto::Role;

fuzz_target!(|data: &[u8]| weft_fuzz::session(Role::Client, data));
