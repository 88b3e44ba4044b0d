//! What encapsulated (compressed) pixel data needs beyond the codecs: the JPEG 2000 transfer
//! syntaxes and the signedness their codestreams declare.

/// JPEG 2000 transfer syntaxes (Part 1, Part 2 and High-Throughput).
pub(super) const JPEG2000_UIDS: [&str; 7] = [
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
];

/// Signedness and precision of the first component of a JPEG 2000 codestream (SIZ marker).
pub(super) fn j2k_signedness(data: &[u8]) -> Option<(bool, u16)> {
    let pos = data
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])?;
    // SOC, SIZ marker, Lsiz, Rsiz, 8 x 4 bytes of sizes, Csiz, then Ssiz of component 0.
    let ssiz = *data.get(pos + 4 + 2 + 2 + 32 + 2)?;
    Some((ssiz & 0x80 != 0, u16::from(ssiz & 0x7F) + 1))
}
