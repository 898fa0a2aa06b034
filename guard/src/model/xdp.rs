//! What an interface's XDP attachment is, as plain data: read from the
//! kernel by `host::iface`, made by `dataplane::loader`, judged by doctor.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How an XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpAttachMode {
    Native,
    Skb,
    Hardware,
    Multiple,
}

impl fmt::Display for XdpAttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Skb => "skb (generic)",
            Self::Hardware => "hardware offload",
            Self::Multiple => "several modes",
        })
    }
}

/// Whether a frame sent with `XDP_TX` reaches the peer: not on a veth in
/// native mode, whose peer gets it only while it runs an XDP program of
/// its own, which guard neither owns nor sees change.
#[must_use]
pub fn can_reply(mode: XdpAttachMode, veth: bool) -> bool {
    !(veth && mode == XdpAttachMode::Native)
}

/// The XDP program found on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpAttachment {
    pub mode: XdpAttachMode,
    pub prog_id: u32,
    /// The program's name, as `bpftool prog show` prints it.
    pub prog_name: Option<String>,
    /// Attached through a BPF link (owned by a process, detached when it
    /// exits) rather than through netlink (stays until removed).
    pub link_id: Option<u32>,
}

impl fmt::Display for XdpAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "program id {}", self.prog_id)?;
        if let Some(name) = &self.prog_name {
            write!(f, " `{name}`")?;
        }
        write!(f, " in {} mode", self.mode)?;
        match self.link_id {
            Some(link) => write!(f, ", held by BPF link {link}"),
            None => write!(f, ", attached through netlink"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_display_says_who_and_how() {
        let a = XdpAttachment {
            mode: XdpAttachMode::Native,
            prog_id: 42,
            prog_name: Some("xdp_filter".into()),
            link_id: None,
        };
        assert_eq!(
            a.to_string(),
            "program id 42 `xdp_filter` in native mode, attached through netlink"
        );
    }
}
