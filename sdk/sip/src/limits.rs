//! Bounds on what the parser accepts, so hostile input costs a fixed amount.

/// Size limits for one message.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Whole message (head and body), in octets. 64 KiB by default: the
    /// largest UDP datagram, and far above any real SIP message.
    pub max_message_size: usize,
    /// Number of header lines (after unfolding).
    pub max_headers: usize,
    /// One header line, in octets.
    pub max_line_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_message_size: 64 * 1024, max_headers: 256, max_line_length: 16 * 1024 }
    }
}
