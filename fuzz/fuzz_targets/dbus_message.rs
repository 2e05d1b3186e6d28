//! A D-Bus message as systemd (or a bus daemon) sends it to the systemd
//! cgroup driver: any bytes must parse to a message or an error, never a
//! panic, an overread or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use berth_runtime::cgroups::dbus::Message;
    if let Some(head) = data.get(..16).and_then(|h| <&[u8; 16]>::try_from(h).ok()) {
        let _ = Message::total_len(head);
    }
    let _ = Message::parse(data);
});
